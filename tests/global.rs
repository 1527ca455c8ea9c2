//! The process-wide engine: absent is a clear error, never a silent fallback; installed
//! once, it serves every call that names no engine. (Its own test binary: installing is
//! once per process.)

use std::sync::atomic::{AtomicUsize, Ordering};

use idem::{Call, Engine, Error, MemoryStore};

#[tokio::test]
async fn no_engine_is_an_error_then_the_installed_one_serves_calls() {
    let runs = AtomicUsize::new(0);
    let body = |_| async {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<_, Error>(1u8)
    };
    let missing = Call::new("global::test", "k").run(body).await;
    match missing {
        Err(error @ Error::NoEngine) => assert!(error.to_string().contains("Engine::install")),
        other => panic!("expected NoEngine, got {other:?}"),
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    Engine::new(MemoryStore::new()).install().unwrap();
    let again = Engine::new(MemoryStore::new()).install();
    assert!(matches!(again, Err(Error::AlreadyInstalled)));
    assert!(Engine::global().is_some());

    for _ in 0..3 {
        assert_eq!(Call::new("global::test", "k").run(body).await.unwrap(), 1);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
