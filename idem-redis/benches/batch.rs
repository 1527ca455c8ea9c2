//! Batches on Redis, in one run: the store calls (round trips: each of the store's
//! batch calls is one pipeline) one batch of 10 new keys costs through `RedisStore`'s
//! pipelines, through the trait's looping defaults and as 10 single calls; then items
//! per second for batches of 10 and 100 new keys: `Batch`, the per-item loop (one
//! `Call` per key, all at once, multiplexed on the store's connection) and a
//! hand-written floor sending the same scripts (`src/scripts.rs`, compiled in here) in
//! the same two pipelines through the `redis` crate.
//!
//! ```sh
//! IDEM_BENCH_REDIS=redis://127.0.0.1:6379 cargo bench -p idem-redis --bench batch
//! ```

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use idem_core::testkit::floor::batch_round_trips;
use idem_core::Engine;
use idem_redis::RedisStore;
use redis::aio::ConnectionManager;
use redis::Value;

#[allow(dead_code)]
#[path = "../src/scripts.rs"]
mod scripts;

const NS: &str = "bench::batch";
const LEASE_MS: u64 = 30_000;
const TTL_MS: u64 = 3_600_000;

/// A hand-written batch over the same scripts: one pipeline of begins, one of
/// completions.
struct Floor {
    connection: ConnectionManager,
    prefix: String,
    scripts: scripts::Scripts,
}

impl Floor {
    async fn batch(&self, first: u64, items: usize) {
        let mut connection = self.connection.clone();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let keys: Vec<String> = (first..first + items as u64)
            .map(|n| format!("{}{n}", self.prefix))
            .collect();
        let mut begins = redis::pipe();
        for key in &keys {
            begins
                .cmd("EVALSHA")
                .arg(&self.scripts.begin.hash)
                .arg(1)
                .arg(key)
                .arg("owner-1")
                .arg(now)
                .arg(now + LEASE_MS)
                .arg((now + LEASE_MS + TTL_MS).div_ceil(1000))
                .arg("")
                .arg(1)
                .arg("json");
        }
        let taken: Vec<Value> = begins.query_async(&mut connection).await.unwrap();
        let mut completions = redis::pipe();
        for (key, answer) in keys.iter().zip(taken) {
            let Value::Array(answer) = answer else {
                panic!("{answer:?}")
            };
            let [Value::Int(1), Value::Int(fence)] = answer.as_slice() else {
                panic!("new keys only: {answer:?}")
            };
            completions
                .cmd("EVALSHA")
                .arg(&self.scripts.complete.hash)
                .arg(1)
                .arg(key)
                .arg("owner-1")
                .arg(*fence)
                .arg(now)
                .arg((now + TTL_MS).div_ceil(1000))
                .arg("ok")
                .arg(serde_json::to_string(black_box(key)).unwrap())
                .arg("1")
                .arg("json");
        }
        let recorded: Vec<Value> = completions.query_async(&mut connection).await.unwrap();
        assert_eq!(recorded.len(), items);
    }
}

fn batch_bench(c: &mut Criterion) {
    let Ok(url) = std::env::var("IDEM_BENCH_REDIS") else {
        eprintln!("IDEM_BENCH_REDIS is not set: no Redis server to measure against");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let prefix = format!("idem-bench-batch:{}:", std::process::id());
    let (store, floor, mut admin) = runtime.block_on(async {
        let connection = ConnectionManager::new(redis::Client::open(url.as_str()).unwrap())
            .await
            .unwrap();
        let store = RedisStore::builder(connection.clone())
            .prefix(format!("{prefix}idem:"))
            .build()
            .await
            .unwrap();
        let scripts = scripts::Scripts::new();
        let mut admin = connection.clone();
        for script in [&scripts.begin, &scripts.complete] {
            let _: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(&script.source)
                .query_async(&mut admin)
                .await
                .unwrap();
        }
        let floor = Floor {
            connection,
            prefix: format!("{prefix}floor:"),
            scripts,
        };
        (store, floor, admin)
    });
    runtime.block_on(async {
        let [batch, looping, singles] = batch_round_trips(|| store.clone(), NS, 10).await;
        println!(
            "store calls (round trips) per batch of 10 new keys: Redis batch {batch}, looping defaults {looping}, 10 single calls {singles}; floor 2 pipelines"
        );
    });

    let engine = Engine::new(store.clone());
    idem_core::batch_throughput!(c, "redis", &runtime, &engine, floor);
    // This run's keys (hundreds of thousands), a slice at a time: one KEYS would
    // outlast the connection's response timeout.
    runtime.block_on(async {
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(5000)
                .query_async(&mut admin)
                .await
                .unwrap();
            if !keys.is_empty() {
                let _: () = redis::cmd("UNLINK")
                    .arg(keys)
                    .query_async(&mut admin)
                    .await
                    .unwrap();
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    });
}

criterion_group!(benches, batch_bench);
criterion_main!(benches);
