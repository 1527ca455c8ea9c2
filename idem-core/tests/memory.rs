//! The in-memory store's bound: full means a clear error before the body runs; expired
//! records are reclaimed; live ones never evicted.

use std::sync::Arc;
use std::time::Duration;

use idem_core::{Call, EngineBuilder, Error, ManualClock, MemoryStore, Store};

const TTL: Duration = Duration::from_secs(60);

async fn run(engine: &idem_core::Engine, key: u32) -> Result<u32, Error> {
    Call::new("memory::bound", &key)
        .engine(engine)
        .run(|_| async move { Ok(key) })
        .await
}

#[tokio::test]
async fn a_full_store_refuses_new_keys_before_the_body_runs_and_reclaims_expired_ones() {
    let store = Arc::new(MemoryStore::with_capacity(100));
    let clock = ManualClock::default();
    let engine = EngineBuilder::from_arc(store.clone())
        .clock(clock.clone())
        .ttl(TTL)
        .build()
        .unwrap();
    for key in 0..100 {
        run(&engine, key).await.unwrap();
    }
    assert_eq!(store.len(), 100);

    let mut ran = false;
    let full = Call::new("memory::bound", &1000u32)
        .engine(&engine)
        .run(|_| async {
            ran = true;
            Ok::<_, Error>(0u32)
        })
        .await;
    match &full {
        Err(error @ Error::Store { source, .. }) => {
            assert!(source.to_string().contains("full"), "{source}");
            assert!(error.is_retryable());
        }
        other => panic!("expected the store to be full, got {other:?}"),
    }
    assert!(!ran, "the body never runs without its guard");
    // Keys already held still replay.
    assert_eq!(run(&engine, 7).await.unwrap(), 7);
    assert_eq!(store.len(), 100, "live records are never evicted");

    // Once the records expire (ttl counts from completion, rounded up to a second), the
    // next new key reclaims them.
    clock.advance(TTL + Duration::from_secs(1));
    assert_eq!(run(&engine, 1000).await.unwrap(), 1000);
    assert_eq!(store.len(), 1, "expired records were reclaimed");
}

#[tokio::test]
async fn an_in_progress_record_is_kept_while_its_lease_could_matter() {
    let store = Arc::new(MemoryStore::with_capacity(2));
    let clock = ManualClock::default();
    let engine = EngineBuilder::from_arc(store.clone())
        .clock(clock.clone())
        .ttl(TTL)
        .lease(Duration::from_secs(30))
        .build()
        .unwrap();
    // A crashed attempt: its record is in progress, its lease lapses after 30 s, and it
    // stays a ttl beyond that, so fencing stays monotonic.
    let id = idem_core::RecordId::new("memory::bound", [7; 32]);
    let begun = store
        .begin(&idem_core::store::Begin {
            id: id.clone(),
            owner: idem_core::store::Owner::from_u128(7),
            now_ms: clock_now(&clock),
            lease_until_ms: clock_now(&clock) + 30_000,
            expires_at_s: idem_core::store::ceil_secs(clock_now(&clock) + 30_000 + 60_000),
            fingerprint: None,
        })
        .await
        .unwrap();
    assert_eq!(begun, idem_core::store::Written::Applied(1));
    clock.advance(Duration::from_secs(61)); // lease lapsed, but within ttl of it
    run(&engine, 1).await.unwrap();
    let full = run(&engine, 2).await;
    assert!(matches!(full, Err(Error::Store { .. })), "{full:?}");
    assert!(store.read(&id).await.unwrap().is_some());
    clock.advance(Duration::from_secs(30));
    run(&engine, 2).await.unwrap();
    assert!(
        store.read(&id).await.unwrap().is_none(),
        "reclaimed after its ttl"
    );
    assert_eq!(
        run(&engine, 1).await.unwrap(),
        1,
        "the live record was kept"
    );
    assert_eq!(store.len(), 2);
}

fn clock_now(clock: &ManualClock) -> u64 {
    idem_core::Clock::now_ms(clock)
}
