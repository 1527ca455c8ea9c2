//! What every test against the machine's PostgreSQL shares: its URL (which
//! `scripts/test` checks and exports), a pool, and a store in a schema of its own that
//! is dropped with the store.
#![allow(dead_code)]

use std::time::Duration;

use idem_core::testkit::WithCleanup;
use idem_postgres::{PgStore, PgStoreBuilder};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

/// The server's URL, from the variable scripts/test exports.
pub fn url() -> String {
    std::env::var("IDEM_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!("IDEM_TEST_POSTGRES is not set: run these tests through scripts/test, which checks the server")
    })
}

/// A pool on the test server: `connections` at most.
pub async fn pool(connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect(&url())
        .await
        .unwrap_or_else(|e| panic!("the PostgreSQL server at {} does not answer: {e}", url()))
}

/// A schema that no other test or run uses, dropped (with everything in it) when this
/// is dropped.
#[derive(Debug)]
pub struct Schema(pub String);

impl Schema {
    pub fn new(label: &str) -> Schema {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        Schema(format!("idem_test_{label}_{}", &unique[..16]))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let statement = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0);
        // Drop may run inside a runtime: the statement runs on a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let mut connection = PgConnection::connect(&url()).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                    .execute(&mut connection)
                    .await
                    .map(|_| ())
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop the test schema {}: {error}", self.0);
        }
    }
}

/// A migrated store in a fresh schema; the schema is dropped with it.
pub type TestStore = WithCleanup<PgStore, Schema>;

pub async fn store(label: &str) -> TestStore {
    store_on(pool(16).await, label).await
}

pub async fn store_on(pool: PgPool, label: &str) -> TestStore {
    build(pool, label, true).await
}

/// A migrated store whose transactions hold their keys by a clock lease, renewed by
/// heartbeats (`lock_held(false)`), in a fresh schema.
pub async fn clock_lease_store(label: &str) -> TestStore {
    build(pool(16).await, label, false).await
}

async fn build(pool: PgPool, label: &str, lock_held: bool) -> TestStore {
    build_with(pool, label, |builder| builder.lock_held(lock_held)).await
}

/// A migrated store on `pool` in a fresh schema, its builder set up by `setup`.
async fn build_with(
    pool: PgPool,
    label: &str,
    setup: impl FnOnce(PgStoreBuilder) -> PgStoreBuilder,
) -> TestStore {
    let schema = Schema::new(label);
    let store = setup(PgStore::builder(pool).schema(schema.0.clone()))
        .build()
        .expect("a valid schema name");
    store.migrate().await.expect("the migration runs");
    WithCleanup {
        store,
        cleanup: schema,
    }
}

/// `store` with a ledger table (`key`, `fence`) beside its records, in its schema: what
/// the transactional tests' bodies write.
pub async fn with_ledger(store: TestStore) -> TestStore {
    let ledger = format!(
        "CREATE TABLE \"{}\".ledger (key text NOT NULL, fence bigint NOT NULL)",
        store.cleanup.0
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(ledger))
        .execute(store.pool())
        .await
        .unwrap();
    store
}

/// A body's one ledger row for `key`, written under `fence` on `connection` (the
/// body's transaction).
pub async fn insert_ledger_row(
    schema: &str,
    key: &str,
    connection: &mut PgConnection,
    fence: u64,
) -> Result<(), sqlx::Error> {
    let statement = format!("INSERT INTO \"{schema}\".ledger (key, fence) VALUES ($1, $2)");
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(key)
        .bind(fence as i64)
        .execute(connection)
        .await
        .map(|_| ())
}

/// How many ledger rows `key` has, committed.
pub async fn ledger_rows(store: &TestStore, key: &str) -> i64 {
    let statement = format!(
        "SELECT count(*) FROM \"{}\".ledger WHERE key = $1",
        store.cleanup.0
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(statement))
        .bind(key)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// A migrated store on `pool` whose transactions hold their keys by a clock lease
/// (`lock_held(false)`), in a fresh schema, with `heartbeat_connections` of its own.
pub async fn clock_lease_store_on(
    pool: PgPool,
    label: &str,
    heartbeat_connections: u32,
) -> TestStore {
    build_with(pool, label, |builder| {
        builder.heartbeat_connections(heartbeat_connections)
    })
    .await
}
