//! The engine's local cache of completed records (`EngineBuilder::local_cache`): a hit
//! costs no store request; only completed records are cached; entries live no longer
//! than their record's TTL nor the cache's max age, on the engine's clock; the cache
//! is bounded by entries and by bytes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idem_core::testkit::{FaultyStore, Operation};
use idem_core::{
    Call, Engine, EngineBuilder, Error, LocalCache, ManualClock, MemoryStore, Source, Store,
};

const NS: &str = "tests::cache";
const TTL: Duration = Duration::from_secs(3600);
const MAX_AGE: Duration = Duration::from_secs(60);

type Faulty = FaultyStore<MemoryStore>;

fn setup(cache: LocalCache) -> (Arc<Faulty>, ManualClock, Engine) {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let clock = ManualClock::default();
    let engine = EngineBuilder::from_arc(store.clone())
        .clock(clock.clone())
        .ttl(TTL)
        .local_cache(cache)
        .build()
        .unwrap();
    (store, clock, engine)
}

fn cache() -> LocalCache {
    LocalCache::new().max_age(MAX_AGE)
}

/// Runs `key` with a body that counts its runs and returns `value`; the report.
async fn run(
    engine: &Engine,
    key: &str,
    runs: &AtomicUsize,
    value: &str,
) -> Result<idem_core::Report<String>, Error> {
    Call::new(NS, key)
        .engine(engine)
        .run_reported(|_| async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(value.to_owned())
        })
        .await
}

#[tokio::test]
async fn a_duplicate_of_a_key_completed_here_costs_no_store_request() {
    let (store, _clock, engine) = setup(cache());
    let runs = AtomicUsize::new(0);
    let first = run(&engine, "k", &runs, "v1").await.unwrap();
    assert_eq!(first.source, Source::Ran);
    let begins = store.calls(Operation::Begin);
    for _ in 0..5 {
        let again = run(&engine, "k", &runs, "v2").await.unwrap();
        assert_eq!(
            (again.value.as_str(), again.source, again.fence),
            ("v1", Source::Replayed, first.fence)
        );
        assert_eq!(again.replayed_until_ms, first.replayed_until_ms);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        store.calls(Operation::Begin),
        begins,
        "no begin after the first call"
    );
    assert_eq!(store.calls(Operation::Read), 0);
    assert_eq!(engine.cached_records(), 1);
}

