//! The per-call overhead of a guarded call on the in-memory store, against calling the
//! plain function in the same run: a first call (fresh key), a replay, and an
//! in-progress rejection. `scripts/bench-ratios` turns the estimates into ratios.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use idem_core::store::Begin;
use idem_core::{Call, Engine, EngineBuilder, Error, ManualClock, MemoryStore, Store};

const NS: &str = "bench::overhead";

/// The function under guard: trivial, so what is measured is idem's overhead.
async fn plain(order: u64) -> Result<u64, Error> {
    Ok(black_box(order) * 2)
}

fn fresh_engine() -> (Engine, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let engine = EngineBuilder::from_arc(store.clone())
        .clock(ManualClock::default())
        .build()
        .expect("valid settings");
    (engine, store)
}

fn overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("overhead");

    group.bench_function("plain", |b| {
        b.to_async(&runtime)
            .iter(|| async { plain(black_box(7)).await.unwrap() })
    });

    // A fresh key each iteration, in stores of at most 10,000 records (a fresh one for
    // each batch, made and dropped outside the timing): the bounded store never fills,
    // and no sample pays for growing a map of millions.
    group.bench_function("first_call", |b| {
        b.to_async(&runtime).iter_custom(|iterations| async move {
            let mut elapsed = Duration::ZERO;
            let mut done = 0;
            while done < iterations {
                let batch = (iterations - done).min(10_000);
                let (engine, _store) = fresh_engine();
                let started = Instant::now();
                for order in done..done + batch {
                    let value = Call::new(NS, &order)
                        .engine(&engine)
                        .run(|_| plain(order))
                        .await;
                    black_box(value.unwrap());
                }
                elapsed += started.elapsed();
                done += batch;
            }
            elapsed
        })
    });

    let (engine, _store) = fresh_engine();
    runtime
        .block_on(Call::new(NS, &7u64).engine(&engine).run(|_| plain(7)))
        .unwrap();
    group.bench_function("replay", |b| {
        b.to_async(&runtime).iter(|| async {
            Call::new(NS, &7u64)
                .engine(&engine)
                .run(|_| plain(7))
                .await
                .unwrap()
        })
    });

    // A key held by another attempt with a lease that outlasts the benchmark.
    let (engine, store) = fresh_engine();
    let id = idem_core::key::id_from_digest(NS, &idem_core::key::digest(NS, b"8", None));
    let now = idem_core::Clock::now_ms(engine.clock().as_ref());
    runtime
        .block_on(store.begin(&Begin {
            id,
            owner: "holder".into(),
            now_ms: now,
            lease_until_ms: now + Duration::from_secs(3600).as_millis() as u64,
            expires_at_s: now / 1000 + 7200,
            fingerprint: None,
        }))
        .unwrap();
    group.bench_function("in_progress", |b| {
        b.to_async(&runtime).iter(|| async {
            let rejected = Call::new(NS, &8u64).engine(&engine).run(|_| plain(8)).await;
            assert!(matches!(rejected, Err(Error::InProgress { .. })));
        })
    });
    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
