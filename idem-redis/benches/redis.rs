//! idem on Redis beside a hand-written floor, in one run: the floor sends the same two
//! scripts as idem's store (its own `src/scripts.rs`, compiled in here), with the same
//! arguments, straight through the `redis` crate: no engine, no store mapping. Round
//! trips per call are counted on the server (`INFO commandstats`); after criterion's
//! figures, idem and the floor are run alternated in rounds and compared on p50 and on
//! client CPU per call (the thread's on-CPU time from `/proc/thread-self/schedstat`:
//! the runtime is single-threaded, so this is all the client's work, the connection's
//! I/O included).
//!
//! Last, the durability option (`wait_for_replicas`, a `WAIT` after each completion)
//! beside the plain store, alternated the same way.
//!
//! ```sh
//! IDEM_BENCH_REDIS=redis://127.0.0.1:6379 cargo bench -p idem-redis --bench redis
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use idem_core::{Call, Engine, EngineBuilder, Error};
use idem_redis::RedisStore;
use redis::aio::ConnectionManager;

#[allow(dead_code)]
#[path = "../src/scripts.rs"]
mod scripts;

const LEASE_MS: u64 = 30_000;
const TTL_MS: u64 = 3_600_000;

struct Floor {
    connection: ConnectionManager,
    /// idem's begin and complete scripts (their text from `src/scripts.rs`).
    begin: redis::Script,
    complete: redis::Script,
}

impl Floor {
    /// What a hand-written dedup over the same scripts does per call: take the key; run
    /// and record, or decode the recorded value.
    async fn call(&self, key: &str, value: u64) -> u64 {
        let mut connection = self.connection.clone();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let lease_until = now + LEASE_MS;
        let taken: redis::Value = self
            .begin
            .key(key)
            .arg("owner-1")
            .arg(now)
            .arg(lease_until)
            .arg((lease_until + TTL_MS).div_ceil(1000))
            .arg("")
            .arg(1)
            .arg("json")
            .invoke_async(&mut connection)
            .await
            .unwrap();
        let redis::Value::Array(answer) = taken else {
            panic!("{taken:?}")
        };
        match answer.as_slice() {
            [redis::Value::Int(1), redis::Value::Int(fence)] => {
                let data = serde_json::to_string(&value).unwrap();
                let recorded: redis::Value = self
                    .complete
                    .key(key)
                    .arg("owner-1")
                    .arg(*fence)
                    .arg(now)
                    .arg((now + TTL_MS).div_ceil(1000))
                    .arg("ok")
                    .arg(data)
                    .arg("1")
                    .arg("json")
                    .invoke_async(&mut connection)
                    .await
                    .unwrap();
                black_box(recorded);
                value
            }
            [redis::Value::Int(0), redis::Value::Array(fields)] => {
                // A duplicate: the recorded value, decoded from the hash.
                let data = fields
                    .chunks(2)
                    .find(|pair| pair[0] == redis::Value::BulkString(b"data".to_vec()))
                    .and_then(|pair| match &pair[1] {
                        redis::Value::BulkString(bytes) => serde_json::from_slice(bytes).ok(),
                        _ => None,
                    })
                    .expect("a recorded value");
                black_box(data)
            }
            other => panic!("{other:?}"),
        }
    }
}

async fn commands(connection: &mut ConnectionManager) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|rest| rest.split(',').next())
        .filter_map(|n| n.parse::<u64>().ok())
        .sum()
}

