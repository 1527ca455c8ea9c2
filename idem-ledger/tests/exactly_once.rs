//! Exactly once for a database effect: worker processes deliver every key several times
//! at once, each delivery writing a ledger row in idem's transaction; workers are killed
//! (SIGKILL) in the middle of a body and between a completion and its commit, and a
//! stalled body loses its lease to a redelivery. At the end every key has **exactly
//! one** ledger row, written by the attempt whose completion the record holds.

#[path = "../../idem-postgres/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::process::Stdio;

use common::{pool, store_on, TestStore};
use idem_core::store::State;
use idem_core::Engine;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const NAMESPACE: &str = "ledger::pay";

/// Where a worker is to be killed: at its `n`-th line starting with `marker`.
#[derive(Debug, Clone, Copy)]
struct KillAt {
    marker: &'static str,
    n: usize,
}

struct Worker {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

fn start(schema: &str, keys: &[String], mode: &str) -> Worker {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ledger-worker"))
        .env("LEDGER_URL", common::url())
        .env("LEDGER_SCHEMA", schema)
        .env("LEDGER_KEYS", keys.join(","))
        .env("LEDGER_MODE", mode)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the worker starts");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    Worker { child, lines }
}

/// What one worker did, as the test saw it.
#[derive(Debug, Default)]
struct Seen {
    killed_at: Option<&'static str>,
    exit: Option<i32>,
    outcomes: HashMap<String, usize>,
}

/// Reads a worker's lines until it exits, or until `kill` says to SIGKILL it.
async fn watch(mut worker: Worker, kill: Option<KillAt>) -> Seen {
    let mut seen = Seen::default();
    let mut marks = 0;
    while let Some(line) = worker.lines.next_line().await.expect("the worker's stdout") {
        if let Some(kill) = kill {
            if line.starts_with(kill.marker) {
                marks += 1;
                if marks == kill.n {
                    worker.child.start_kill().expect("SIGKILL");
                    seen.killed_at = Some(kill.marker);
                    break;
                }
            }
        }
        if let Some(result) = line.strip_prefix("RESULT ") {
            let outcome = result.rsplit(' ').next().unwrap_or_default().to_owned();
            *seen.outcomes.entry(outcome).or_default() += 1;
        }
    }
    let status = worker.child.wait().await.expect("the worker is reaped");
    seen.exit = status.code();
    seen
}

async fn ledger(store: &TestStore) -> Vec<(String, i64, i64)> {
    let statement = format!(
        "SELECT key, count(*), max(fence) FROM \"{}\".ledger GROUP BY key ORDER BY key",
        store.cleanup.0
    );
    sqlx::query_as(sqlx::AssertSqlSafe(statement))
        .fetch_all(store.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn every_key_has_exactly_one_ledger_row_after_kills_stalls_and_duplicates() {
    let store = store_on(pool(4).await, "ledger").await;
    let schema = store.cleanup.0.clone();
    let create = format!("CREATE TABLE \"{schema}\".ledger (key text NOT NULL, fence bigint NOT NULL, pid integer NOT NULL)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(create))
        .execute(store.pool())
        .await
        .unwrap();
    // Four waves of three workers, each delivering every key of its wave: every key is
    // delivered three times at once. In each wave one worker is killed in the middle of
    // a body, one between a completion and its commit.
    let mut seen = Vec::new();
    let mut keys = Vec::new();
    for wave in 0..4 {
        let wave_keys: Vec<String> = (0..20).map(|n| format!("payment-{wave}-{n:02}")).collect();
        keys.extend(wave_keys.iter().cloned());
        let plans = [
            Some(KillAt {
                marker: "BODY",
                n: 4 + wave,
            }),
            Some(KillAt {
                marker: "COMMITTING",
                n: 1 + wave,
            }),
            None,
        ];
        let watchers: Vec<_> = plans
            .into_iter()
            .map(|plan| tokio::spawn(watch(start(&schema, &wave_keys, "storm"), plan)))
            .collect();
        for watcher in watchers {
            seen.push(watcher.await.unwrap());
        }
    }

    // A body that stalls past its lease (its heartbeats stop at max_duration) while a
    // redelivery waits for the key: the redelivery takes over and commits; the stalled
    // body's completion is refused and its ledger row rolled back.
    let stalled_key = vec!["payment-stalled".to_owned()];
    let mut staller = start(&schema, &stalled_key, "stall");
    let first = staller.lines.next_line().await.unwrap().unwrap_or_default();
    assert!(first.starts_with("BODY payment-stalled"), "{first}");
    let redelivery = tokio::spawn(watch(start(&schema, &stalled_key, "sweep"), None));
    let stalled = watch(staller, None).await;
    let redelivered = redelivery.await.unwrap();
    assert_eq!(stalled.outcomes.get("lease_lost"), Some(&1), "{stalled:?}");
    assert_eq!(redelivered.outcomes.get("ran"), Some(&1), "{redelivered:?}");

    // Every key delivered once more, until it has a value.
    let sweep = watch(start(&schema, &keys, "sweep"), None).await;
    assert_eq!(
        sweep.exit,
        Some(0),
        "every key ends with a value: {sweep:?}"
    );

    // The workers that were not killed ended every delivery in an expected way.
    for worker in seen.iter().filter(|s| s.killed_at.is_none()) {
        assert_eq!(worker.exit, Some(0), "{worker:?}");
    }
    let kills = |marker| seen.iter().filter(|s| s.killed_at == Some(marker)).count();
    let mut totals: HashMap<&str, usize> = HashMap::new();
    for worker in seen.iter().chain([&sweep]) {
        for (outcome, n) in &worker.outcomes {
            *totals.entry(outcome.as_str()).or_default() += n;
        }
    }
    eprintln!(
        "ledger storm: {} kills mid-body, {} between completion and commit; outcomes {totals:?}",
        kills("BODY"),
        kills("COMMITTING")
    );
    assert!(kills("BODY") >= 3, "kills mid-body happened: {seen:?}");
    assert!(
        kills("COMMITTING") >= 3,
        "kills before a commit happened: {seen:?}"
    );

    // Exactly one ledger row per key, written by the attempt the record completed.
    let rows = ledger(&store).await;
    let all_keys: Vec<String> = keys.iter().chain(&stalled_key).cloned().collect();
    let mut expected = all_keys.clone();
    expected.sort();
    assert_eq!(
        rows.iter().map(|(k, _, _)| k.clone()).collect::<Vec<_>>(),
        expected
    );
    let engine = Engine::new(store.store.clone());
    for (key, count, fence) in &rows {
        assert_eq!(*count, 1, "{key} has exactly one ledger row");
        let id = engine.record_id(NAMESPACE, key.as_str()).unwrap();
        let record = idem_core::Store::read(&*store, &id)
            .await
            .unwrap()
            .expect("a record");
        assert_eq!(record.state, State::Completed, "{key}");
        assert_eq!(
            record.fence as i64, *fence,
            "{key}: the row is the completed attempt's"
        );
    }
}
