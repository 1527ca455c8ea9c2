//! Batches on a local DynamoDB server (dynalite; informative, since an emulator is not
//! DynamoDB), in one run: the requests one batch of 10 new keys sends (its begins and
//! its completions each sent at once: DynamoDB has no conditional batch write), and
//! its latency beside one single call's (the target: within 1.5x, since the begins go
//! out together) and beside the per-item loop's (10 calls at once), alternated in
//! rounds and compared on p50 (`idem_core::testkit::floor::compare`).
//!
//! ```sh
//! IDEM_BENCH_ENDPOINT=http://127.0.0.1:8000 cargo bench -p idem-dynamo --features testkit --bench batch
//! ```

use std::sync::Arc;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use criterion::{criterion_group, criterion_main, Criterion};
use idem_core::testkit::floor::{batch_of, calls_of, compare};
use idem_core::{Call, EngineBuilder, Error};
use idem_dynamo::testkit::RequestCounter;
use idem_dynamo::{DynamoStore, SetupError};

const NS: &str = "bench::batch";

fn batch(c: &mut Criterion) {
    let Ok(endpoint) = std::env::var("IDEM_BENCH_ENDPOINT") else {
        eprintln!("IDEM_BENCH_ENDPOINT is not set: no DynamoDB server to measure against");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let counter = RequestCounter::new();
    let client = aws_sdk_dynamodb::Client::from_conf(
        idem_dynamo::local_config(&endpoint)
            .retry_config(RetryConfig::disabled())
            .interceptor(counter.clone())
            .build(),
    );
    let engine = runtime.block_on(async {
        let builder =
            DynamoStore::builder(client, format!("idem-bench-batch-{}", std::process::id()))
                .check_ttl(false);
        match builder.create_table().await {
            Ok(_) | Err(SetupError::TableExists { .. }) => {}
            Err(error) => panic!("cannot create the bench table: {error}"),
        }
        EngineBuilder::from_arc(Arc::new(builder.build().await.unwrap()))
            .build()
            .unwrap()
    });
    let run = std::process::id() as u64 * 1_000_000;
    runtime.block_on(async {
        counter.reset();
        batch_of(&engine, NS, run, 10).await;
        println!(
            "requests per batch of 10 new keys: {:?} (one round trip's time: each kind sent at once)",
            counter.counts()
        );
    });
    let single = |n: u64| {
        let engine = engine.clone();
        async move {
            Call::new(NS, &n)
                .engine(&engine)
                .run(|_| async move { Ok::<_, Error>(n) })
                .await
                .unwrap()
        }
    };
    let mut group = c.benchmark_group("batch/dynamo");
    group.sample_size(20);
    let mut next = run + 1000;
    group.bench_function("single_call", |b| {
        b.to_async(&runtime).iter(|| {
            next += 1;
            single(next)
        })
    });
    group.bench_function("10/batch", |b| {
        b.to_async(&runtime).iter(|| {
            next += 10;
            batch_of(&engine, NS, next, 10)
        })
    });
    group.bench_function("10/calls", |b| {
        b.to_async(&runtime).iter(|| {
            next += 10;
            calls_of(&engine, NS, next, 10)
        })
    });
    group.finish();
    // Each batch numbers its keys from its call's number times 10.
    compare(
        &runtime,
        "a batch of 10 (floor: one single call)",
        21,
        20,
        next + 1000,
        |n| batch_of(&engine, NS, n * 10, 10),
        |n| single(n * 10),
    );
    compare(
        &runtime,
        "a batch of 10 (floor: 10 single calls at once)",
        21,
        20,
        next + 100_000,
        |n| batch_of(&engine, NS, n * 10, 10),
        |n| calls_of(&engine, NS, n * 10 + 5_000_000_000, 10),
    );
}

criterion_group!(benches, batch);
criterion_main!(benches);
