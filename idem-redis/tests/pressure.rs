//! A server whose memory is full (`maxmemory` reached under `noeviction`): no body runs
//! whose key could not be taken, every such call gets a transient error, an attempt
//! whose body ran is still recorded (or releases its key), duplicates of live records
//! are answered as usual, and once memory frees the same keys run once. Against a
//! `redis-server` the test starts itself, never the machine's shared one.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::own_server::OwnServer;
use idem_core::{Call, Engine, EngineBuilder, Error};
use idem_redis::RedisStore;
use redis::aio::ConnectionManager;

const NS: &str = "tests::pressure";

/// Writes values under `filler:*` until the server refuses even a small one with
/// `-OOM`, first 64 KiB values, then 1 KiB, then 16 bytes (a refused command's own
/// query buffer counts toward `maxmemory` while it is refused, so one refused large
/// write leaves room for small ones); returns how many keys it wrote.
async fn fill(connection: &mut ConnectionManager) -> usize {
    let mut written = 0;
    for size in [64 * 1024, 1024, 16] {
        let value = vec![b'x'; size];
        loop {
            let set: Result<(), redis::RedisError> = redis::cmd("SET")
                .arg(format!("filler:{written}"))
                .arg(&value)
                .query_async(connection)
                .await;
            match set {
                Ok(()) => written += 1,
                Err(error) if error.code() == Some("OOM") => break,
                Err(error) => panic!("filling the server failed: {error}"),
            }
            assert!(
                written < 1_000_000,
                "the server never filled under a tiny maxmemory"
            );
        }
    }
    written
}

async fn free(connection: &mut ConnectionManager, written: usize) {
    for key in 0..written {
        redis::cmd("DEL")
            .arg(format!("filler:{key}"))
            .query_async::<()>(connection)
            .await
            .unwrap();
    }
}

#[derive(Debug, PartialEq)]
enum BodyError {
    Failed,
    Idem(String),
}

impl From<Error> for BodyError {
    fn from(error: Error) -> Self {
        BodyError::Idem(error.to_string())
    }
}

#[tokio::test]
#[ignore = "starts its own redis-server (scripts/test runs it)"]
async fn a_full_server_runs_no_body_it_cannot_guard_and_the_same_keys_run_once_when_memory_frees() {
    let server = OwnServer::start(&[("maxmemory", "3mb"), ("maxmemory-policy", "noeviction")]);
    let store = RedisStore::builder(server.connection().await)
        .build()
        .await
        .expect("noeviction is accepted");
    let engine: Engine = EngineBuilder::from_arc(Arc::new(store)).build().unwrap();
    let mut admin = server.connection().await;
    let runs = AtomicUsize::new(0);
    let runs = &runs;
    let call = |key: String| {
        let engine = &engine;
        async move {
            Call::new(NS, &key)
                .engine(engine)
                .run(|_| async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Error>(format!("ran {key}"))
                })
                .await
        }
    };

    // Two attempts whose bodies run while memory fills: a failing one inside a
    // succeeding one. The failure's release gets through, so once memory frees a retry
    // runs it (a refused release would hold the key for the whole lease); the success's
    // completion is recorded (complete may write when memory is full), and a duplicate
    // replays it.
    let filled = AtomicUsize::new(0);
    let early = Call::new(NS, "early")
        .engine(&engine)
        .run(|_| async {
            let failed: Result<String, BodyError> = Call::new(NS, "failed")
                .engine(&engine)
                .run(|_| async {
                    filled.store(fill(&mut admin.clone()).await, Ordering::SeqCst);
                    Err(BodyError::Failed)
                })
                .await;
            assert_eq!(failed, Err(BodyError::Failed));
            Ok::<_, Error>("early".to_owned())
        })
        .await;
    assert_eq!(early.unwrap(), "early");
    let written = filled.load(Ordering::SeqCst);
    assert!(written > 0, "the server took no filler before it was full");

    // Memory is full: no new key is taken and no body runs; each call gets a transient
    // error, at once (the engine's begin retries end within the store timeout), logged
    // with the eviction policy read at build.
    let (logs, guard) = common::Logs::capture();
    for i in 0..5 {
        match call(format!("k{i}")).await {
            Err(error @ Error::Store { .. }) => {
                assert!(error.is_retryable(), "{error}");
                assert!(error.to_string().contains("OOM"), "{error}");
            }
            other => panic!("expected a transient store error, got {other:?}"),
        }
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "a body ran whose begin did not land"
    );
    drop(guard);
    let logged = logs.text();
    for expected in [
        "WARN",
        "out of memory",
        "maxmemory-policy noeviction (maxmemory 3145728)",
    ] {
        assert!(logged.contains(expected), "{expected}: {logged}");
    }
    // A duplicate of the completed key is answered from its record, full or not.
    let replayed = Call::new(NS, "early")
        .engine(&engine)
        .run(|_| async { Ok::<_, Error>("ran again".to_owned()) })
        .await;
    assert_eq!(replayed.unwrap(), "early");

    // Memory frees: every key runs once, then replays.
    free(&mut admin, written).await;
    for round in 0..2 {
        for i in 0..5 {
            assert_eq!(
                call(format!("k{i}")).await.unwrap(),
                format!("ran k{i}"),
                "round {round}"
            );
        }
    }
    assert_eq!(runs.load(Ordering::SeqCst), 5);
    let retried: Result<String, BodyError> = Call::new(NS, "failed")
        .engine(&engine)
        .run(|_| async { Ok("retried".to_owned()) })
        .await;
    assert_eq!(retried.unwrap(), "retried");
}