#[tokio::test]
async fn a_record_replayed_from_the_store_is_cached_for_the_next_duplicate() {
    let (store, _clock, engine) = setup(cache());
    let runs = AtomicUsize::new(0);
    // Completed by another engine on the same store (another process, say).
    let other = EngineBuilder::from_arc(store.clone())
        .clock(_clock.clone())
        .ttl(TTL)
        .build()
        .unwrap();
    run(&other, "k", &runs, "v1").await.unwrap();
    let begins = store.calls(Operation::Begin);
    let replayed = run(&engine, "k", &runs, "v2").await.unwrap();
    assert_eq!(replayed.value, "v1");
    assert_eq!(
        store.calls(Operation::Begin),
        begins + 1,
        "the first duplicate asks the store"
    );
    run(&engine, "k", &runs, "v2").await.unwrap();
    assert_eq!(
        store.calls(Operation::Begin),
        begins + 1,
        "the second does not"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn records_in_progress_and_released_are_never_cached() {
    let (store, _clock, engine) = setup(cache());
    let runs = AtomicUsize::new(0);

    // A failed body releases its key: a retry runs again, through the store.
    let failed = Call::new(NS, "released")
        .engine(&engine)
        .run(|_| async { Err::<String, _>(Error::Config("failed".into())) })
        .await;
    assert!(failed.is_err());
    assert_eq!(engine.cached_records(), 0);
    let retried = run(&engine, "released", &runs, "v").await.unwrap();
    assert_eq!(retried.source, Source::Ran);

    // A duplicate of a call in progress is told so, every time, by the store.
    let (entered, proceed) = (tokio::sync::Notify::new(), tokio::sync::Notify::new());
    let held = Call::new(NS, "in-progress").engine(&engine).run(|_| async {
        entered.notify_one();
        proceed.notified().await;
        Ok::<_, Error>("done".to_owned())
    });
    let duplicates = async {
        entered.notified().await;
        for _ in 0..2 {
            let begins = store.calls(Operation::Begin);
            let refused = run(&engine, "in-progress", &runs, "x").await;
            assert!(
                matches!(refused, Err(Error::InProgress { .. })),
                "{refused:?}"
            );
            assert_eq!(store.calls(Operation::Begin), begins + 1);
        }
        assert_eq!(
            engine.cached_records(),
            1,
            "only the released key's completion"
        );
        proceed.notify_one();
    };
    let (value, ()) = tokio::join!(held, duplicates);
    assert_eq!(value.unwrap(), "done");
    assert_eq!(engine.cached_records(), 2);
}

#[tokio::test]
async fn an_entry_lives_no_longer_than_the_max_age() {
    let (store, clock, engine) = setup(cache());
    let runs = AtomicUsize::new(0);
    run(&engine, "k", &runs, "v1").await.unwrap();
    let begins = store.calls(Operation::Begin);
    clock.advance(MAX_AGE - Duration::from_millis(1));
    run(&engine, "k", &runs, "v2").await.unwrap();
    assert_eq!(
        store.calls(Operation::Begin),
        begins,
        "within the max age: cached"
    );
    clock.advance(Duration::from_millis(1));
    let replayed = run(&engine, "k", &runs, "v2").await.unwrap();
    assert_eq!(
        (replayed.value.as_str(), replayed.source),
        ("v1", Source::Replayed)
    );
    assert_eq!(
        store.calls(Operation::Begin),
        begins + 1,
        "aged out: asked the store"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_entry_lives_no_longer_than_its_record() {
    // A max age longer than the TTL: the record's expiry decides.
    let (store, clock, engine) = setup(cache().max_age(TTL * 10));
    let runs = AtomicUsize::new(0);
    let first = run(&engine, "k", &runs, "v1").await.unwrap();
    let expires_at_ms = first.replayed_until_ms.unwrap();
    let now = idem_core::Clock::now_ms(&clock);
    clock.advance(Duration::from_millis(expires_at_ms - now - 1));
    assert_eq!(run(&engine, "k", &runs, "v2").await.unwrap().value, "v1");
    let begins = store.calls(Operation::Begin);
    clock.advance(Duration::from_millis(1));
    let after = run(&engine, "k", &runs, "v2").await.unwrap();
    assert_eq!((after.value.as_str(), after.source), ("v2", Source::Ran));
    assert_eq!(store.calls(Operation::Begin), begins + 1);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_cached_record_still_refuses_another_payload() {
    let (store, _clock, engine) = setup(cache());
    let call = |payload: &'static str| {
        Call::new(NS, "k")
            .engine(&engine)
            .fingerprint(payload)
            .run(|_| async { Ok::<_, Error>(payload.to_owned()) })
    };
    assert_eq!(call("a").await.unwrap(), "a");
    let begins = store.calls(Operation::Begin);
    let mismatch = call("b").await;
    assert!(
        matches!(mismatch, Err(Error::PayloadMismatch { .. })),
        "{mismatch:?}"
    );
    assert_eq!(call("a").await.unwrap(), "a");
    assert_eq!(store.calls(Operation::Begin), begins);
}

#[tokio::test]
async fn what_a_cached_replay_cannot_see_an_operators_delete_until_the_entry_ages_out() {
    let (store, clock, engine) = setup(cache());
    let runs = AtomicUsize::new(0);
    run(&engine, "k", &runs, "v1").await.unwrap();
    let id = engine.record_id(NS, "k").unwrap();
    store.delete(&id).await.unwrap();
    assert_eq!(run(&engine, "k", &runs, "v2").await.unwrap().value, "v1");
    clock.advance(MAX_AGE);
    assert_eq!(run(&engine, "k", &runs, "v2").await.unwrap().value, "v2");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_cache_is_bounded_by_entries() {
    let (_store, _clock, engine) = setup(cache().max_entries(100));
    let runs = AtomicUsize::new(0);
    for key in 0..1000 {
        run(&engine, &format!("k{key}"), &runs, "v").await.unwrap();
        assert!(
            engine.cached_records() <= 100,
            "{}",
            engine.cached_records()
        );
    }
    assert!(engine.cached_records() > 0);
}

#[tokio::test]
async fn the_cache_is_bounded_by_bytes() {
    // Room for about 10 records of 10 kB, although 1000 entries are allowed.
    let (store, _clock, engine) = setup(cache().max_entries(1000).max_bytes(100_000));
    let big = "x".repeat(10_000);
    let runs = AtomicUsize::new(0);
    for key in 0..100 {
        run(&engine, &format!("k{key}"), &runs, &big).await.unwrap();
        assert!(engine.cached_records() <= 10, "{}", engine.cached_records());
    }
    // The latest keys are answered from memory, the oldest from the store.
    let begins = store.calls(Operation::Begin);
    for key in 0..100 {
        assert_eq!(
            run(&engine, &format!("k{key}"), &runs, "")
                .await
                .unwrap()
                .value,
            big
        );
    }
    assert!(store.calls(Operation::Begin) - begins >= 90);
    assert_eq!(runs.load(Ordering::SeqCst), 100);
}

#[test]
fn a_cache_without_room_is_refused() {
    for cache in [
        LocalCache::new().max_entries(0),
        LocalCache::new().max_bytes(0),
        LocalCache::new().max_age(Duration::ZERO),
    ] {
        let built = Engine::builder(MemoryStore::new())
            .local_cache(cache)
            .build();
        assert!(matches!(built, Err(Error::Config(_))), "{built:?}");
    }
}
