//! Testing code that uses idem, as a user would: every `#[tokio::test]` gets an engine
//! of its own (`Engine::scope`), with a manual clock where time matters; a shared store
//! is cleared between cases; the kill switch runs bodies unguarded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idem::{idempotent, Call, Engine, EngineBuilder, Error, ManualClock, MemoryStore};

static SENT: AtomicUsize = AtomicUsize::new(0);

#[idempotent(key = order_id, ttl = "1h")]
async fn send_receipt(order_id: u64) -> Result<u64, Error> {
    SENT.fetch_add(1, Ordering::SeqCst);
    Ok(order_id)
}

/// Two tests, each with its own engine: no `install`, so they never collide.
#[tokio::test]
async fn a_scoped_engine_serves_the_attribute() {
    let store = Arc::new(MemoryStore::new());
    let engine = EngineBuilder::from_arc(store.clone()).build().unwrap();
    engine
        .scope(async {
            send_receipt(1).await.unwrap();
            send_receipt(1).await.unwrap();
        })
        .await;
    assert_eq!(store.len(), 1, "the call used the scoped engine's store");
}

#[tokio::test]
async fn another_test_has_another_engine() {
    let store = Arc::new(MemoryStore::new());
    let engine = EngineBuilder::from_arc(store.clone()).build().unwrap();
    engine.scope(send_receipt(2)).await.unwrap();
    assert_eq!(store.len(), 1);
    // Outside the scope there is no engine at all in this binary.
    assert!(matches!(send_receipt(2).await, Err(Error::NoEngine)));
}

#[tokio::test]
async fn the_manual_clock_moves_a_record_past_its_ttl() {
    let clock = ManualClock::default();
    let engine = EngineBuilder::from_arc(Arc::new(MemoryStore::new()))
        .clock(clock.clone())
        .build()
        .unwrap();
    let runs = AtomicUsize::new(0);
    let call = || {
        Call::new("tests::testing::ttl", "k")
            .engine(&engine)
            .ttl(Duration::from_secs(60))
            .run(|_| async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(())
            })
    };
    call().await.unwrap();
    call().await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1, "replayed within the ttl");
    clock.advance(Duration::from_secs(61));
    call().await.unwrap();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "runs again once the record expired"
    );
}

#[tokio::test]
async fn clear_gives_a_shared_store_a_clean_slate() {
    let store = Arc::new(MemoryStore::new());
    let engine = EngineBuilder::from_arc(store.clone()).build().unwrap();
    let runs = AtomicUsize::new(0);
    for _ in 0..2 {
        for _ in 0..2 {
            Call::new("tests::testing::clear", "k")
                .engine(&engine)
                .run(|_| async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Error>(())
                })
                .await
                .unwrap();
        }
        store.clear();
        assert!(store.is_empty());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2, "once per cleared store");
}

#[tokio::test]
async fn a_disabled_engine_runs_every_body_unguarded_and_writes_nothing() {
    let store = Arc::new(MemoryStore::new());
    let engine = EngineBuilder::from_arc(store.clone())
        .disabled(true)
        .build()
        .unwrap();
    assert!(engine.is_disabled());
    let runs = AtomicUsize::new(0);
    let runs = &runs;
    for _ in 0..3 {
        let (guarded, token) = Call::new("tests::testing::disabled", "k")
            .engine(&engine)
            .run(|ctx| async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>((ctx.is_guarded(), ctx.token().to_owned()))
            })
            .await
            .unwrap();
        assert!(!guarded);
        // The key's token all the same (downstream keys stay the same with idem off).
        let id = Engine::new(MemoryStore::new())
            .record_id("tests::testing::disabled", "k")
            .unwrap();
        assert_eq!(token, id.digest_hex().to_string());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    assert!(store.is_empty());
}
