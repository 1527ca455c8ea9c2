//! Batches on PostgreSQL, in one run: the statements (round trips) one batch of 10 new
//! keys costs through `PgStore`'s batch statements, through the trait's looping
//! defaults and as 10 single calls, counted from sqlx's per-statement events; then
//! items per second for batches of 10 and 100 new keys: `Batch`, the per-item loop (one
//! `Call` per key, all at once, on a pool of 10 connections) and a hand-written floor
//! sending the same two batch statements (`src/sql.rs`, compiled in here) through sqlx.
//!
//! ```sh
//! IDEM_BENCH_POSTGRES=postgres://postgres@127.0.0.1:5432/test cargo bench -p idem-postgres --bench batch
//! ```

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use idem_core::testkit::floor::{batch_of, batch_round_trips, calls_of};
use idem_core::testkit::LoopingStore;
use idem_core::Engine;
use idem_postgres::PgStore;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

mod common;

#[allow(dead_code)]
#[path = "../src/sql.rs"]
mod sql;

use common::CountStatements;

const NS: &str = "bench::batch";
const LEASE_MS: i64 = 30_000;
const TTL_MS: i64 = 3_600_000;

/// A hand-written batch over the same two statements: every key taken by one, every
/// value recorded by the other.
struct Floor {
    pool: PgPool,
    statements: sql::Statements,
}

impl Floor {
    async fn batch(&self, first: u64, items: usize) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let ids: Vec<String> = (first..first + items as u64)
            .map(|n| format!("floor:{n}"))
            .collect();
        let expires = (now + LEASE_MS + TTL_MS + 999) / 1000;
        let rows = sqlx::query(sqlx::AssertSqlSafe(self.statements.begin_batch.clone()))
            .bind(&ids)
            .bind(vec!["owner-1"; items])
            .bind(vec![now; items])
            .bind(vec![now + LEASE_MS; items])
            .bind(vec![expires; items])
            .bind(vec![None::<&str>; items])
            .bind(1_i32)
            .bind("json")
            .fetch_all(&self.pool)
            .await
            .unwrap();
        let mut fences = Vec::with_capacity(items);
        let mut taken = Vec::with_capacity(items);
        for row in &rows {
            assert!(row.get::<bool, _>("applied"), "new keys only");
            taken.push(row.get::<String, _>("id"));
            fences.push(row.get::<i64, _>("fence"));
        }
        let data: Vec<String> = taken
            .iter()
            .map(|id| serde_json::to_string(black_box(id)).unwrap())
            .collect();
        let recorded = sqlx::query(sqlx::AssertSqlSafe(self.statements.complete_batch.clone()))
            .bind(&taken)
            .bind(vec!["owner-1"; items])
            .bind(&fences)
            .bind(vec!["ok"; items])
            .bind(&data)
            .bind(vec![(now + TTL_MS + 999) / 1000; items])
            .bind(vec![None::<&[u8]>; items])
            .bind(vec!["json"; items])
            .fetch_all(&self.pool)
            .await
            .unwrap();
        assert_eq!(recorded.len(), items);
    }
}

fn batch_bench(c: &mut Criterion) {
    let Ok(url) = std::env::var("IDEM_BENCH_POSTGRES") else {
        eprintln!("IDEM_BENCH_POSTGRES is not set: no PostgreSQL server to measure against");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let schema = format!("idem_bench_batch_{}", std::process::id());
    let (store, floor, pool) = runtime.block_on(async {
        let pool = PgPoolOptions::new()
            .max_connections(10)
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
        (store, floor, pool)
    });

    // Statements per batch of 10, after one batch each way so every statement is
    // prepared on the connections.
    let counted = Arc::new(AtomicU64::new(0));
    tracing::subscriber::with_default(CountStatements(counted.clone()), || {
        runtime.block_on(async {
            let statements = |before: u64| counted.load(Ordering::SeqCst) - before;
            let engine = Engine::new(store.clone());
            let looping = Engine::new(LoopingStore(store.clone()));
            batch_of(&engine, NS, 1 << 60, 10).await;
            batch_of(&looping, NS, (1 << 60) + 10, 10).await;
            calls_of(&engine, NS, (1 << 60) + 20, 10).await;
            floor.batch(1 << 60, 10).await;
            let before = counted.load(Ordering::SeqCst);
            batch_of(&engine, NS, (1 << 60) + 100, 10).await;
            let batch = statements(before);
            let before = counted.load(Ordering::SeqCst);
            batch_of(&looping, NS, (1 << 60) + 110, 10).await;
            let looped = statements(before);
            let before = counted.load(Ordering::SeqCst);
            calls_of(&engine, NS, (1 << 60) + 120, 10).await;
            let singles = statements(before);
            let before = counted.load(Ordering::SeqCst);
            floor.batch((1 << 60) + 100, 10).await;
            let floored = statements(before);
            let [calls, looping_calls, single_calls] =
                batch_round_trips(|| store.clone(), NS, 10).await;
            println!(
                "statements per batch of 10 new keys: PostgreSQL batch {batch}, looping defaults {looped}, 10 single calls {singles}, floor {floored} (store calls {calls}, {looping_calls}, {single_calls})"
            );
        })
    });

    let engine = Engine::new(store.clone());
    idem_core::batch_throughput!(c, "postgres", &runtime, &engine, floor);
    runtime.block_on(async {
        let statement = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&pool)
            .await
            .unwrap();
    });
}

criterion_group!(benches, batch_bench);
criterion_main!(benches);
