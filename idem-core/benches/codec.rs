//! Key canonicalisation and digest; encoding and decoding small and 100 KB results.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct OrderKey<'a> {
    tenant: &'a str,
    order: u64,
    lines: [&'a str; 3],
}

#[derive(Serialize, Deserialize)]
struct Group {
    id: String,
    instances: Vec<String>,
    size: u32,
}

fn keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("key");
    let request_id = "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b";
    group.bench_function("canonical_string", |b| {
        b.iter(|| idem_core::key::canonical_key(black_box(request_id)).unwrap())
    });
    let order = OrderKey {
        tenant: "acme",
        order: 9_876_543_210,
        lines: ["sku-1", "sku-2", "sku-3"],
    };
    group.bench_function("canonical_struct", |b| {
        b.iter(|| idem_core::key::canonical_key(black_box(&order)).unwrap())
    });
    let canonical = idem_core::key::canonical_key(request_id).unwrap();
    group.bench_function("digest_sha256", |b| {
        b.iter(|| idem_core::key::digest("orders::create", black_box(&canonical), None))
    });
    group.bench_function("digest_hmac", |b| {
        b.iter(|| {
            idem_core::key::digest(
                "orders::create",
                black_box(&canonical),
                Some(b"a secret key"),
            )
        })
    });
    group.finish();
}

fn results(c: &mut Criterion) {
    let mut group = c.benchmark_group("result");
    let small = Group {
        id: "group-42".into(),
        instances: vec!["i-0abc".into(), "i-0def".into()],
        size: 2,
    };
    let large = Group {
        id: "group-43".into(),
        // About 100 KB encoded.
        instances: (0..6000).map(|i| format!("i-{i:012x}")).collect(),
        size: 6000,
    };
    for (name, value) in [("small", &small), ("100KB", &large)] {
        let encoded = serde_json::to_string(value).unwrap();
        group.bench_with_input(BenchmarkId::new("encode", name), value, |b, value| {
            b.iter(|| serde_json::to_string(black_box(value)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("decode", name), &encoded, |b, encoded| {
            b.iter(|| serde_json::from_str::<Group>(black_box(encoded)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, keys, results);
criterion_main!(benches);
