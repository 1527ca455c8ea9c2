//! A step on PostgreSQL beside a hand-written floor, in one alternated run: the time of
//! one `ctx.step(...).await` inside a guarded body (the step's future is a ready value,
//! so it is idem's own cost: the journal write and what surrounds it) beside the floor's
//! one conditional write of the step's result (the store's own journal statement, from
//! its `src/sql.rs` compiled in here, bound by hand on the same pool). Each side runs
//! calls of four steps, alternated in rounds; every step is timed on its own and the
//! p50s compared. Statements per step are counted from sqlx's events: a body of four
//! steps beside a body of none.
//!
//! ```sh
//! IDEM_BENCH_POSTGRES=postgres://postgres@127.0.0.1:5432/test cargo bench -p idem-postgres --bench steps
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use idem_core::{Call, Engine, Error};
use idem_postgres::PgStore;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

mod common;

#[allow(dead_code)]
#[path = "../src/sql.rs"]
mod sql;

use common::CountStatements;

const STEPS: usize = 4;
const TTL_MS: i64 = 3_600_000;
const LEASE_MS: i64 = 30_000;

/// The floor: begin, one journal write per step, complete, as the store's statements.
struct Floor {
    pool: PgPool,
    statements: sql::Statements,
}

impl Floor {
    async fn call(&self, key: &str, steps: &Mutex<Vec<Duration>>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let lease_until = now + LEASE_MS;
        let row = sqlx::query(sqlx::AssertSqlSafe(self.statements.begin.to_string()))
            .bind(key)
            .bind("owner-1")
            .bind(now)
            .bind(lease_until)
            .bind((lease_until + TTL_MS + 999) / 1000)
            .bind(None::<&str>)
            .bind(1_i32)
            .bind("json")
            .fetch_one(&self.pool)
            .await
            .unwrap();
        let fence: i64 = row.get("fence");
        for step in 0..STEPS {
            let started = Instant::now();
            let data = serde_json::to_vec(&(step as u64)).unwrap();
            let name = format!("step-{step}");
            let written = sqlx::query(sqlx::AssertSqlSafe(self.statements.journal.to_string()))
                .bind(key)
                .bind("owner-1")
                .bind(fence)
                .bind(name.as_str())
                .bind(Some("ok"))
                .bind("json")
                .bind(Some(data.as_slice()))
                .fetch_one(&self.pool)
                .await
                .unwrap();
            assert!(written.get::<bool, _>("applied"));
            steps.lock().unwrap().push(started.elapsed());
        }
        sqlx::query(sqlx::AssertSqlSafe(self.statements.complete.to_string()))
            .bind(key)
            .bind("owner-1")
            .bind(fence)
            .bind("ok")
            .bind("0")
            .bind((now + TTL_MS + 999) / 1000)
            .bind(None::<&[u8]>)
            .bind("json")
            .fetch_one(&self.pool)
            .await
            .unwrap();
    }
}

/// A guarded call of `steps` steps, each timed into `timed`.
async fn idem_call(engine: &Engine, key: u64, steps: usize, timed: &Mutex<Vec<Duration>>) {
    Call::new("bench::steps", &key)
        .engine(engine)
        .run(|ctx| async move {
            for step in 0..steps {
                let started = Instant::now();
                let value: u64 = ctx
                    .step(format!("step-{step}"), async {
                        Ok::<_, Error>(step as u64)
                    })
                    .await?;
                timed.lock().unwrap().push(started.elapsed());
                std::hint::black_box(value);
            }
            Ok::<_, Error>(0u64)
        })
        .await
        .unwrap();
}

fn p50(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let Ok(url) = std::env::var("IDEM_BENCH_POSTGRES") else {
        eprintln!("IDEM_BENCH_POSTGRES is not set: no PostgreSQL server to measure against");
        return;
    };
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let schema = format!("idem_bench_steps_{}", std::process::id());
    let (engine, floor, pool) = runtime.block_on(async {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap();
        let store = PgStore::builder(pool.clone())
            .schema(schema.clone())
            .build()
            .unwrap();
        store.migrate().await.unwrap();
        let floor = Floor {
            pool: pool.clone(),
            statements: sql::Statements::new(Some(&schema), idem_postgres::DEFAULT_TABLE),
        };
        (Engine::new(store), floor, pool)
    });
    let sink = Mutex::new(Vec::new());

    // Statements per step: a body of four steps beside a body of none (after a warm-up
    // call each, so every statement is prepared on the pool's connections).
    let counted = Arc::new(AtomicU64::new(0));
    tracing::subscriber::with_default(CountStatements(counted.clone()), || {
        runtime.block_on(async {
            idem_call(&engine, u64::MAX - 3, STEPS, &sink).await;
            idem_call(&engine, u64::MAX - 2, 0, &sink).await;
            let before = counted.load(Ordering::SeqCst);
            idem_call(&engine, u64::MAX - 1, 0, &sink).await;
            let none = counted.load(Ordering::SeqCst) - before;
            let before = counted.load(Ordering::SeqCst);
            idem_call(&engine, u64::MAX, STEPS, &sink).await;
            let four = counted.load(Ordering::SeqCst) - before;
            println!(
                "statements (round trips): a body without steps {none}, with {STEPS} steps {four}: {} per step",
                (four - none) as f64 / STEPS as f64
            );
        })
    });

    let rounds = 21;
    let calls = 50;
    let (idem_steps, floor_steps) = (Mutex::new(Vec::new()), Mutex::new(Vec::new()));
    let mut next = 0u64;
    for round in 0..rounds {
        for idem_side in [round % 2 == 0, round % 2 == 1] {
            runtime.block_on(async {
                for _ in 0..calls {
                    next += 1;
                    if idem_side {
                        idem_call(&engine, next, STEPS, &idem_steps).await;
                    } else {
                        floor.call(&format!("floor:{next}"), &floor_steps).await;
                    }
                }
            });
        }
    }
    let (mut idem_steps, mut floor_steps) = (
        idem_steps.into_inner().unwrap(),
        floor_steps.into_inner().unwrap(),
    );
    let (idem_p50, floor_p50) = (p50(&mut idem_steps), p50(&mut floor_steps));
    println!(
        "a step: p50 idem {idem_p50:?}, floor {floor_p50:?} ({:.2}x); {} steps each side, {rounds} alternated rounds of {calls} calls of {STEPS} steps",
        idem_p50.as_secs_f64() / floor_p50.as_secs_f64(),
        idem_steps.len(),
    );
    runtime.block_on(async {
        let statement = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&pool)
            .await
            .unwrap();
    });
}
