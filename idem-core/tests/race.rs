//! 64 tasks call one key at once, on a multi-threaded runtime. The one body that runs
//! holds until the store has refused the 63 others, so the calls really overlap.

use std::sync::Arc;
use std::time::Duration;

use idem_core::testkit::{race, FaultyStore, RACE_VALUE};
use idem_core::{Call, EngineBuilder, Error, MemoryStore};

const TASKS: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_wait_one_runs_and_63_are_told_in_progress() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let engine = EngineBuilder::from_arc(store.clone()).build().unwrap();
    let race = race(&engine, &store, "race", TASKS, None).await;
    assert_eq!(race.runs, 1, "the body ran once");
    assert_eq!(
        (race.values(), race.in_progress()),
        (1, TASKS - 1),
        "{:?}",
        race.results
    );
    let later = Call::new("race", "one-key")
        .engine(&engine)
        .run(|_| async { Ok::<u64, Error>(0) })
        .await;
    assert_eq!(
        later.unwrap(),
        RACE_VALUE,
        "a later call replays the recorded value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_wait_all_64_get_the_value() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let engine = EngineBuilder::from_arc(store.clone()).build().unwrap();
    let race = race(
        &engine,
        &store,
        "race",
        TASKS,
        Some(Duration::from_secs(30)),
    )
    .await;
    assert_eq!(race.runs, 1, "the body ran once");
    assert_eq!(race.values(), TASKS, "{:?}", race.results);
}