fn redis_bench(c: &mut Criterion) {
    let Ok(url) = std::env::var("IDEM_BENCH_REDIS") else {
        eprintln!("IDEM_BENCH_REDIS is not set: no Redis server to measure against");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let prefix = format!("idem-bench:{}:", std::process::id());
    let (engine, waiting, floor, mut admin) = runtime.block_on(async {
        let connection = ConnectionManager::new(redis::Client::open(url.as_str()).unwrap())
            .await
            .unwrap();
        let store = RedisStore::builder(connection.clone())
            .prefix(format!("{prefix}idem:"))
            .build()
            .await
            .unwrap();
        let engine: Engine = EngineBuilder::from_arc(Arc::new(store)).build().unwrap();
        // The durability option: WAIT after each completion (0 replicas: it answers at
        // once, so this is its round trip's cost, not a replica's lag).
        let waiting_store = RedisStore::builder(connection.clone())
            .prefix(format!("{prefix}wait:"))
            .wait_for_replicas(0, std::time::Duration::from_millis(100))
            .build()
            .await
            .unwrap();
        let waiting: Engine = EngineBuilder::from_arc(Arc::new(waiting_store))
            .build()
            .unwrap();
        let scripts = scripts::Scripts::new();
        let floor = Floor {
            connection: connection.clone(),
            begin: redis::Script::new(&scripts.begin.source),
            complete: redis::Script::new(&scripts.complete.source),
        };
        (engine, waiting, floor, connection)
    });
    let idem_call = |key: u64| {
        let engine = engine.clone();
        async move {
            Call::new("bench::redis", &key)
                .engine(&engine)
                .run(|_| async move { Ok::<_, Error>(key) })
                .await
                .unwrap()
        }
    };

    let floor_call = |n: u64| {
        let key = format!("{prefix}floor:{n}");
        let floor = &floor;
        async move { floor.call(&key, n).await }
    };
    // Under callgrind: only `IDEM_BENCH_CALLS` calls of one side, no criterion.
    // scripts/callgrind-floor runs this twice per side and prints instructions per call.
    if idem_core::testkit::floor::callgrind_side(&runtime, 1_000_000, idem_call, floor_call) {
        runtime.block_on(clean(&mut admin, &prefix));
        return;
    }

    // Round trips, counted on the server (after one call each, so both have their
    // scripts loaded).
    runtime.block_on(async {
        idem_call(u64::MAX - 1).await;
        floor.call(&format!("{prefix}floor:warm"), 1).await;
        let before = commands(&mut admin).await;
        idem_call(u64::MAX).await;
        let first = commands(&mut admin).await - before;
        idem_call(u64::MAX).await;
        let duplicate = commands(&mut admin).await - before - first;
        let key = format!("{prefix}floor:counted");
        let before = commands(&mut admin).await;
        floor.call(&key, 1).await;
        let floor_first = commands(&mut admin).await - before;
        floor.call(&key, 1).await;
        let floor_duplicate = commands(&mut admin).await - before - floor_first;
        println!(
            "round trips: idem first call {first}, duplicate {duplicate}; floor first call {floor_first}, duplicate {floor_duplicate}"
        );
    });

    let mut group = c.benchmark_group("redis");
    let mut next = 0u64;
    // Alternated: each pair of functions measured back to back.
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

    // Alternated rounds: p50 and client CPU per call, idem beside the floor.
    idem_core::testkit::floor::compare_first_and_duplicate(
        &runtime, 201, 100, next, idem_call, floor_call,
    );

    // The durability option's cost per first call: idem with `wait_for_replicas` (WAIT
    // 0 after each completion) beside idem on the plain store, alternated.
    let waiting_call = |key: u64| {
        let waiting = waiting.clone();
        async move {
            Call::new("bench::redis", &key)
                .engine(&waiting)
                .run(|_| async move { Ok::<_, Error>(key) })
                .await
                .unwrap()
        }
    };
    idem_core::testkit::floor::compare(
        &runtime,
        "first call with WAIT 0 (floor: idem on the plain store)",
        201,
        100,
        next + 1_000_000,
        waiting_call,
        idem_call,
    );

    runtime.block_on(clean(&mut admin, &prefix));
}

/// Deletes this run's keys.
async fn clean(admin: &mut ConnectionManager, prefix: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(admin)
        .await
        .unwrap();
    for chunk in keys.chunks(1000) {
        let _: () = redis::cmd("DEL")
            .arg(chunk)
            .query_async(admin)
            .await
            .unwrap();
    }
}

criterion_group!(benches, redis_bench);
criterion_main!(benches);
