//! idem on Redis beside a hand-written floor, in one run: the floor sends the same two
//! conditional scripts (take the key, record the value) with the `redis` crate and no
//! engine. Round trips per call are counted on the server (`INFO commandstats`).
//!
//! ```sh
//! IDEM_BENCH_REDIS=redis://127.0.0.1:6379 cargo bench -p idem-redis --bench redis
//! ```

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use idem_core::{Call, Engine, EngineBuilder, Error};
use idem_redis::RedisStore;
use redis::aio::ConnectionManager;

/// The floor's begin: the key taken iff absent (or free), in one script.
const FLOOR_BEGIN: &str = r#"
local state = redis.call('HGET', KEYS[1], 'state')
if state then return {0, redis.call('HGETALL', KEYS[1])} end
local fence = redis.call('HINCRBY', KEYS[1], 'fence', 1)
redis.call('HSET', KEYS[1], 'state', 'INPROGRESS', 'owner', ARGV[1], 'lease_until_ms', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, fence}
"#;

/// The floor's completion: recorded iff the owner still holds the key.
const FLOOR_COMPLETE: &str = r#"
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'COMPLETED', 'data', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#;

struct Floor {
    connection: ConnectionManager,
    begin: redis::Script,
    complete: redis::Script,
}

impl Floor {
    /// What a hand-written dedup does per call: take the key, run, record.
    async fn call(&self, key: &str, value: u64) -> u64 {
        let mut connection = self.connection.clone();
        let taken: redis::Value = self
            .begin
            .key(key)
            .arg("owner-1")
            .arg(1_704_067_230_000u64)
            .arg(3_630_000u64)
            .invoke_async(&mut connection)
            .await
            .unwrap();
        let redis::Value::Array(answer) = taken else {
            panic!("{taken:?}")
        };
        if answer.first() == Some(&redis::Value::Int(1)) {
            let data = serde_json::to_string(&value).unwrap();
            let _: i64 = self
                .complete
                .key(key)
                .arg("owner-1")
                .arg(data)
                .arg(3_600_000u64)
                .invoke_async(&mut connection)
                .await
                .unwrap();
            value
        } else {
            // A duplicate: decode the recorded value from the hash.
            black_box(answer);
            value
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
    let (engine, floor, mut admin) = runtime.block_on(async {
        let connection = ConnectionManager::new(redis::Client::open(url.as_str()).unwrap())
            .await
            .unwrap();
        let store = RedisStore::builder(connection.clone())
            .prefix(format!("{prefix}idem:"))
            .build()
            .await
            .unwrap();
        let engine: Engine = EngineBuilder::from_arc(Arc::new(store)).build().unwrap();
        let floor = Floor {
            connection: connection.clone(),
            begin: redis::Script::new(FLOOR_BEGIN),
            complete: redis::Script::new(FLOOR_COMPLETE),
        };
        (engine, floor, connection)
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
            let key = format!("{prefix}floor:{next}");
            let floor = &floor;
            async move { floor.call(&key, next).await }
        })
    });
    group.bench_function("duplicate/idem", |b| {
        b.to_async(&runtime).iter(|| idem_call(1))
    });
    group.bench_function("duplicate/floor", |b| {
        let key = format!("{prefix}floor:1");
        b.to_async(&runtime).iter(|| floor.call(&key, 1))
    });
    group.finish();

    // Clean up this run's keys.
    runtime.block_on(async {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut admin)
            .await
            .unwrap();
        for chunk in keys.chunks(1000) {
            let _: () = redis::cmd("DEL")
                .arg(chunk)
                .query_async(&mut admin)
                .await
                .unwrap();
        }
    });
}

criterion_group!(benches, redis_bench);
criterion_main!(benches);
