//! The layer's transactional form on the machine's PostgreSQL (`IDEM_TEST_POSTGRES`,
//! which `scripts/test` exports), with a real axum server on loopback and a reqwest
//! client: the handler's ledger row and the recorded response commit together, in one
//! transaction, or neither does, including when the server process is killed
//! (SIGKILL) in the middle of the handler.

#[path = "../../idem-postgres/tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use common::{store, store_on, TestStore};
use idem_core::store::Store as _;
use idem_core::Engine;
use idem_http::{IdempotencyLayer, RequestTransaction};
use idem_postgres::{PgStore, PgTransaction};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The lease of the engines here: short, so the killed server's key frees soon, and
/// long enough that it is still held when the test asks, on a loaded machine.
const LEASE: Duration = Duration::from_secs(5);

/// What the ledger handler does on its `n`-th run (from 1).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Then {
    /// Answers 201 with the row's id.
    Created,
    /// Answers 500 after writing its row.
    ServerError,
    /// Panics after writing its row.
    Panic,
    /// Keeps its transaction in a task after answering (a misuse).
    KeepTransaction,
    /// Says `WRITTEN` on stdout after writing its row, then sleeps (to be killed).
    Hang,
    /// Answers 201 with a body that fails on its first frame.
    FailingBody,
}

#[derive(Clone)]
struct Ledger {
    table: String,
    runs: Arc<AtomicUsize>,
    script: Vec<Then>,
}

/// Writes one ledger row in the request's transaction, then does what the script says.
async fn pay(
    State(ledger): State<Ledger>,
    mut tx: RequestTransaction<PgTransaction>,
    body: String,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let run = ledger.runs.fetch_add(1, Ordering::SeqCst);
    let then = ledger.script.get(run).copied().unwrap_or(Then::Created);
    let id: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {} (note) VALUES ($1) RETURNING id",
        ledger.table
    )))
    .bind(&body)
    .fetch_one(&mut **tx)
    .await
    .expect("the ledger row is written");
    match then {
        Then::Created => (StatusCode::CREATED, format!("row {id}")).into_response(),
        Then::ServerError => {
            (StatusCode::INTERNAL_SERVER_ERROR, "try again".to_owned()).into_response()
        }
        Then::Panic => panic!("the handler panics after writing its row"),
        Then::KeepTransaction => {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                drop(tx);
            });
            (StatusCode::CREATED, format!("row {id}")).into_response()
        }
        Then::Hang => {
            println!("WRITTEN {id}");
            tokio::time::sleep(Duration::from_secs(600)).await;
            (StatusCode::CREATED, format!("row {id}")).into_response()
        }
        Then::FailingBody => {
            let failing = futures_util::stream::iter([Err::<bytes::Bytes, _>(
                std::io::Error::other("the body fails on its first frame"),
            )]);
            (StatusCode::CREATED, axum::body::Body::from_stream(failing)).into_response()
        }
    }
}

/// The ledger table in the store's schema; its qualified name.
async fn ledger_table(store: &PgStore, schema: &str) -> String {
    let table = format!("\"{schema}\".ledger");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {table} (id bigserial PRIMARY KEY, note text NOT NULL)"
    )))
    .execute(store.pool())
    .await
    .expect("the ledger table");
    table
}

