//! Batches on the in-memory store, in one run: the store calls (round trips, for a
//! store whose batch forms are native) one batch of 10 new keys costs through
//! `MemoryStore`'s batch forms, through the trait's looping defaults and as 10 single
//! calls; then items per second for batches of 10 and 100 new keys: `Batch`, the
//! per-item loop (one `Call` per key, all at once) and a hand-written floor (a
//! `Mutex<HashMap>` taking every key under one lock and recording every value under
//! one more).
//!
//! ```sh
//! cargo bench -p idem-core --bench batch
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use idem_core::testkit::floor::batch_round_trips;
use idem_core::{Engine, MemoryStore};

const NS: &str = "bench::batch";

/// The floor: every key taken under one lock (its JSON the map's key), the bodies run,
/// every value's JSON recorded under one more lock.
#[derive(Default)]
struct Floor {
    records: Mutex<HashMap<String, Option<String>>>,
}

impl Floor {
    async fn batch(&self, first: u64, items: usize) {
        let keys: Vec<(u64, String)> = (first..first + items as u64)
            .map(|n| (n, serde_json::to_string(&n).expect("a number encodes")))
            .collect();
        {
            let mut records = self.records.lock().unwrap();
            // Kept small, as the engine's store is by its TTL.
            if records.len() > 100_000 {
                records.clear();
            }
            for (_, key) in &keys {
                assert!(records.insert(key.clone(), None).is_none(), "new keys only");
            }
        }
        let values = futures_util::future::join_all(
            keys.iter()
                .map(|(n, _)| async move { std::hint::black_box(*n) }),
        )
        .await;
        let mut records = self.records.lock().unwrap();
        for ((_, key), value) in keys.into_iter().zip(values) {
            records.insert(key, Some(serde_json::to_string(&value).expect("encodes")));
        }
    }
}

fn batch_bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let [native, looping, singles] = runtime.block_on(batch_round_trips(MemoryStore::new, NS, 10));
    println!(
        "store calls per batch of 10 new keys: memory batch {native}, looping defaults {looping}, 10 single calls {singles}; floor 2 locks"
    );

    // Completed records expire after a second and are swept, so the store stays small
    // however many iterations criterion runs.
    let engine = Engine::builder(MemoryStore::new())
        .ttl(Duration::from_secs(1))
        .build()
        .unwrap();
    let floor = Floor::default();
    idem_core::batch_throughput!(c, "memory", &runtime, &engine, floor);
}

criterion_group!(benches, batch_bench);
criterion_main!(benches);
