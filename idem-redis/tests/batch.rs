//! Batches on Redis, against servers of the tests' own (they flush the script cache and
//! pause writes): each batch's begins and completions go in one pipeline each, a
//! script cache lost between two batches is reloaded item by item, and a connection
//! killed mid-pipeline fails every item of it with a transient error and runs no body.
//! The batch conformance cases (answers and records as the single operations', batches
//! racing single calls) run in `tests/conformance.rs` and, on a cluster, `tests/cluster.rs`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::client_id;
use common::own_server::OwnServer;
use idem_core::testkit::CountingStore;
use idem_core::{Batch, BatchOutcome, Engine, Error};
use idem_redis::RedisStore;

const NS: &str = "tests::redis-batch";

fn kinds<T: std::fmt::Debug, E: std::fmt::Display + std::fmt::Debug>(
    outcomes: &[BatchOutcome<T, E>],
) -> Vec<String> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            BatchOutcome::Ran(_) => "ran".to_owned(),
            BatchOutcome::Replayed(_) => "replayed".to_owned(),
            BatchOutcome::Failed(error) => format!("failed: {error}"),
            other => format!("{other:?}"),
        })
        .collect()
}

async fn batch(
    engine: &Engine,
    keys: impl Iterator<Item = u32>,
    runs: &AtomicUsize,
) -> Vec<String> {
    let outcomes = keys
        .fold(Batch::new(NS).engine(engine), |batch, key| {
            batch.item(&key, key)
        })
        .run(|_, key| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(key)
        })
        .await;
    kinds(&outcomes)
}

/// A server that lost its script cache between two batches (a restart, `SCRIPT FLUSH`)
/// answers `NOSCRIPT` to each script of the pipeline: each is sent again with its text,
/// and every item gets its answer, a replay for the keys recorded before.
#[tokio::test]
#[ignore = "starts its own redis-server (scripts/test runs it)"]
async fn a_batch_after_the_script_cache_was_flushed_answers_every_item() {
    let server = OwnServer::start(&[]);
    let store = CountingStore::new(
        RedisStore::builder(server.connection().await)
            .build()
            .await
            .unwrap(),
    );
    let calls = store.counter();
    let engine = Engine::new(store);
    let runs = AtomicUsize::new(0);
    assert_eq!(batch(&engine, 0..10, &runs).await, vec!["ran"; 10]);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one pipeline of begins, one of completions"
    );
    let mut admin = server.connection().await;
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let mut expected = vec!["replayed"; 10];
    expected.extend(["ran"; 10]);
    assert_eq!(batch(&engine, 0..20, &runs).await, expected);
    assert_eq!(runs.load(Ordering::SeqCst), 20);
}

/// A pipeline of begins whose connection is killed while it is in flight (writes held
/// at the server): every item fails with a transient store error and no body runs; the
/// connection manager reconnects and the next batch takes every key.
#[tokio::test]
#[ignore = "starts its own redis-server (scripts/test runs it)"]
async fn a_batch_whose_connection_is_killed_mid_pipeline_fails_each_item_and_runs_nothing() {
    let server = OwnServer::start(&[]);
    let mut own = server.connection().await;
    let id = client_id(&mut own).await;
    let engine = Engine::new(RedisStore::builder(own).build().await.unwrap());
    let mut admin = server.connection().await;
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(400)
        .arg("WRITE")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let runs = AtomicUsize::new(0);
    let (killed, ()) = tokio::join!(batch(&engine, 0..5, &runs), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async::<()>(&mut admin)
            .await
            .unwrap();
    });
    assert_eq!(killed.len(), 5);
    for outcome in &killed {
        assert!(
            outcome.starts_with("failed: ") && outcome.contains("Redis"),
            "{killed:?}"
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0, "no body ran");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut last = Vec::new();
    for _ in 0..20 {
        last = batch(&engine, 0..5, &runs).await;
        if last.iter().all(|outcome| outcome == "ran") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, vec!["ran"; 5]);
    assert_eq!(runs.load(Ordering::SeqCst), 5);
}