/// A journal write on a full server is refused up front (`-OOM`): a transient store
/// error, nothing written, the journal as it was; the completion of the same attempt
/// still applies (complete may write when memory is full) and empties the journal;
/// once memory frees the journal writes again.
#[tokio::test]
#[ignore = "starts its own redis-server (scripts/test runs it)"]
async fn a_journal_write_on_a_full_server_is_a_transient_error_and_the_completion_still_applies() {
    use idem_core::store::{Codec, Outcome, StepRecord, StoreErrorKind, Written};
    use idem_core::testkit::{attempt, begin_at, completion_at};
    use idem_core::{Clock, Store, SystemClock};

    let server = OwnServer::start(&[("maxmemory", "3mb"), ("maxmemory-policy", "noeviction")]);
    let store = RedisStore::builder(server.connection().await)
        .build()
        .await
        .expect("noeviction is accepted");
    let mut admin = server.connection().await;
    let step = |name: &str| StepRecord {
        name: name.to_owned(),
        outcome: Some(Outcome::Ok),
        data: Some(bytes::Bytes::from_static(b"1")),
        codec: Codec::Json,
    };
    let now = SystemClock.now_ms();
    let full = idem_core::testkit::test_id("ns#full");
    for id in ["ns#full", "ns#later"] {
        assert_eq!(
            store.begin(&begin_at(id, "a", now, None)).await.unwrap(),
            Written::Applied(1)
        );
    }
    let a = attempt("ns#full", "a", 1);
    assert_eq!(
        store.journal(&a, &step("s1")).await.unwrap(),
        Written::Applied(())
    );

    let written = fill(&mut admin).await;
    let error = store
        .journal(&a, &step("s2"))
        .await
        .expect_err("a full server refuses the journal write");
    assert_eq!(error.kind(), StoreErrorKind::Transient, "{error}");
    assert!(error.to_string().contains("OOM"), "{error}");
    assert_eq!(
        store.read(&full).await.unwrap().unwrap().steps,
        vec![step("s1")]
    );
    assert_eq!(
        store
            .complete(&a, &completion_at(now + 1, Outcome::Ok, Some("1")))
            .await
            .unwrap(),
        Written::Applied(()),
        "the completion applies on a full server"
    );
    assert_eq!(store.read(&full).await.unwrap().unwrap().steps, Vec::new());

    free(&mut admin, written).await;
    assert_eq!(
        store
            .journal(&attempt("ns#later", "a", 1), &step("s1"))
            .await
            .unwrap(),
        Written::Applied(())
    );
}