async fn rows(store: &PgStore, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

fn app(store: PgStore, ledger: Ledger) -> Router {
    let engine = Engine::builder(store)
        .lease(LEASE)
        .store_timeout(Duration::from_secs(1))
        .build()
        .expect("valid settings");
    Router::new()
        .route("/payments", post(pay))
        .with_state(ledger)
        .layer(
            IdempotencyLayer::new(engine)
                .global_keys()
                .in_transaction::<PgTransaction>(),
        )
}

/// A server on an ephemeral port; its URL. Stopped when the task is aborted.
async fn serve(app: Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

async fn post_payment(url: &str, key: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/payments"))
        .header("idempotency-key", key)
        .body("10 EUR")
        .send()
        .await
        .unwrap()
}

/// A test's store, ledger and server; the handler follows `script`.
struct Setup {
    store: TestStore,
    table: String,
    runs: Arc<AtomicUsize>,
    url: String,
    _server: tokio::task::JoinHandle<()>,
}

async fn setup(label: &str, script: Vec<Then>) -> Setup {
    let store = store(label).await;
    let table = ledger_table(&store.store, &store.cleanup.0).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let ledger = Ledger {
        table: table.clone(),
        runs: runs.clone(),
        script,
    };
    let (url, server) = serve(app(store.store.clone(), ledger)).await;
    Setup {
        store,
        table,
        runs,
        url,
        _server: server,
    }
}

/// One request, one record, one transaction: the handler's row commits with its
/// recorded response, and the retry replays that response without a second row.
/// (Mutation tried: the transaction not lent to the request: the handler's extractor
/// is refused, 500.)
#[tokio::test]
#[ignore = "needs PostgreSQL: run through scripts/test"]
async fn the_handlers_row_commits_with_its_recorded_response_and_the_retry_replays() {
    let setup = setup("http_tx_commit", vec![Then::Created]).await;
    let first = post_payment(&setup.url, "\"k1\"").await;
    assert_eq!(first.status(), 201);
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let body = first.text().await.unwrap();
    assert_eq!(rows(&setup.store.store, &setup.table).await, 1);
    let retry = post_payment(&setup.url, "\"k1\"").await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.text().await.unwrap(), body);
    assert_eq!(rows(&setup.store.store, &setup.table).await, 1);
    assert_eq!(setup.runs.load(Ordering::SeqCst), 1);
}

/// A server error and a panic roll the handler's row back and release the key, so the
/// retry runs the handler on a ledger without it: one row in the end. (Mutation tried:
/// the handler's response given only after a commit: the 5xx became a 503.)
#[tokio::test]
#[ignore = "needs PostgreSQL: run through scripts/test"]
async fn a_server_error_or_a_panic_rolls_the_row_back_and_the_retry_runs_again() {
    let setup = setup("http_tx_rollback", vec![Then::ServerError, Then::Panic]).await;
    let failed = post_payment(&setup.url, "\"k2\"").await;
    assert_eq!(failed.status(), 500);
    assert_eq!(failed.text().await.unwrap(), "try again");
    assert_eq!(rows(&setup.store.store, &setup.table).await, 0);
    let panicked = post_payment(&setup.url, "\"k2\"").await;
    assert_eq!(panicked.status(), 500);
    assert_eq!(
        panicked.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(rows(&setup.store.store, &setup.table).await, 0);
    let created = post_payment(&setup.url, "\"k2\"").await;
    assert_eq!(created.status(), 201);
    assert_eq!(rows(&setup.store.store, &setup.table).await, 1);
    assert_eq!(setup.runs.load(Ordering::SeqCst), 3);
}

/// A handler that keeps its transaction past its response (here, in a task) does not
/// commit it: 503, no row, the key released; the retry runs again. (Mutation tried:
/// completing and committing once the handler lets go instead of refusing: 201.)
#[tokio::test]
#[ignore = "needs PostgreSQL: run through scripts/test"]
async fn a_transaction_kept_past_the_response_is_not_committed() {
    let setup = setup("http_tx_kept", vec![Then::KeepTransaction]).await;
    let kept = post_payment(&setup.url, "\"k3\"").await;
    assert_eq!(kept.status(), 503);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(rows(&setup.store.store, &setup.table).await, 0);
    let retry = post_payment(&setup.url, "\"k3\"").await;
    assert_eq!(retry.status(), 201);
    assert_eq!(rows(&setup.store.store, &setup.table).await, 1);
}

/// A body that fails after the handler ran: its row commits with the record, which
/// says "not stored", and the answer says so (410 response-not-stored, the same as the
/// retry's), never that the handler did not run. (Mutation tried: the earlier
/// `RecordUnreadable` answer, "the handler did not run": the first assertion fails.)
#[tokio::test]
#[ignore = "needs PostgreSQL: run through scripts/test"]
async fn a_body_that_fails_after_the_handler_ran_is_answered_not_stored() {
    let setup = setup("http_tx_body_fails", vec![Then::FailingBody]).await;
    let first = post_payment(&setup.url, "\"k5\"").await;
    assert_eq!(first.status(), 410);
    assert!(first
        .text()
        .await
        .unwrap()
        .contains("variant.ResponseNotStored"));
    let retry = post_payment(&setup.url, "\"k5\"").await;
    assert_eq!(retry.status(), 410);
    assert_eq!(setup.runs.load(Ordering::SeqCst), 1);
    assert_eq!(rows(&setup.store.store, &setup.table).await, 1);
}

/// The environment variable that makes [`server_process`] a server.
const CHILD: &str = "IDEM_HTTP_TX_CHILD_SCHEMA";

/// Not a test: the server process [`a_server_killed_mid_handler_leaves_no_row_and_the_retry_runs_once`]
/// starts (this test binary, run with [`CHILD`] set) and kills. It serves the ledger
/// in the given schema, prints `LISTENING <url>`, and its handler `WRITTEN <id>` before
/// it hangs. Without the variable it does nothing.
#[tokio::test]
#[ignore = "needs PostgreSQL: run through scripts/test"]
async fn server_process() {
    let Ok(schema) = std::env::var(CHILD) else {
        return;
    };
    let store = PgStore::builder(common::pool(4).await)
        .schema(schema.clone())
        .lock_held(true)
        .build()
        .unwrap();
    let table = ledger_table(&store, &schema).await;
    let ledger = Ledger {
        table,
        runs: Arc::default(),
        script: vec![Then::Hang],
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("LISTENING http://{}", listener.local_addr().unwrap());
    axum::serve(listener, app(store, ledger)).await.unwrap();
}

/// A server process killed (SIGKILL) while its handler holds the request's transaction,
/// its row written but not committed: no row survives, the key is free at once (the
/// transaction that held it ended with the process's session), and the retry, on
/// another server over the same database, runs the handler once: one row, and its
/// response replayed after.
/// (Mutation tried: the transaction not lent to the request: the child's handler is
/// refused before it writes, and the test fails waiting for `WRITTEN`.)
#[tokio::test]
#[ignore = "needs PostgreSQL: run through scripts/test"]
async fn a_server_killed_mid_handler_leaves_no_row_and_the_retry_runs_once() {
    let store = store_on(common::pool(8).await, "http_tx_killed").await;
    let schema = store.cleanup.0.clone();
    let table = ledger_table(&store.store, &schema).await;
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "server_process",
            "--include-ignored",
            "--nocapture",
        ])
        .env(CHILD, &schema)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the server process starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The server's line starting with `prefix` (what follows it), within 30 s.
    let mut wait_for = async |prefix: &str| {
        let line = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let line = lines.next_line().await.unwrap();
                match line {
                    Some(line) if line.starts_with(prefix) => break Some(line),
                    Some(_) => {}
                    None => break None,
                }
            }
        });
        let line = line.await.ok().flatten();
        let line = line.unwrap_or_else(|| panic!("the server process did not say {prefix}"));
        line[prefix.len()..].to_owned()
    };
    let url = wait_for("LISTENING ").await;
    let request = tokio::spawn({
        let url = url.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{url}/payments"))
                .header("idempotency-key", "\"killed\"")
                .body("10 EUR")
                .send()
                .await
        }
    });
    wait_for("WRITTEN ").await;
    child.start_kill().expect("SIGKILL");
    child.wait().await.unwrap();
    assert!(
        request.await.unwrap().is_err(),
        "the client lost its server"
    );
    assert_eq!(
        rows(&store.store, &table).await,
        0,
        "nothing of the handler"
    );

    let runs = Arc::new(AtomicUsize::new(0));
    let ledger = Ledger {
        table: table.clone(),
        runs: runs.clone(),
        script: vec![Then::Created],
    };
    let (url, _server) = serve(app(store.store.clone(), ledger)).await;
    // The killed server's transaction held the key (PostgreSQL's lock-held form): the
    // database ended it with the session, so the retry runs at once, with no lease to
    // wait out, and there is no record of the killed attempt to see.
    let record = store
        .store
        .read(&record_id(&store.store, "killed"))
        .await
        .unwrap();
    assert!(record.is_none(), "{record:?}");
    let retry = post_payment(&url, "\"killed\"").await;
    assert_eq!(retry.status(), 201);
    let body = retry.text().await.unwrap();
    let replay = post_payment(&url, "\"killed\"").await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.text().await.unwrap(), body);
    assert_eq!(rows(&store.store, &table).await, 1);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the retry ran the handler once"
    );
}

