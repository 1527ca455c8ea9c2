//! `run_in_transaction` on PostgreSQL beside a hand-written floor, in one alternated run
//! (p50 and client CPU per call, `idem_core::testkit::floor`): the key held by the
//! transaction (`lock_held(true)`) and under a clock lease (`lock_held(false)`), each beside
//! the floor, which sends the lock-held form's statements (its own `src/sql.rs`,
//! compiled in here) through sqlx on the same pool: `BEGIN`, the hold, the completion,
//! `COMMIT` for a first call; `BEGIN`, the refused hold, `ROLLBACK` for a duplicate. The
//! bodies write nothing. Round trips per call are counted in `tests/lock_held.rs`.
//!
//! ```sh
//! IDEM_BENCH_POSTGRES=postgres://postgres@127.0.0.1:5432/test cargo bench -p idem-postgres --bench transaction
//! ```

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use idem_core::{Call, Engine, Error};
use idem_postgres::{PgStore, PgTransaction};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

#[allow(dead_code)]
#[path = "../src/sql.rs"]
mod sql;

const TTL_MS: i64 = 3_600_000;

/// The lock-held form's statements, by hand.
struct Floor {
    pool: PgPool,
    statements: sql::Statements,
}

impl Floor {
    async fn call(&self, key: &str, value: u64) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let mut tx = self.pool.begin().await.unwrap();
        let row = sqlx::query(sqlx::AssertSqlSafe(self.statements.hold.clone()))
            .bind(key)
            .bind("owner-1")
            .bind(now)
            .bind(0_i64)
            .bind((now + TTL_MS + 999) / 1000)
            .bind(None::<&str>)
            .bind(1_i32)
            .bind("json")
            .bind("1ms")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        if row.get::<bool, _>("applied") {
            // The held completion: conditioned on the fence the row kept while held,
            // writing the attempt's.
            let (fence, held_fence): (i64, i64) = (row.get("fence"), row.get("held_fence"));
            let data = serde_json::to_string(&value).unwrap();
            let recorded = sqlx::query(sqlx::AssertSqlSafe(self.statements.complete_held.clone()))
                .bind(key)
                .bind("owner-1")
                .bind(held_fence)
                .bind("ok")
                .bind(data)
                .bind((now + TTL_MS + 999) / 1000)
                .bind(None::<&[u8]>)
                .bind("json")
                .bind(fence)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            assert!(recorded.get::<bool, _>("applied"), "the completion applies");
            black_box(recorded);
            tx.commit().await.unwrap();
            value
        } else {
            tx.rollback().await.unwrap();
            let data: String = row.get("data");
            black_box(serde_json::from_str(&data).unwrap())
        }
    }
}

fn main() {
    let Ok(url) = std::env::var("IDEM_BENCH_POSTGRES") else {
        eprintln!("IDEM_BENCH_POSTGRES is not set: no PostgreSQL server to measure against");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let schema = format!("idem_bench_tx_{}", std::process::id());
    let (held, leased, floor, pool) = runtime.block_on(async {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap();
        let store = |lock_held| {
            PgStore::builder(pool.clone())
                .schema(schema.clone())
                .lock_held(lock_held)
                .build()
                .unwrap()
        };
        store(true).migrate().await.unwrap();
        let floor = Floor {
            pool: pool.clone(),
            statements: sql::Statements::new(Some(&schema), idem_postgres::DEFAULT_TABLE),
        };
        (
            Engine::new(store(true)),
            Engine::new(store(false)),
            floor,
            pool,
        )
    });
    let idem_call = |engine: &Engine, namespace: &'static str| {
        let engine = engine.clone();
        move |key: u64| {
            let engine = engine.clone();
            async move {
                Call::new(namespace, &key)
                    .engine(&engine)
                    .run_in_transaction(async |_, _: &mut PgTransaction| Ok::<_, Error>(key))
                    .await
                    .unwrap()
            }
        }
    };
    let floor_call = |n: u64| {
        let key = format!("floor:{n}");
        let floor = &floor;
        async move { floor.call(&key, n).await }
    };
    // Every side's duplicate (numbered 1) called once first, as the comparison expects.
    runtime.block_on(async {
        idem_call(&held, "bench::held")(1).await;
        idem_call(&leased, "bench::leased")(1).await;
        floor_call(1).await;
    });
    println!("held by the transaction, beside the floor:");
    idem_core::testkit::floor::compare_first_and_duplicate(
        &runtime,
        21,
        50,
        10,
        idem_call(&held, "bench::held"),
        floor_call,
    );
    println!("under a clock lease (the form before), beside the same floor:");
    idem_core::testkit::floor::compare_first_and_duplicate(
        &runtime,
        21,
        50,
        1_000_000,
        idem_call(&leased, "bench::leased"),
        floor_call,
    );
    let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    runtime.block_on(async {
        sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(&pool)
            .await
            .unwrap();
    });
}
