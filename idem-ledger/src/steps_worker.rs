//! `steps-worker`: one process of the steps proof (`tests/steps.rs`).
//!
//! Each key is an order handled by a three-step body, run under a clock lease on
//! PostgreSQL: `charge` (a downstream POST through `idem-http`'s key middleware, to the
//! test's counting server, which deduplicates by `Idempotency-Key`), `ledger` (a
//! database step, `Context::transaction_step`: a ledger row inserted in a transaction of
//! its own, committed with the step's journal entry) and `notify` (a second downstream
//! POST). It prints, one line each:
//! - `AT key point` at each kill point: `before:charge`, `inside:charge` (the POST was
//!   answered, the step's result not yet journaled), `after:charge`, `inside:ledger`
//!   (the row inserted, not committed), `after:ledger`, `inside:notify`, `after:notify`
//!   (every step done, the completion not written); when `STEPS_STOP` names the point,
//!   the body stops there for good, so the test can SIGKILL the process with every key
//!   at that point;
//! - `RUN key step fence` when a step's body starts (a journaled step never prints it
//!   again);
//! - `RESULT key ran|replayed|...` when a delivery ends.
//!
//! With `STEPS_STORE=dynamo` the record and its journal live in DynamoDB (a table
//! `STEPS_TABLE` at `STEPS_DYNAMO`, dynalite in the test), which has no transaction to
//! share with PostgreSQL: the `ledger` step is then a plain step whose insert is made
//! idempotent by the ledger's primary key (`ON CONFLICT DO NOTHING`), as a downstream
//! API is by its key.
//!
//! Settings: `STEPS_URL`, `STEPS_SCHEMA` (the PostgreSQL schema of the store and of a
//! `ledger` table), `STEPS_KEYS` (comma-separated), `STEPS_DOWNSTREAM` (the counting
//! server's base URL), `STEPS_STOP` (a point, or `none`), `STEPS_STORE` (`postgres`, the
//! default, or `dynamo` with `STEPS_DYNAMO` and `STEPS_TABLE`). Exits 0 when every
//! delivery ran or replayed.

use std::sync::Arc;
use std::time::Duration;

use idem_core::{Call, Context, Engine, EngineBuilder, Error};
use idem_dynamo::DynamoStore;
use idem_http::IdempotencyKeyMiddleware;
use idem_postgres::{PgStore, PgTransaction};
use reqwest_middleware::ClientWithMiddleware;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

const NAMESPACE: &str = "steps::order";

fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("steps-worker needs {name}"))
}

struct Worker {
    engine: Engine,
    client: ClientWithMiddleware,
    downstream: String,
    schema: String,
    stop: String,
    /// The journal is in DynamoDB: the ledger step is a plain, keyed insert.
    dynamo: bool,
    pool: PgPool,
}

impl Worker {
    /// A kill point: announced, and the end of this body when it is the one to stop at.
    async fn at(&self, key: &str, point: &str) {
        println!("AT {key} {point}");
        if self.stop == point {
            std::future::pending::<()>().await;
        }
    }

    /// A downstream POST from inside the step `step` (its key set by the middleware from
    /// the step's token); the counting server's answer is the step's value.
    async fn post(&self, key: &str, step: &str) -> Result<String, Error> {
        let fence = Context::current().map_or(0, |ctx| ctx.fence());
        println!("RUN {key} {step} {fence}");
        let response = self
            .client
            .post(format!("{}/{step}", self.downstream))
            .body(key.to_owned())
            .send()
            .await
            .map_err(|e| Error::Config(format!("the downstream {step} failed: {e}")))?;
        let answer = response
            .text()
            .await
            .map_err(|e| Error::Config(format!("the downstream {step} answer: {e}")))?;
        self.at(key, &format!("inside:{step}")).await;
        Ok(answer)
    }

