//! Exactly once for a database effect: worker processes deliver every key several times
//! at once, each delivery writing a ledger row in idem's transaction; workers are killed
//! (SIGKILL) in the middle of a body and between a completion and its commit, and a
//! body stalls while a redelivery waits (under a clock lease it loses its lease to the
//! redelivery; when its transaction holds the key, the redelivery waits for its commit
//! and replays). At the end every key has **exactly one** ledger row, written by the
//! attempt whose completion the record holds. Both forms of the transaction run: the
//! key held by the transaction (`lock`, the default) and by a clock lease (`lease`).

#[path = "../../idem-postgres/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{pool, store_on, TestStore};
use idem_core::store::State;
use idem_core::{Call, Engine, Error};
use idem_postgres::PgTransaction;
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

fn start(form: &str, schema: &str, keys: &[String], mode: &str) -> Worker {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ledger-worker"))
        .env("LEDGER_URL", common::url())
        .env("LEDGER_SCHEMA", schema)
        .env("LEDGER_KEYS", keys.join(","))
        .env("LEDGER_MODE", mode)
        .env("LEDGER_FORM", form)
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
    storm("lock").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn every_key_has_exactly_one_ledger_row_under_a_clock_lease() {
    storm("lease").await;
}

/// A store in a schema of its own, with the ledger table beside its records.
async fn ledger_store(label: &str) -> TestStore {
    let store = store_on(pool(4).await, label).await;
    let schema = &store.cleanup.0;
    let create = format!("CREATE TABLE \"{schema}\".ledger (key text NOT NULL, fence bigint NOT NULL, pid integer NOT NULL)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(create))
        .execute(store.pool())
        .await
        .unwrap();
    store
}

async fn storm(form: &str) {
    let store = ledger_store("ledger").await;
    let schema = store.cleanup.0.clone();
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
            .map(|plan| tokio::spawn(watch(start(form, &schema, &wave_keys, "storm"), plan)))
            .collect();
        for watcher in watchers {
            seen.push(watcher.await.unwrap());
        }
    }

    // A body that stalls past its lease while a redelivery waits for the key. Under a
    // clock lease (its heartbeats stop at max_duration) the redelivery takes over and
    // commits; the stalled body's completion is refused and its ledger row rolled back.
    // When the transaction holds the key, nothing lapses: the redelivery waits for the
    // stalled body's commit and replays it.
    let stalled_key = vec!["payment-stalled".to_owned()];
    let mut staller = start(form, &schema, &stalled_key, "stall");
    let first = staller.lines.next_line().await.unwrap().unwrap_or_default();
    assert!(first.starts_with("BODY payment-stalled"), "{first}");
    let redelivery = tokio::spawn(watch(start(form, &schema, &stalled_key, "sweep"), None));
    let stalled = watch(staller, None).await;
    let redelivered = redelivery.await.unwrap();
    let (stalled_ends, redelivery_ends) = match form {
        "lease" => ("lease_lost", "ran"),
        _ => ("ran", "replayed"),
    };
    assert_eq!(stalled.outcomes.get(stalled_ends), Some(&1), "{stalled:?}");
    assert_eq!(
        redelivered.outcomes.get(redelivery_ends),
        Some(&1),
        "{redelivered:?}"
    );

    // Every key delivered once more, until it has a value.
    let sweep = watch(start(form, &schema, &keys, "sweep"), None).await;
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
        "ledger storm ({form}): {} kills mid-body, {} between completion and commit; outcomes {totals:?}",
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

/// Crash to free: a worker whose transaction holds the key (it wrote its ledger row, its
/// body never ends) is killed with SIGKILL; a duplicate from this process, waiting for
/// the key, runs the body as soon as PostgreSQL has ended the dead session and rolled
/// its transaction back. Measured from the kill to the duplicate's body, five times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_key_is_free_as_soon_as_its_killed_holder_s_session_ends() {
    let store = ledger_store("crash").await;
    let schema = store.cleanup.0.clone();
    let engine = Engine::new(store.store.clone());
    let mut times = Vec::new();
    for round in 0..5 {
        let key = format!("payment-crashed-{round}");
        let mut worker = start("lock", &schema, std::slice::from_ref(&key), "hang");
        let killed_fence: u64 = loop {
            let line = worker.lines.next_line().await.unwrap();
            let line = line.expect("the worker writes its row before it is killed");
            if let Some(fence) = line.strip_prefix(&format!("WROTE {key} ")) {
                break fence.parse().unwrap();
            }
        };
        worker.child.start_kill().expect("SIGKILL");
        let killed = Instant::now();
        let insert =
            format!("INSERT INTO \"{schema}\".ledger (key, fence, pid) VALUES ($1, $2, $3)");
        let (freed_after, fence) = Call::new(NAMESPACE, key.as_str())
            .engine(&engine)
            .wait(Duration::from_secs(20))
            .run_in_transaction(async |ctx, tx: &mut PgTransaction| {
                let freed_after = killed.elapsed();
                sqlx::query(sqlx::AssertSqlSafe(insert))
                    .bind(key.as_str())
                    .bind(ctx.fence() as i64)
                    .bind(std::process::id() as i32)
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| Error::Config(e.to_string()))?;
                Ok::<_, Error>((freed_after, ctx.fence()))
            })
            .await
            .expect("the duplicate runs the body once the holder is gone");
        worker.child.wait().await.expect("the worker is reaped");
        assert!(
            fence > killed_fence,
            "the duplicate's fence {fence} passes the killed attempt's {killed_fence}"
        );
        times.push(freed_after);
    }
    eprintln!("crash to free (SIGKILL to the duplicate's body), five rounds: {times:?}");
    // The target is under a second on loopback (a few milliseconds here); the bound is
    // generous for a loaded CI, yet below the worker's 900 ms clock lease, which a key
    // held by a lease would have to wait out.
    for time in &times {
        assert!(*time < Duration::from_millis(700), "{times:?}");
    }
    // One row per key: the killed attempts' rows were rolled back with their sessions.
    let rows = ledger(&store).await;
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert!(rows.iter().all(|(_, count, _)| *count == 1), "{rows:?}");
}
