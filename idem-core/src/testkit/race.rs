//! Many real tasks call one key at once through the engine.

use std::sync::Arc;

use super::FaultyStore;
use crate::Store;

/// What [`race`] saw.
#[derive(Debug)]
pub struct Race {
    /// How many times the body ran.
    pub runs: usize,
    /// What each call returned.
    pub results: Vec<Result<u64, crate::Error>>,
}

impl Race {
    /// How many calls returned [`RACE_VALUE`].
    pub fn values(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r, Ok(RACE_VALUE)))
            .count()
    }

    /// How many calls were told [`Error::InProgress`](crate::Error::InProgress).
    pub fn in_progress(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r, Err(crate::Error::InProgress { .. })))
            .count()
    }
}

/// The value the body of a [`race`] returns.
pub const RACE_VALUE: u64 = 4242;

/// `tasks` real tasks call one key at once through `engine` (whose store is `store`).
/// The body that runs holds until the store has refused begins from all `tasks - 1`
/// other attempts, so the calls really overlap, then returns [`RACE_VALUE`]. Needs a
/// multi-threaded runtime.
pub async fn race<S: Store>(
    engine: &crate::Engine,
    store: &Arc<FaultyStore<S>>,
    namespace: &str,
    tasks: usize,
    wait: Option<std::time::Duration>,
) -> Race {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let runs = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(tokio::sync::Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (engine, store, runs, start) =
                (engine.clone(), store.clone(), runs.clone(), start.clone());
            let namespace = namespace.to_owned();
            tokio::spawn(async move {
                start.wait().await;
                let mut call = crate::Call::new(namespace, "one-key").engine(&engine);
                if let Some(wait) = wait {
                    call = call.wait(wait);
                }
                call.run(|_| async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    store.refused_attempts_reach(tasks - 1).await;
                    Ok::<_, crate::Error>(RACE_VALUE)
                })
                .await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks);
    for handle in handles {
        results.push(handle.await.expect("no racing task panics"));
    }
    Race {
        runs: runs.load(Ordering::SeqCst),
        results,
    }
}
