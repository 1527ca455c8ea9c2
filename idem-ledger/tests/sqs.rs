//! SQS end to end: orders on a FIFO queue (moto's server, which `scripts/test` starts),
//! some sent twice by the producer, consumed by several `sqs-worker` processes as
//! Lambda's event source mapping would run the `idem-lambda` handler, with a visibility
//! timeout shorter than the slowest bodies (messages come back while still being
//! processed); two workers are SIGKILLed in the middle of a body and replaced. The
//! records live on PostgreSQL. At the end every order's effect happened **exactly
//! once**, within every batch each group ran in its order (batches holding several
//! messages of a group happened), and the queue is empty.
//!
//! Across batches, the order of a group's deliveries is the queue's to keep, and
//! moto's FIFO queue does not keep it after a visibility timeout: when several messages
//! of one group time out together, its `ReceiveMessage` takes each off the in-flight
//! set as it passes it and hands out the first one after which the group has none in
//! flight, ahead of the earlier ones (moto 5.2.5, `sqs/models.py`, `receive_message`).
//! The effects' order across batches is printed, not asserted.
//!
//! Sized for CI (40 orders, a few seconds); `IDEM_SQS_E2E_ORDERS` asks for more.

#[path = "../../idem-postgres/tests/common/mod.rs"]
mod common;
#[path = "../src/sqs_client.rs"]
mod sqs_client;

use std::process::Stdio;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use common::{pool, store_on};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const GROUPS: usize = 4;

fn moto() -> String {
    std::env::var("IDEM_TEST_MOTO").unwrap_or_else(|_| {
        panic!("IDEM_TEST_MOTO is not set: run these tests through scripts/test, which starts moto")
    })
}

/// What one worker did: whether the test killed it, its exit code, how many bodies it
/// started, its lines saying a group ran out of order within a batch, and the largest
/// number of one group's messages in one of its batches.
#[derive(Debug)]
struct Seen {
    killed: bool,
    exit: Option<i32>,
    bodies: usize,
    out_of_order: Vec<String>,
    largest_group: usize,
}

/// Runs one worker until it exits, or SIGKILLs it at its `kill_at`-th body.
async fn worker(schema: String, queue: String, kill_at: Option<usize>) -> Seen {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sqs-worker"))
        .env("LEDGER_URL", common::url())
        .env("LEDGER_SCHEMA", schema)
        .env("SQS_ENDPOINT", moto())
        .env("SQS_QUEUE_URL", queue)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the worker starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Seen {
        killed: false,
        exit: None,
        bodies: 0,
        out_of_order: Vec::new(),
        largest_group: 0,
    };
    while let Some(line) = lines.next_line().await.expect("the worker's stdout") {
        if line.starts_with("OUT_OF_ORDER") {
            seen.out_of_order.push(line.clone());
        }
        if let Some(batch) = line.strip_prefix("BATCH ") {
            let largest = batch.rsplit(' ').next().and_then(|n| n.parse().ok());
            seen.largest_group = seen.largest_group.max(largest.unwrap_or(0));
        }
        if line.starts_with("BODY ") {
            seen.bodies += 1;
            if Some(seen.bodies) == kill_at {
                child.start_kill().expect("SIGKILL");
                seen.killed = true;
                break;
            }
        }
    }
    seen.exit = child.wait().await.expect("the worker is reaped").code();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto and the PostgreSQL server that scripts/test starts and checks"]
async fn every_order_ships_exactly_once_in_group_order_across_killed_consumers() {
    let orders: usize = std::env::var("IDEM_SQS_E2E_ORDERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(40);
    let store = store_on(pool(4).await, "sqs").await;
    let schema = store.cleanup.0.clone();
    let tables = format!(
        "CREATE TABLE \"{schema}\".effects (id bigserial PRIMARY KEY, token text NOT NULL UNIQUE, \
           key text NOT NULL, grp text NOT NULL, seq bigint NOT NULL, pid integer NOT NULL);
         CREATE TABLE \"{schema}\".runs (key text NOT NULL);"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(tables))
        .execute(store.pool())
        .await
        .unwrap();

    let sqs = sqs_client::local(&moto());
    let name = format!(
        "idem-e2e-{}.fifo",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let queue = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .send()
        .await
        .expect("moto creates the queue")
        .queue_url
        .unwrap();
    // Each order once, one in five twice (a producer's duplicate: another message, the
    // same order), in each group's order.
    let mut sent = 0;
    for seq in 0..orders / GROUPS {
        for group in 0..GROUPS {
            let body = serde_json::json!({
                "id": format!("order-{group}-{seq:03}"),
                "group": format!("g{group}"),
                "seq": seq,
            })
            .to_string();
            let copies = if (seq + group) % 5 == 0 { 2 } else { 1 };
            for _ in 0..copies {
                sent += 1;
                sqs.send_message()
                    .queue_url(&queue)
                    .message_body(&body)
                    .message_group_id(format!("g{group}"))
                    .message_deduplication_id(format!("send-{sent}"))
                    .send()
                    .await
                    .expect("moto takes the message");
            }
        }
    }

    // Three consumers; two are killed mid-body, each replaced by one that runs to the
    // end.
    let plans = [Some(3), Some(9), None];
    let mut running: Vec<_> = plans
        .into_iter()
        .map(|plan| tokio::spawn(worker(schema.clone(), queue.clone(), plan)))
        .collect();
    let mut seen = Vec::new();
    while let Some(task) = running.pop() {
        let done = tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("the consumers drain the queue within two minutes")
            .unwrap();
        if done.killed {
            running.push(tokio::spawn(worker(schema.clone(), queue.clone(), None)));
        }
        seen.push(done);
    }
    let kills = seen.iter().filter(|s| s.killed).count();
    assert_eq!(kills, 2, "{seen:?}");
    for worker in seen.iter().filter(|s| !s.killed) {
        assert_eq!(worker.exit, Some(0), "{seen:?}");
    }

    // Exactly one effect per order, each group's effects in its order.
    let effects: Vec<(String, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT key, grp, seq FROM \"{schema}\".effects ORDER BY id"
    )))
    .fetch_all(store.pool())
    .await
    .unwrap();
    let mut keys: Vec<&str> = effects.iter().map(|(key, _, _)| key.as_str()).collect();
    keys.sort();
    let before = keys.len();
    keys.dedup();
    assert_eq!(before, keys.len(), "no order has two effects");
    assert_eq!(
        keys.len(),
        orders / GROUPS * GROUPS,
        "every order has an effect"
    );
    for worker in &seen {
        assert!(worker.out_of_order.is_empty(), "{seen:?}");
    }
    assert!(
        seen.iter().any(|worker| worker.largest_group >= 2),
        "some batch held several messages of one group: {seen:?}"
    );
    let mut across = Vec::new();
    for group in 0..GROUPS {
        let seqs: Vec<i64> = effects
            .iter()
            .filter(|(_, grp, _)| *grp == format!("g{group}"))
            .map(|(_, _, seq)| *seq)
            .collect();
        if !seqs.windows(2).all(|w| w[0] < w[1]) {
            across.push(format!("g{group}: {seqs:?}"));
        }
    }
    let (runs,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{schema}\".runs"
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    eprintln!(
        "sqs end to end: {sent} messages, {} orders, {runs} body runs, {kills} consumers killed mid-body; groups whose effects moto delivered out of order across batches: {across:?}; {seen:?}",
        keys.len()
    );
    assert!(runs as usize >= keys.len());
}