/// The record id of a global key in the layer's namespace.
fn record_id(store: &PgStore, key: &str) -> idem_core::RecordId {
    Engine::new(store.clone())
        .record_id("http", key)
        .expect("a valid key")
}

/// The misconfigurations, without a database: a layer whose engine is over another
/// store than the transaction's refuses the guarded request before its handler runs
/// (503 `store-unavailable`, the error logged), and a handler that asks for the request's
/// transaction on a request the layer did not guard gets 500 naming what to fix, never
/// a transaction it does not have. (Mutation tried: the extractor's rejection answered
/// 200: the unguarded request's check fails.)
#[tokio::test]
async fn a_transaction_of_another_store_or_of_an_unguarded_request_is_refused() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let app = Router::new()
        .route(
            "/payments",
            post(move |_: RequestTransaction<PgTransaction>| {
                counted.fetch_add(1, Ordering::SeqCst);
                async { StatusCode::CREATED }
            })
            .get(|_: RequestTransaction<PgTransaction>| async { StatusCode::OK }),
        )
        .layer(
            IdempotencyLayer::new(Engine::new(idem_core::MemoryStore::new()))
                .global_keys()
                .in_transaction::<PgTransaction>(),
        );
    let (url, _server) = serve(app).await;
    let guarded = post_payment(&url, "\"k4\"").await;
    assert_eq!(guarded.status(), 503);
    assert_eq!(
        guarded.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the handler did not run");
    let unguarded = reqwest::get(format!("{url}/payments")).await.unwrap();
    assert_eq!(unguarded.status(), 500);
    assert!(unguarded
        .text()
        .await
        .unwrap()
        .contains("in_transaction::<Tx>()"));
}
