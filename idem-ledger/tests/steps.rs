//! Steps survive kills (`docs/protocol.md` §3.7): `steps-worker` processes run a
//! three-step body (`charge`: a downstream POST with the step's key, `ledger`: a
//! database step whose row commits with its journal entry, `notify`: a second POST) and
//! are SIGKILLed at one kill point: before, inside (the effect done, its result not
//! journaled) and after each step, and between the last step and the completion. Each
//! kill is a process of its own holding one key at the point: 20 kills per point by
//! default (`IDEM_STEPS_KILLS=N` for a deeper run), a few processes at a time. A second
//! worker then finishes the point's keys. For every key: the journal at the kill holds
//! exactly the steps finished before the point, no journaled step runs again, every
//! downstream effect happens once (one key per step, the step's own, sent again by a
//! re-run of an unjournaled step), one ledger row, and the record ends completed with an
//! empty journal. On PostgreSQL (the journal and the ledger in one database: the ledger
//! step is a database step) and on dynalite (the journal in DynamoDB: the ledger step is
//! an insert keyed by the order, a plain step).

#[path = "../../idem-postgres/tests/common/mod.rs"]
mod common;

use std::collections::{BTreeSet, HashMap};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use common::{pool, store_on, TestStore};
use idem_core::key::step_token;
use idem_core::store::State as RecordState;
use idem_core::Store;
use idem_dynamo::DynamoStore;
use idem_http::downstream_key;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const NAMESPACE: &str = "steps::order";
/// Kills per kill point in CI: each a worker process of its own, killed with its one key
/// at the point.
const KILLS: usize = 20;
/// Killed workers running at once (the machine has two cores).
const AT_ONCE: usize = 4;

/// Kills per point: `IDEM_STEPS_KILLS`, or [`KILLS`].
fn kills_per_point() -> usize {
    match std::env::var("IDEM_STEPS_KILLS") {
        Ok(n) => n.parse().ok().filter(|n| *n > 0).unwrap_or_else(|| {
            panic!("IDEM_STEPS_KILLS={n}: a count of kills per point, at least 1")
        }),
        Err(_) => KILLS,
    }
}

/// The kill points, and the steps journaled when a body stands at each.
const POINTS: [(&str, &[&str]); 7] = [
    ("before:charge", &[]),
    ("inside:charge", &[]),
    ("after:charge", &["charge"]),
    ("inside:ledger", &["charge"]),
    ("after:ledger", &["charge", "ledger"]),
    ("inside:notify", &["charge", "ledger"]),
    ("after:notify", &["charge", "ledger", "notify"]),
];

/// The counting downstream: every request's `Idempotency-Key`, per step and order; an
/// effect happens once per key (a repeated key gets the first answer back).
#[derive(Default)]
struct Downstream {
    /// (step, order key) → the idempotency keys received, in order.
    requests: Mutex<HashMap<(String, String), Vec<String>>>,
}

async fn downstream(
    State(counts): State<Arc<Downstream>>,
    Path(step): Path<String>,
    headers: HeaderMap,
    order: String,
) -> String {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    let answer = format!("{step}-{}", &key[..key.len().min(12)]);
    counts
        .requests
        .lock()
        .unwrap()
        .entry((step, order))
        .or_default()
        .push(key);
    answer
}

async fn serve() -> (String, Arc<Downstream>) {
    let counts = Arc::new(Downstream::default());
    let app = Router::new()
        .route("/{step}", post(downstream))
        .with_state(counts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), counts)
}

/// What a worker printed: the steps each key started to run, its results.
#[derive(Debug, Default)]
struct Printed {
    runs: HashMap<String, Vec<String>>,
    results: HashMap<String, String>,
    exit: Option<i32>,
}

/// Where the records live: PostgreSQL (the store's schema), or a dynalite table.
enum Records {
    Postgres,
    Dynalite { endpoint: String, table: String },
}

/// What every worker of one proof is started with: the environment naming the store,
/// the schema and the counting server.
#[derive(Clone)]
struct Workers {
    env: Arc<Vec<(&'static str, String)>>,
}

impl Workers {
    fn new(store: &TestStore, records: &Records, url: &str) -> Self {
        let mut env = vec![
            ("STEPS_URL", common::url()),
            ("STEPS_SCHEMA", store.cleanup.0.clone()),
            ("STEPS_DOWNSTREAM", url.to_owned()),
        ];
        if let Records::Dynalite { endpoint, table } = records {
            env.push(("STEPS_STORE", "dynamo".to_owned()));
            env.push(("STEPS_DYNAMO", endpoint.clone()));
            env.push(("STEPS_TABLE", table.clone()));
        }
        Workers { env: Arc::new(env) }
    }

    /// Starts a worker on `keys`, reads its lines, and SIGKILLs it once every key has
    /// reached `stop` (or lets it finish when `stop` is `none`).
    async fn run(self, keys: Vec<String>, stop: String) -> Printed {
        let mut command = Command::new(env!("CARGO_BIN_EXE_steps-worker"));
        command.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        let mut child = command
            .env("STEPS_KEYS", keys.join(","))
            .env("STEPS_STOP", &stop)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the worker starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut printed = Printed::default();
        let mut at_stop = BTreeSet::new();
        while let Some(line) = lines.next_line().await.expect("the worker's stdout") {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["AT", key, point] if *point == stop => {
                    at_stop.insert(key.to_string());
                    if at_stop.len() == keys.len() {
                        child.start_kill().expect("SIGKILL");
                        break;
                    }
                }
                ["RUN", key, step, _fence] => printed
                    .runs
                    .entry(key.to_string())
                    .or_default()
                    .push(step.to_string()),
                ["RESULT", key, outcome] => {
                    printed.results.insert(key.to_string(), outcome.to_string());
                }
                _ => {}
            }
        }
        printed.exit = child.wait().await.expect("the worker is reaped").code();
        printed
    }
}

