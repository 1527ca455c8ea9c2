//! `ledger-worker`: one process of the exactly-once proof (`tests/exactly_once.rs`).
//!
//! It delivers keys to a payment handler run with `Call::run_in_transaction`: the body
//! inserts one ledger row per key in the transaction idem hands it. It announces on
//! stdout, one line each, when a body starts (`BODY key fence`) and when a completion
//! is written but not yet committed (`COMMITTING id`), so the test can kill it at
//! either point, and how each delivery ended (`RESULT key ran|replayed|in_progress|
//! lease_lost|store_error`).
//!
//! Settings, from the environment: `LEDGER_URL`, `LEDGER_SCHEMA`, `LEDGER_KEYS`
//! (comma-separated), `LEDGER_MODE` (`storm`: each key once, in a random order, 6 at a
//! time, some bodies stalling past their lease; `stall`: every body stalls; `sweep`:
//! each key until it has a value, waiting for attempts in progress; `hang`: every body
//! writes its ledger row, then never ends, for a test to kill the process mid-body),
//! `LEDGER_FORM` (`lock`, the default: the key held by the body's transaction, its row
//! lock the lease; `lease`: a clock lease renewed by heartbeats,
//! `PgStoreBuilder::lock_held(false)`).
//! Exits 0 when every delivery ended in one of the expected ways, 2 otherwise.

use std::sync::Arc;
use std::time::Duration;

use idem_core::store::{
    Attempt, Begin, Completion, Hold, Isolation, StoreError, Transaction, Written,
};
use idem_core::{Call, Engine, EngineBuilder, Error};
use idem_postgres::{PgStore, PgTransaction};
use sqlx::postgres::PgPoolOptions;
use tokio::sync::Semaphore;

const NAMESPACE: &str = "ledger::pay";
/// A body that stalls sleeps this long: past `MAX_DURATION` its heartbeats stop, and
/// past the lease another delivery may take the key over.
const STALL: Duration = Duration::from_millis(2500);
const LEASE: Duration = Duration::from_millis(900);
const MAX_DURATION: Duration = Duration::from_millis(300);

/// The store's transaction, announcing the moment between the completion written and
/// the commit, and holding it open a little, so the test can kill the process there.
struct Announced(PgTransaction);

#[idem_core::store::async_trait]
impl Transaction for Announced {
    type Store = PgStore;

    async fn open(store: &PgStore, isolation: Option<Isolation>) -> Result<Self, StoreError> {
        PgTransaction::open(store, isolation).await.map(Announced)
    }

    fn holds_key(store: &PgStore) -> bool {
        PgTransaction::holds_key(store)
    }

    async fn hold(&mut self, request: &Begin, wait: Option<Duration>) -> Result<Hold, StoreError> {
        self.0.hold(request, wait).await
    }

    async fn complete(&mut self, a: &Attempt, c: &Completion) -> Result<Written<()>, StoreError> {
        let written = self.0.complete(a, c).await?;
        if written == Written::Applied(()) {
            println!("COMMITTING {}", a.id);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        Ok(written)
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.0.commit().await
    }

    async fn rollback(self) -> Result<(), StoreError> {
        self.0.rollback().await
    }
}

fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("ledger-worker needs {name}"))
}

/// One delivery of `key`: the payment, written to the ledger in idem's transaction.
async fn pay(
    engine: &Engine,
    schema: &str,
    key: &str,
    stall: bool,
    wait: bool,
    hang: bool,
) -> &'static str {
    let insert = format!("INSERT INTO \"{schema}\".ledger (key, fence, pid) VALUES ($1, $2, $3)");
    let mut call = Call::new(NAMESPACE, key).engine(engine);
    if wait {
        call = call.wait(Duration::from_secs(10));
    }
    let mut ran = false;
    let result = call
        .run_in_transaction(async |ctx, tx: &mut Announced| {
            ran = true;
            println!("BODY {key} {}", ctx.fence());
            let pause = if stall {
                STALL
            } else {
                Duration::from_millis(fastrand::u64(5..40))
            };
            tokio::time::sleep(pause).await;
            sqlx::query(sqlx::AssertSqlSafe(insert))
                .bind(key)
                .bind(ctx.fence() as i64)
                .bind(std::process::id() as i32)
                .execute(&mut *tx.0)
                .await
                .map_err(|e| Error::Config(format!("the ledger insert failed: {e}")))?;
            if hang {
                println!("WROTE {key} {}", ctx.fence());
                std::future::pending::<()>().await;
            }
            Ok::<_, Error>(ctx.fence())
        })
        .await;
    match result {
        Ok(_) if ran => "ran",
        Ok(_) => "replayed",
        Err(Error::InProgress { .. }) => "in_progress",
        Err(Error::LeaseLost { .. }) => "lease_lost",
        Err(error @ Error::Store { .. }) if error.is_retryable() => "store_error",
        Err(error) => {
            eprintln!("ledger-worker: {key}: unexpected error: {error}");
            "unexpected"
        }
    }
}

#[tokio::main]
async fn main() {
    let schema = setting("LEDGER_SCHEMA");
    let mode = setting("LEDGER_MODE");
    let keys: Vec<String> = setting("LEDGER_KEYS")
        .split(',')
        .map(str::to_owned)
        .collect();
    let pool = PgPoolOptions::new()
        .max_connections(12)
        .connect(&setting("LEDGER_URL"))
        .await
        .expect("the PostgreSQL server answers");
    let lock_held = match std::env::var("LEDGER_FORM").as_deref() {
        Ok("lock") | Err(_) => true,
        Ok("lease") => false,
        Ok(other) => panic!("unknown LEDGER_FORM {other}"),
    };
    let store = PgStore::builder(pool)
        .schema(schema.clone())
        .lock_held(lock_held)
        .build()
        .unwrap();
    let engine = EngineBuilder::from_arc(Arc::new(store))
        .lease(LEASE)
        .max_duration(MAX_DURATION)
        .store_timeout(Duration::from_millis(250))
        .build()
        .unwrap();

    let mut order = keys.clone();
    fastrand::shuffle(&mut order);
    let parallel = Arc::new(Semaphore::new(6));
    let mut deliveries = Vec::new();
    for key in order {
        let (engine, schema, parallel) = (engine.clone(), schema.clone(), parallel.clone());
        let mode = mode.clone();
        deliveries.push(tokio::spawn(async move {
            let _slot = parallel.acquire().await.unwrap();
            let outcome = match mode.as_str() {
                "storm" => {
                    let stall = fastrand::u8(0..10) == 0;
                    pay(&engine, &schema, &key, stall, false, false).await
                }
                "stall" => pay(&engine, &schema, &key, true, false, false).await,
                "hang" => pay(&engine, &schema, &key, false, false, true).await,
                "sweep" => {
                    let mut outcome = "unexpected";
                    for _ in 0..20 {
                        outcome = pay(&engine, &schema, &key, false, true, false).await;
                        if matches!(outcome, "ran" | "replayed") {
                            break;
                        }
                    }
                    outcome
                }
                other => panic!("unknown LEDGER_MODE {other}"),
            };
            println!("RESULT {key} {outcome}");
            outcome
        }));
    }
    let mut healthy = true;
    for delivery in deliveries {
        let outcome = delivery.await.expect("a delivery does not panic");
        healthy &=
            outcome != "unexpected" && (mode != "sweep" || matches!(outcome, "ran" | "replayed"));
    }
    std::process::exit(if healthy { 0 } else { 2 });
}
