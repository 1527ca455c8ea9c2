//! Time as the engine sees it: the current instant in epoch milliseconds, and sleep.
//!
//! Every time the engine writes into a record (lease end, expiry) comes from its
//! [`Clock`]. Tests replace the [`SystemClock`] with a [`ManualClock`] and move it across
//! lease and TTL boundaries by hand. tokio's paused time is not used for this: it
//! advances by itself whenever the runtime waits for real I/O, such as a store's HTTP
//! round trip.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// A boxed, `Send` future resolving to `()`, as returned by [`Clock::sleep`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The engine's source of time.
///
/// Callers on different machines must have clocks that differ by less than
/// `lease - heartbeat interval - one store request's latency`; within that margin at
/// most one caller holds a key's lease at any instant (see the crate documentation).
pub trait Clock: Send + Sync + 'static {
    /// The current time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// A future that resolves once `duration` has passed on this clock.
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// The wall clock (`SystemTime`) with tokio's timer for sleeping. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock that moves only when told to: for tests that cross lease and TTL expiry.
///
/// Clones share the same time. A [`sleep`](Clock::sleep) resolves once the clock has
/// been [advanced](ManualClock::advance) past its deadline.
///
/// ```
/// use idem_core::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new(1_000);
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(clock.now_ms(), 3_000);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<u64>>,
}

impl ManualClock {
    /// A clock standing at `start_ms` milliseconds since the Unix epoch.
    pub fn new(start_ms: u64) -> Self {
        ManualClock {
            now: Arc::new(watch::Sender::new(start_ms)),
        }
    }

    /// Moves the clock forward by `by`, waking every sleep whose deadline has passed.
    pub fn advance(&self, by: Duration) {
        let by = by.as_millis() as u64;
        self.now.send_modify(|now| *now = now.saturating_add(by));
    }

    /// Sets the clock to `now_ms`, forward or backward.
    pub fn set(&self, now_ms: u64) {
        self.now.send_replace(now_ms);
    }
}

impl Default for ManualClock {
    /// A clock standing at 2024-01-01T00:00:00Z.
    fn default() -> Self {
        ManualClock::new(1_704_067_200_000)
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        *self.now.borrow()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        let deadline = self.now_ms().saturating_add(duration.as_millis() as u64);
        let mut now = self.now.subscribe();
        Box::pin(async move {
            while *now.borrow_and_update() < deadline {
                // The sender lives as long as any clone of the clock; the engine holds one.
                if now.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleep_resolves_only_after_advance() {
        let clock = ManualClock::new(0);
        let mut sleep = clock.sleep(Duration::from_millis(100));
        assert!(futures_util::poll!(sleep.as_mut()).is_pending());
        clock.advance(Duration::from_millis(99));
        assert!(futures_util::poll!(sleep.as_mut()).is_pending());
        clock.advance(Duration::from_millis(1));
        assert!(futures_util::poll!(sleep.as_mut()).is_ready());
    }
}
