//! The simulated downstream API the storm's bodies call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A simulated downstream API that creates one resource per idempotency token, and
/// counts every call, as a real API with idempotency keys would.
#[derive(Debug, Default)]
pub struct Downstream {
    next: AtomicU64,
    pub(super) state: Mutex<DownstreamState>,
}

#[derive(Debug, Default)]
pub(super) struct DownstreamState {
    /// token -> (event, resource)
    pub(super) by_token: HashMap<String, (u64, u64)>,
    /// event -> calls, deduplicated or not
    pub(super) calls: HashMap<u64, usize>,
}

impl Downstream {
    /// Creates the resource of `event`, or returns the one `token` created before.
    pub fn create(&self, event: u64, token: &str) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state.calls.entry(event).or_default() += 1;
        if let Some((_, resource)) = state.by_token.get(token) {
            return *resource;
        }
        let resource = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        state.by_token.insert(token.to_owned(), (event, resource));
        resource
    }
}
