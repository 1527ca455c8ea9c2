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

/// What [`batch_race`] saw.
#[derive(Debug)]
pub struct BatchRace {
    /// How many times each key's body ran, by key index.
    pub runs: Vec<usize>,
    /// How many bodies ran for the batches and for the single calls.
    pub ran: (usize, usize),
    /// Outcomes that are neither ran, replayed nor in progress elsewhere (nor, for a
    /// single call, its error): each as text.
    pub unexpected: Vec<String>,
}

/// `batches` batches of all `keys` keys (each in its own order) and `singles` single
/// calls of each key, all at once on real tasks through `engine`: each body holds a
/// few milliseconds, so batches and calls meet on the same keys. Needs a
/// multi-threaded runtime.
pub async fn batch_race(
    engine: &crate::Engine,
    namespace: &str,
    keys: usize,
    batches: usize,
    singles: usize,
) -> BatchRace {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use crate::{Batch, BatchOutcome, Call, Error, Source};

    let runs: Arc<Vec<AtomicUsize>> = Arc::new((0..keys).map(|_| AtomicUsize::new(0)).collect());
    let body = |runs: Arc<Vec<AtomicUsize>>| {
        move |_, key: usize| {
            let runs = runs.clone();
            async move {
                runs[key].fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok::<_, Error>(key as u64)
            }
        }
    };
    let start = Arc::new(tokio::sync::Barrier::new(batches + singles * keys));
    let mut batch_tasks = Vec::new();
    for round in 0..batches {
        let (engine, runs, start) = (engine.clone(), runs.clone(), start.clone());
        let namespace = namespace.to_owned();
        let mut order: Vec<usize> = (0..keys).collect();
        fastrand::Rng::with_seed(round as u64).shuffle(&mut order);
        batch_tasks.push(tokio::spawn(async move {
            let batch = order.iter().fold(
                Batch::new(namespace).engine(&engine).concurrency(keys),
                |batch, key| batch.item(&format!("key-{key}"), *key),
            );
            start.wait().await;
            let outcomes = batch.run(body(runs)).await;
            let mut ran = 0;
            let mut unexpected = Vec::new();
            for outcome in outcomes {
                match outcome {
                    BatchOutcome::Ran(_) => ran += 1,
                    BatchOutcome::Replayed(_) | BatchOutcome::InProgressElsewhere { .. } => {}
                    other => unexpected.push(format!("batch: {other:?}")),
                }
            }
            (ran, unexpected)
        }));
    }
    let mut single_tasks = Vec::new();
    for _ in 0..singles {
        for key in 0..keys {
            let (engine, runs, start) = (engine.clone(), runs.clone(), start.clone());
            let namespace = namespace.to_owned();
            single_tasks.push(tokio::spawn(async move {
                start.wait().await;
                let body = body(runs);
                Call::new(namespace, &format!("key-{key}"))
                    .engine(&engine)
                    .run_reported(|ctx| body(ctx, key))
                    .await
            }));
        }
    }
    let mut race = BatchRace {
        runs: Vec::new(),
        ran: (0, 0),
        unexpected: Vec::new(),
    };
    for task in batch_tasks {
        let (ran, unexpected) = task.await.expect("no batch panics");
        race.ran.0 += ran;
        race.unexpected.extend(unexpected);
    }
    for task in single_tasks {
        match task.await.expect("no call panics") {
            Ok(report) if report.source == Source::Ran => race.ran.1 += 1,
            Ok(_) | Err(Error::InProgress { .. }) => {}
            Err(other) => race.unexpected.push(format!("call: {other:?}")),
        }
    }
    race.runs = runs
        .iter()
        .map(|runs| runs.load(Ordering::SeqCst))
        .collect();
    race
}
