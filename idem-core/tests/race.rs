//! 64 tasks call one key at once, on a multi-threaded runtime. The one body that runs
//! holds until the store has refused the 63 others, so the calls really overlap.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idem_core::testkit::FaultyStore;
use idem_core::{Call, Engine, EngineBuilder, Error, MemoryStore};

const TASKS: usize = 64;

fn engine(store: &Arc<FaultyStore<MemoryStore>>) -> Engine {
    EngineBuilder::from_arc(store.clone()).build().unwrap()
}

async fn storm(
    engine: &Engine,
    store: &Arc<FaultyStore<MemoryStore>>,
    runs: &Arc<AtomicUsize>,
    wait: Option<Duration>,
) -> Vec<Result<u64, Error>> {
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (engine, store, runs, start) =
                (engine.clone(), store.clone(), runs.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let mut call = Call::new("race::create", "one-key").engine(&engine);
                if let Some(wait) = wait {
                    call = call.wait(wait);
                }
                call.run(|_| async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    store.refused_attempts_reach(TASKS - 1).await;
                    Ok(4242u64)
                })
                .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("no task panics"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_wait_one_runs_and_63_are_told_in_progress() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let engine = engine(&store);
    let runs = Arc::new(AtomicUsize::new(0));
    let results = storm(&engine, &store, &runs, None).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once");
    let values = results.iter().filter(|r| matches!(r, Ok(4242))).count();
    let busy = results
        .iter()
        .filter(|r| matches!(r, Err(Error::InProgress { .. })))
        .count();
    assert_eq!((values, busy), (1, TASKS - 1), "{results:?}");
    let later = Call::new("race::create", "one-key")
        .engine(&engine)
        .run(|_| async { Ok::<u64, Error>(0) })
        .await;
    assert_eq!(
        later.unwrap(),
        4242,
        "a later call replays the recorded value"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_wait_all_64_get_the_value() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let engine = engine(&store);
    let runs = Arc::new(AtomicUsize::new(0));
    let results = storm(&engine, &store, &runs, Some(Duration::from_secs(30))).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once");
    assert!(results.iter().all(|r| matches!(r, Ok(4242))), "{results:?}");
}
