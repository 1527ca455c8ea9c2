//! A full in-memory store: 1,000,000 live records, so every new key is refused. The
//! refusal must cost about what a replay costs (both one lookup under the store's lock),
//! not a pass over every record. Both are measured in the same run, on the same store.
//!
//! `cargo bench -p idem-core --bench full`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use idem_core::{Call, EngineBuilder, Error, ManualClock, MemoryStore};

const NS: &str = "bench::full";
const RECORDS: u64 = 1_000_000;

fn full(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(MemoryStore::with_capacity(RECORDS as usize));
    let engine = EngineBuilder::from_arc(store.clone())
        .clock(ManualClock::default())
        .build()
        .unwrap();
    runtime.block_on(async {
        for order in 0..RECORDS {
            Call::new(NS, &order)
                .engine(&engine)
                .run(|_| async move { Ok::<_, Error>(order) })
                .await
                .unwrap();
        }
    });
    assert_eq!(store.len(), RECORDS as usize);

    let mut group = c.benchmark_group("full_store");
    let mut fresh = RECORDS;
    group.bench_function("refusal", |b| {
        b.to_async(&runtime).iter(|| {
            fresh += 1;
            let engine = &engine;
            let order = fresh;
            async move {
                let refused = Call::new(NS, &order)
                    .engine(engine)
                    .run(|_| async move { Ok::<_, Error>(order) })
                    .await;
                black_box(refused.unwrap_err())
            }
        })
    });
    group.bench_function("replay", |b| {
        let mut order = 0;
        b.to_async(&runtime).iter(|| {
            order = (order + 7919) % RECORDS;
            let engine = &engine;
            let key = order;
            async move {
                let value = Call::new(NS, &key)
                    .engine(engine)
                    .run(|_| async move { Ok::<_, Error>(0) })
                    .await;
                black_box(value.unwrap())
            }
        })
    });
    group.finish();
}

criterion_group!(benches, full);
criterion_main!(benches);
