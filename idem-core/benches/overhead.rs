//! The per-call overhead of a guarded call on the in-memory store, against calling the
//! plain function in the same run: a first call (fresh key), a replay, and an
//! in-progress rejection; and beside each of the first two, its floor: a bare
//! `Mutex<HashMap>` dedup with serde_json, in the same run. `scripts/bench-ratios`
//! turns the estimates into ratios.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use idem_core::store::Begin;
use idem_core::testkit::floor::batched;
use idem_core::{Call, Engine, EngineBuilder, Error, ManualClock, MemoryStore, Namespace, Store};

/// The namespace as `#[idempotent]` passes it: fixed for the program, never copied.
const NS: Namespace = Namespace::fixed("bench::overhead");

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

/// The floor: what a hand-written dedup in one process does per call. The key's JSON is
/// the map's key; a first call marks the key taken, runs, and records the JSON of the
/// value; a duplicate decodes the recorded value.
#[derive(Default)]
struct Floor {
    records: Mutex<HashMap<String, Option<String>>>,
}

impl Floor {
    async fn call(&self, order: u64) -> Result<u64, Error> {
        let key = serde_json::to_string(&order).expect("a number encodes");
        {
            let mut records = self.records.lock().unwrap();
            match records.get(&key) {
                Some(Some(recorded)) => {
                    return Ok(serde_json::from_str(recorded).expect("recorded by us"))
                }
                Some(None) => panic!("in progress: the benchmark never races"),
                None => {
                    records.insert(key.clone(), None);
                }
            }
        }
        let value = plain(order).await?;
        let recorded = serde_json::to_string(&value).expect("a number encodes");
        self.records.lock().unwrap().insert(key, Some(recorded));
        Ok(value)
    }
}

fn overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if callgrind_mode(&runtime) {
        return;
    }
    let mut group = c.benchmark_group("overhead");

    group.bench_function("plain", |b| {
        b.to_async(&runtime)
            .iter(|| async { plain(black_box(7)).await.unwrap() })
    });

    // A fresh key each iteration, in stores of at most 10,000 records (a fresh one for
    // each batch, made and dropped outside the timing): the bounded store never fills,
    // and no sample pays for growing a map of millions.
    group.bench_function("first_call", |b| {
        b.to_async(&runtime).iter_custom(|iterations| {
            batched(iterations, fresh_engine, async |(engine, _store), order| {
                Call::new(NS, &order)
                    .engine(engine)
                    .run(|_| plain(order))
                    .await
                    .unwrap()
            })
        })
    });

    group.bench_function("first_call_floor", |b| {
        b.to_async(&runtime).iter_custom(|iterations| {
            batched(iterations, Floor::default, async |floor, order| {
                floor.call(order).await.unwrap()
            })
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

    let floor = Floor::default();
    runtime.block_on(floor.call(7)).unwrap();
    group.bench_function("replay_floor", |b| {
        b.to_async(&runtime)
            .iter(|| async { floor.call(black_box(7)).await.unwrap() })
    });

    // A key held by another attempt with a lease that outlasts the benchmark.
    let (engine, store) = fresh_engine();
    let id = idem_core::key::id_from_digest(&NS, &idem_core::key::digest(&NS, b"8", None))
        .expect("a record id");
    let now = idem_core::Clock::now_ms(engine.clock().as_ref());
    runtime
        .block_on(store.begin(&Begin {
            id,
            owner: idem_core::store::Owner::from_u128(7),
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

/// `scripts/callgrind-floor memory`: one side only, under callgrind. The first calls
/// all go to one engine (a store of at most a few thousand records).
fn callgrind_mode(runtime: &tokio::runtime::Runtime) -> bool {
    let (engine, _store) = fresh_engine();
    let floor = Floor::default();
    idem_core::testkit::floor::callgrind_side(
        runtime,
        0,
        |order| {
            let engine = &engine;
            async move {
                Call::new(NS, &order)
                    .engine(engine)
                    .run(|_| plain(order))
                    .await
                    .unwrap()
            }
        },
        |order| {
            let floor = &floor;
            async move { floor.call(order).await.unwrap() }
        },
    )
}

criterion_group!(benches, overhead);
criterion_main!(benches);
