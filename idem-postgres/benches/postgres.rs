//! idem on PostgreSQL beside a hand-written floor, in one run: the floor sends the same
//! two statements as idem's store (its own `src/sql.rs`, compiled in here), with the
//! same arguments, through sqlx on the same pool: no engine, no store mapping.
//! Statements per call are counted from sqlx's own per-statement events; after
//! criterion's figures, idem and the floor are run alternated in rounds and compared on
//! p50 and client CPU per call (`idem_core::testkit::floor`).
//!
//! ```sh
//! IDEM_BENCH_POSTGRES=postgres://postgres@127.0.0.1:5432/test cargo bench -p idem-postgres --bench postgres
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use idem_core::{Call, Engine, Error};
use idem_postgres::PgStore;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

mod common;

#[allow(dead_code)]
#[path = "../src/sql.rs"]
mod sql;

use common::CountStatements;

const LEASE_MS: u64 = 30_000;
const TTL_MS: u64 = 3_600_000;

/// What a hand-written dedup over the same statements does per call: take the key; run
/// and record, or decode the recorded value.
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
        let lease_until = now + LEASE_MS as i64;
        let row = sqlx::query(sqlx::AssertSqlSafe(self.statements.begin.clone()))
            .bind(key)
            .bind("owner-1")
            .bind(now)
            .bind(lease_until)
            .bind((lease_until + TTL_MS as i64 + 999) / 1000)
            .bind(None::<&str>)
            .bind(1_i32)
            .bind("json")
            .fetch_one(&self.pool)
            .await
            .unwrap();
        if row.get::<bool, _>("applied") {
            let fence: i64 = row.get("fence");
            let data = serde_json::to_string(&value).unwrap();
            let recorded = sqlx::query(sqlx::AssertSqlSafe(self.statements.complete.clone()))
                .bind(key)
                .bind("owner-1")
                .bind(fence)
                .bind("ok")
                .bind(data)
                .bind((now + TTL_MS as i64 + 999) / 1000)
                .bind(None::<&[u8]>)
                .bind("json")
                .fetch_one(&self.pool)
                .await
                .unwrap();
            black_box(recorded);
            value
        } else {
            // A duplicate: the recorded value, decoded from the row.
            let data: String = row.get("data");
            black_box(serde_json::from_str(&data).unwrap())
        }
    }
}

fn postgres_bench(c: &mut Criterion) {
    let Ok(url) = std::env::var("IDEM_BENCH_POSTGRES") else {
        eprintln!("IDEM_BENCH_POSTGRES is not set: no PostgreSQL server to measure against");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let schema = format!("idem_bench_{}", std::process::id());
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
    let idem_call = |key: u64| {
        let engine = engine.clone();
        async move {
            Call::new("bench::postgres", &key)
                .engine(&engine)
                .run(|_| async move { Ok::<_, Error>(key) })
                .await
                .unwrap()
        }
    };

    let floor_call = |n: u64| {
        let key = format!("floor:{n}");
        let floor = &floor;
        async move { floor.call(&key, n).await }
    };
    // Under callgrind: only `IDEM_BENCH_CALLS` calls of one side, no criterion.
    if idem_core::testkit::floor::callgrind_side(&runtime, 1_000_000, idem_call, floor_call) {
        runtime.block_on(drop_schema(&pool, &schema));
        return;
    }

    // Statements (round trips) per call, after one call each so every statement is
    // prepared on the pool's connection.
    let counted = Arc::new(AtomicU64::new(0));
    let counter = CountStatements(counted.clone());
    tracing::subscriber::with_default(counter, || {
        runtime.block_on(async {
            idem_call(u64::MAX - 1).await;
            idem_call(u64::MAX - 1).await;
            floor.call("floor:warm", 1).await;
            floor.call("floor:warm", 1).await;
            let count = |before: u64| counted.load(Ordering::SeqCst) - before;
            let before = counted.load(Ordering::SeqCst);
            idem_call(u64::MAX).await;
            let first = count(before);
            let before = counted.load(Ordering::SeqCst);
            idem_call(u64::MAX).await;
            let duplicate = count(before);
            let before = counted.load(Ordering::SeqCst);
            floor.call("floor:counted", 1).await;
            let floor_first = count(before);
            let before = counted.load(Ordering::SeqCst);
            floor.call("floor:counted", 1).await;
            let floor_duplicate = count(before);
            println!(
                "statements (round trips): idem first call {first}, duplicate {duplicate}; floor first call {floor_first}, duplicate {floor_duplicate}"
            );
        })
    });

    let mut group = c.benchmark_group("postgres");
    let mut next = 0u64;
    group.bench_function("first_call/idem", |b| {
        b.to_async(&runtime).iter(|| {
            next += 1;
            idem_call(next)
        })
    });
    group.bench_function("first_call/floor", |b| {
        b.to_async(&runtime).iter(|| {
            next += 1;
            floor_call(next)
        })
    });
    group.bench_function("duplicate/idem", |b| {
        b.to_async(&runtime).iter(|| idem_call(1))
    });
    group.bench_function("duplicate/floor", |b| {
        b.to_async(&runtime).iter(|| floor_call(1))
    });
    group.finish();

    idem_core::testkit::floor::compare_first_and_duplicate(
        &runtime, 101, 100, next, idem_call, floor_call,
    );
    runtime.block_on(drop_schema(&pool, &schema));
}

async fn drop_schema(pool: &PgPool, schema: &str) {
    let statement = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(pool)
        .await
        .unwrap();
}

criterion_group!(benches, postgres_bench);
criterion_main!(benches);
