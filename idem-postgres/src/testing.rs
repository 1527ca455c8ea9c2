//! A schema of its own for each test, with a ready engine over it: a transactional handler is tested with its production body in a few
//! lines, as `sqlx::test` gives each test a database.
//!
//! The schema is created, the pool's connections get it as their `search_path` (so a
//! body's unqualified table names are the test's own), idem's table is migrated into
//! it, and it is dropped with everything in it when the [`TestSchema`] is dropped, a
//! panicking test included.
//!
//! ```no_run
//! use idem_core::{Call, Error};
//! use idem_postgres::testing::TestSchema;
//! use idem_postgres::PgTransaction;
//!
//! // The production body.
//! async fn charge(order: &str, tx: &mut PgTransaction) -> Result<i64, sqlx::Error> {
//!     sqlx::query("INSERT INTO ledger (order_id, cents) VALUES ($1, 1250)")
//!         .bind(order)
//!         .execute(&mut **tx)
//!         .await?;
//!     Ok(1250)
//! }
//!
//! #[tokio::test]
//! async fn a_charge_is_written_once() {
//!     let db = TestSchema::new("postgres://postgres@127.0.0.1/test").await.unwrap();
//!     sqlx::raw_sql("CREATE TABLE ledger (order_id text, cents bigint)")
//!         .execute(db.pool())
//!         .await
//!         .unwrap();
//!     for _ in 0..2 {
//!         let cents = Call::new("payments::charge", "order-7")
//!             .engine(db.engine())
//!             .run_in_transaction(async |_, tx: &mut PgTransaction| {
//!                 charge("order-7", tx).await.map_err(|e| Error::Config(e.to_string()))
//!             })
//!             .await
//!             .unwrap();
//!         assert_eq!(cents, 1250);
//!     }
//!     let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger")
//!         .fetch_one(db.pool())
//!         .await
//!         .unwrap();
//!     assert_eq!(rows, 1);
//! }
//! ```

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use idem_core::store::StoreError;
use idem_core::Engine;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use crate::PgStore;

/// A schema of its own for one test, with a pool whose `search_path` is that schema, a
/// migrated [`PgStore`] in it and an [`Engine`] over the store; the schema is dropped
/// (`DROP SCHEMA ... CASCADE`) when this is dropped.
#[derive(Debug)]
pub struct TestSchema {
    name: String,
    options: PgConnectOptions,
    pool: PgPool,
    store: PgStore,
    engine: Engine,
}

/// Makes each schema's name unique within the process; the process id and the time
/// make it unique across processes.
static NEXT: AtomicU64 = AtomicU64::new(0);

fn failed(what: &str, error: sqlx::Error) -> StoreError {
    StoreError::permanent(format!("the test schema could not be {what}: {error}"))
        .with_source(error)
}

impl TestSchema {
    /// A fresh schema on the server at `url` (`postgres://...`), its store migrated.
    pub async fn new(url: &str) -> Result<TestSchema, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| failed("connected", e))?;
        TestSchema::with_options(options).await
    }

    /// [`new`](TestSchema::new) with the connection options given.
    pub async fn with_options(options: PgConnectOptions) -> Result<TestSchema, StoreError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let name = format!(
            "idem_test_{}_{nanos}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut connection = PgConnection::connect_with(&options)
            .await
            .map_err(|e| failed("connected", e))?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{name}\"")))
            .execute(&mut connection)
            .await
            .map_err(|e| failed("created", e))?;
        let _ = connection.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options.clone().options([("search_path", name.as_str())]))
            .await
            .map_err(|e| failed("connected", e))?;
        let store = PgStore::builder(pool.clone())
            .schema(name.clone())
            .build()
            .map_err(|e| StoreError::permanent(e.to_string()))?;
        store.migrate().await?;
        Ok(TestSchema {
            engine: Engine::new(store.clone()),
            name,
            options,
            pool,
            store,
        })
    }

    /// The engine over the schema's store, with the default settings.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The store, in the schema.
    pub fn store(&self) -> &PgStore {
        &self.store
    }

    /// The pool: its connections' `search_path` is the schema, so the test's own tables
    /// are created and read with unqualified names.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema's name (unquoted).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestSchema {
    /// Drops the schema and everything in it, on a connection of its own (from a
    /// thread of its own: the test's runtime may be the one dropping it).
    fn drop(&mut self) {
        let statement = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        let options = self.options.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime
                .block_on(async {
                    let mut connection = PgConnection::connect_with(&options).await?;
                    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                        .execute(&mut connection)
                        .await
                        .map(|_| ())
                })
                .map_err(|e: sqlx::Error| e.to_string())
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                eprintln!(
                    "idem-postgres: the test schema {} was not dropped: {error}",
                    self.name
                )
            }
            Err(_) => eprintln!(
                "idem-postgres: dropping the test schema {} panicked",
                self.name
            ),
        }
    }
}
