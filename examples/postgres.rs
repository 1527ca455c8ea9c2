//! A payments ledger on PostgreSQL, fed duplicate deliveries by several workers: with
//! `run` (the ledger row written on its own) and with `run_in_transaction` (the row and
//! idem's record committed together).
//!
//! ```sh
//! cargo run -p idem-examples --example postgres -- --url postgres://postgres@127.0.0.1:5432/test
//! ```
//!
//! Every payment is delivered three times, by four workers at once, and one attempt in
//! eight fails *after* writing its ledger row (the receipt mail bounced, say), so its
//! delivery is retried. With `run`, the failed attempts' rows stay and the retries add
//! their own; with `run_in_transaction` the failed attempt's row is rolled back with
//! it, and the ledger holds exactly one row per payment. Works in a schema of its own,
//! dropped at the end.

use std::sync::Arc;
use std::time::Duration;

use idem_core::{Call, Engine, Error};
use idem_postgres::{PgStore, PgTransaction};
use sqlx::PgPool;

const PAYMENTS: usize = 200;
const DELIVERIES: usize = 3;
const WORKERS: usize = 4;

/// The part of the body after the ledger row: fails for one attempt in eight.
fn send_receipt() -> Result<(), Error> {
    if fastrand::u8(0..8) == 0 {
        return Err(Error::Config("the receipt mail bounced".into()));
    }
    Ok(())
}

/// Delivers every payment `DELIVERIES` times through `WORKERS` workers, retrying a
/// delivery until it has a value, and answers the ledger's row count.
async fn deliver(pool: &PgPool, engine: &Engine, schema: &str, transactional: bool) -> i64 {
    let mut queue: Vec<usize> = (0..PAYMENTS).flat_map(|p| [p; DELIVERIES]).collect();
    fastrand::shuffle(&mut queue);
    let queue = Arc::new(std::sync::Mutex::new(queue));
    let namespace = if transactional {
        "ledger::in_transaction"
    } else {
        "ledger::plain"
    };
    let insert = format!("INSERT INTO \"{schema}\".ledger (payment, mode) VALUES ($1, $2)");
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (queue, engine, pool, insert) =
            (queue.clone(), engine.clone(), pool.clone(), insert.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let Some(payment) = queue.lock().unwrap().pop() else {
                    break;
                };
                let key = format!("payment-{payment}");
                let write = || {
                    sqlx::query(sqlx::AssertSqlSafe(insert.clone()))
                        .bind(payment as i64)
                        .bind(namespace)
                };
                loop {
                    let call = Call::new(namespace, &key)
                        .engine(&engine)
                        .wait(Duration::from_secs(5));
                    let result = if transactional {
                        call.run_in_transaction(async |_, tx: &mut PgTransaction| {
                            write()
                                .execute(&mut **tx)
                                .await
                                .map_err(|e| Error::Config(e.to_string()))?;
                            send_receipt()
                        })
                        .await
                    } else {
                        call.run(|_| async {
                            write()
                                .execute(&pool)
                                .await
                                .map_err(|e| Error::Config(e.to_string()))?;
                            send_receipt()
                        })
                        .await
                    };
                    // A failed attempt released the key: the delivery is retried.
                    if result.is_ok() {
                        break;
                    }
                }
            }
        }));
    }
    for worker in workers {
        worker.await.expect("a worker does not panic");
    }
    let count = format!("SELECT count(*) FROM \"{schema}\".ledger WHERE mode = $1");
    sqlx::query_scalar(sqlx::AssertSqlSafe(count))
        .bind(namespace)
        .fetch_one(pool)
        .await
        .expect("the ledger is readable")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut url = "postgres://postgres@127.0.0.1:5432/test".to_owned();
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        match word.as_str() {
            "--url" => url = words.next().ok_or("--url needs a PostgreSQL URL")?,
            other => return Err(format!("unknown argument `{other}`; use --url URL").into()),
        }
    }
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .connect(&url)
        .await?;
    let schema = format!("idem_example_{}", std::process::id());
    let store = PgStore::builder(pool.clone())
        .schema(schema.clone())
        .build()?;
    store.migrate().await?;
    let ledger =
        format!("CREATE TABLE \"{schema}\".ledger (payment bigint NOT NULL, mode text NOT NULL)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(ledger))
        .execute(&pool)
        .await?;
    let engine = Engine::new(store);

    println!(
        "{PAYMENTS} payments, each delivered {DELIVERIES} times by {WORKERS} workers; \
         one attempt in 8 fails after writing its ledger row and is retried"
    );
    let plain = deliver(&pool, &engine, &schema, false).await;
    println!(
        "run:                ledger rows {plain:>4} ({} too many: the failed attempts' rows stayed)",
        plain - PAYMENTS as i64
    );
    let transactional = deliver(&pool, &engine, &schema, true).await;
    println!(
        "run_in_transaction: ledger rows {transactional:>4} (exactly one per payment: a failed attempt's row rolled back with it)"
    );
    let drop_schema = format!("DROP SCHEMA \"{schema}\" CASCADE");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop_schema))
        .execute(&pool)
        .await?;
    if transactional != PAYMENTS as i64 {
        return Err(format!("expected {PAYMENTS} ledger rows, found {transactional}").into());
    }
    Ok(())
}
