//! 1 to 64 tasks calling at once on a multi-threaded runtime, on distinct keys and on
//! one key, on the in-memory store. Each sample is `tasks` tasks x 100 calls.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use idem_core::{Call, EngineBuilder, Error, ManualClock, MemoryStore};

const CALLS_PER_TASK: u64 = 100;

fn contention(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("contention");
    for tasks in [1u64, 4, 16, 64] {
        for same_key in [false, true] {
            let name = if same_key { "one_key" } else { "distinct_keys" };
            group.bench_with_input(BenchmarkId::new(name, tasks), &tasks, |b, &tasks| {
                b.to_async(&runtime).iter_custom(|iterations| async move {
                    let mut elapsed = std::time::Duration::ZERO;
                    for _ in 0..iterations {
                        // A fresh store each round: no round pays for another's records.
                        let engine = EngineBuilder::from_arc(Arc::new(MemoryStore::new()))
                            .clock(ManualClock::default())
                            .build()
                            .unwrap();
                        let started = Instant::now();
                        let handles: Vec<_> = (0..tasks)
                            .map(|task| {
                                let engine = engine.clone();
                                tokio::spawn(async move {
                                    for call in 0..CALLS_PER_TASK {
                                        let key = if same_key { (0, call) } else { (task, call) };
                                        let result = Call::new("bench::contention", &key)
                                            .engine(&engine)
                                            .run(|_| async { Ok::<_, Error>(black_box(1u8)) })
                                            .await;
                                        black_box(result.is_ok());
                                    }
                                })
                            })
                            .collect();
                        for handle in handles {
                            handle.await.unwrap();
                        }
                        elapsed += started.elapsed();
                    }
                    elapsed
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, contention);
criterion_main!(benches);