async fn ledger_rows(store: &TestStore, key: &str) -> i64 {
    common::ledger_rows(store, key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn every_step_takes_effect_once_after_kills_at_every_point() {
    proof(Records::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the PostgreSQL server and dynalite, which scripts/test starts"]
async fn every_step_takes_effect_once_after_kills_at_every_point_on_dynalite() {
    let endpoint = std::env::var("IDEM_TEST_DYNALITE").unwrap_or_else(|_| {
        panic!("IDEM_TEST_DYNALITE is not set: run these tests through scripts/test, which starts dynalite")
    });
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let table = format!("idem-steps-{}-{nanos}", std::process::id());
    proof(Records::Dynalite { endpoint, table }).await;
}

async fn proof(records: Records) {
    let store = store_on(pool(8).await, "steps").await;
    // The ledger's primary key is what keeps the plain ledger step (dynalite) from
    // writing twice; the database step needs none.
    let ledger = format!(
        "CREATE TABLE \"{}\".ledger (key text PRIMARY KEY, fence bigint NOT NULL, pid integer NOT NULL)",
        store.cleanup.0
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(ledger))
        .execute(store.pool())
        .await
        .unwrap();
    let journal: Arc<dyn Store> = match &records {
        Records::Postgres => Arc::new(store.store.clone()),
        Records::Dynalite { endpoint, table } => {
            let builder =
                DynamoStore::builder(idem_dynamo::local_client(endpoint), table).check_ttl(false);
            builder.create_table().await.expect("the table is created");
            Arc::new(builder.build().await.expect("the store builds"))
        }
    };
    let engine = idem_core::EngineBuilder::from_arc(journal.clone())
        .build()
        .unwrap();
    let (url, downstream) = serve().await;
    let workers = Workers::new(&store, &records, &url);
    let per_point = kills_per_point();
    let mut kills = 0;
    for (point, journaled) in POINTS {
        let keys: Vec<String> = (0..per_point).map(|k| format!("{point}-{k}")).collect();
        for group in keys.chunks(AT_ONCE) {
            let running: Vec<_> = group
                .iter()
                .map(|key| tokio::spawn(workers.clone().run(vec![key.clone()], point.to_owned())))
                .collect();
            for (key, worker) in group.iter().zip(running) {
                let killed = worker.await.expect("the worker's reader does not panic");
                assert_eq!(
                    killed.exit, None,
                    "{key}: the worker was killed by a signal"
                );
                assert!(
                    killed.results.is_empty(),
                    "{key}: the delivery did not end before the kill"
                );
                kills += 1;
            }
        }
        for key in &keys {
            let id = engine.record_id(NAMESPACE, key.as_str()).unwrap();
            let record = journal.read(&id).await.unwrap().unwrap();
            let names: Vec<&str> = record.steps.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(
                (record.state, names.as_slice()),
                (RecordState::InProgress, journaled),
                "{key}: the journal at the kill holds the steps finished before {point}"
            );
        }
        let finished = workers.clone().run(keys.clone(), "none".to_owned()).await;
        assert_eq!(
            finished.exit,
            Some(0),
            "{point}: the second worker finishes: {finished:?}"
        );
        for key in &keys {
            assert_eq!(finished.results[key], "ran", "{key}");
            let reran = finished.runs.get(key).cloned().unwrap_or_default();
            for step in journaled {
                assert!(
                    !reran.contains(&step.to_string()),
                    "{key}: the journaled step {step} ran again ({reran:?})"
                );
            }
            let id = engine.record_id(NAMESPACE, key.as_str()).unwrap();
            let record = journal.read(&id).await.unwrap().unwrap();
            assert_eq!(record.state, RecordState::Completed, "{key}");
            assert!(
                record.steps.is_empty(),
                "{key}: the completion empties the journal"
            );
            assert_eq!(ledger_rows(&store, key).await, 1, "{key}: one ledger row");
            let token = &id.digest_hex().to_string();
            let requests = downstream.requests.lock().unwrap();
            for step in ["charge", "notify"] {
                let sent = &requests[&(step.to_owned(), key.clone())];
                let expected = downstream_key(&step_token(token, step), &format!("POST /{step}"));
                assert!(
                    sent.iter().all(|k| *k == expected),
                    "{key}: every {step} request carries the step's key: {sent:?}"
                );
                // The effect: one per distinct key, so once. A step killed after its
                // request was answered and before its journal write is sent again.
                let repeats = if point == format!("inside:{step}") {
                    2
                } else {
                    1
                };
                assert_eq!(
                    sent.len(),
                    repeats,
                    "{key}: {step} requests after a kill at {point}"
                );
            }
        }
    }
    assert_eq!(kills, POINTS.len() * per_point);
    eprintln!(
        "steps proof: {kills} worker processes SIGKILLed, {per_point} at each of {} points; \
         {kills} keys completed; every step's effect once",
        POINTS.len(),
    );
}