    async fn order(&self, ctx: Context, key: &str) -> Result<(String, i64, String), Error> {
        self.at(key, "before:charge").await;
        let charge = ctx.step("charge", self.post(key, "charge")).await?;
        self.at(key, "after:charge").await;
        let insert = format!(
            "INSERT INTO \"{}\".ledger (key, fence, pid) VALUES ($1, $2, $3) RETURNING fence",
            self.schema
        );
        let row: i64 = if self.dynamo {
            ctx.step("ledger", self.keyed_insert(key)).await?
        } else {
            ctx.transaction_step("ledger", async |tx: &mut PgTransaction| {
                println!("RUN {key} ledger {}", ctx.fence());
                let (fence,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(insert))
                    .bind(key)
                    .bind(ctx.fence() as i64)
                    .bind(std::process::id() as i32)
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(|e| Error::Config(format!("the ledger insert failed: {e}")))?;
                self.at(key, "inside:ledger").await;
                Ok::<_, Error>(fence)
            })
            .await?
        };
        self.at(key, "after:ledger").await;
        let notify = ctx.step("notify", self.post(key, "notify")).await?;
        self.at(key, "after:notify").await;
        Ok((charge, row, notify))
    }

    /// The ledger row as a plain step: an insert that a re-run cannot repeat (the
    /// ledger's primary key), committed at once; the row's fence is the step's value.
    async fn keyed_insert(&self, key: &str) -> Result<i64, Error> {
        let fence = Context::current().map_or(0, |ctx| ctx.fence());
        println!("RUN {key} ledger {fence}");
        let schema = &self.schema;
        let insert = format!(
            "INSERT INTO \"{schema}\".ledger (key, fence, pid) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO NOTHING"
        );
        let failed = |e: sqlx::Error| Error::Config(format!("the ledger insert failed: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(insert))
            .bind(key)
            .bind(fence as i64)
            .bind(std::process::id() as i32)
            .execute(&self.pool)
            .await
            .map_err(failed)?;
        let select = format!("SELECT fence FROM \"{schema}\".ledger WHERE key = $1");
        let (row,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(select))
            .bind(key)
            .fetch_one(&self.pool)
            .await
            .map_err(failed)?;
        self.at(key, "inside:ledger").await;
        Ok(row)
    }

    async fn deliver(&self, key: &str) -> &'static str {
        let mut ran = false;
        let result = Call::new(NAMESPACE, key)
            .engine(&self.engine)
            .wait(Duration::from_secs(20))
            .run(|ctx| {
                ran = true;
                async move { self.order(ctx, key).await }
            })
            .await;
        match result {
            Ok(_) if ran => "ran",
            Ok(_) => "replayed",
            Err(Error::InProgress { .. }) => "in_progress",
            Err(error) => {
                eprintln!("steps-worker: {key}: {error}");
                "error"
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let schema = setting("STEPS_SCHEMA");
    let keys: Vec<String> = setting("STEPS_KEYS")
        .split(',')
        .map(str::to_owned)
        .collect();
    let pool = PgPoolOptions::new()
        .max_connections(keys.len() as u32 + 4)
        .connect(&setting("STEPS_URL"))
        .await
        .expect("the PostgreSQL server answers");
    let dynamo = std::env::var("STEPS_STORE").as_deref() == Ok("dynamo");
    let store: Arc<dyn idem_core::Store> = if dynamo {
        let client = idem_dynamo::local_client(&setting("STEPS_DYNAMO"));
        let store = DynamoStore::builder(client, setting("STEPS_TABLE"))
            .check_ttl(false)
            .build()
            .await
            .expect("the DynamoDB table is there");
        Arc::new(store)
    } else {
        let store = PgStore::builder(pool.clone())
            .schema(schema.clone())
            .build()
            .unwrap();
        Arc::new(store)
    };
    let engine = EngineBuilder::from_arc(store)
        .lease(Duration::from_millis(1000))
        .store_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(IdempotencyKeyMiddleware::new())
        .build();
    let worker = Arc::new(Worker {
        engine,
        client,
        downstream: setting("STEPS_DOWNSTREAM"),
        schema,
        stop: setting("STEPS_STOP"),
        dynamo,
        pool,
    });
    let deliveries: Vec<_> = keys
        .into_iter()
        .map(|key| {
            let worker = worker.clone();
            tokio::spawn(async move {
                let outcome = worker.deliver(&key).await;
                println!("RESULT {key} {outcome}");
                outcome
            })
        })
        .collect();
    let mut healthy = true;
    for delivery in deliveries {
        healthy &= matches!(delivery.await.expect("no panic"), "ran" | "replayed");
    }
    std::process::exit(if healthy { 0 } else { 2 });
}
