//! Latency and requests per call against a local DynamoDB server: informative, since a
//! local emulator is not DynamoDB.
//!
//! ```sh
//! IDEM_BENCH_ENDPOINT=http://127.0.0.1:8000 cargo bench -p idem-dynamo --features testkit --bench dynamo
//! ```

use std::sync::Arc;
use std::time::Instant;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use criterion::{criterion_group, criterion_main, Criterion};
use idem_core::{Call, Engine, EngineBuilder, Error};
use idem_dynamo::testkit::RequestCounter;
use idem_dynamo::{DynamoStore, SetupError};

fn setup(runtime: &tokio::runtime::Runtime, endpoint: &str, counter: &RequestCounter) -> Engine {
    let client = aws_sdk_dynamodb::Client::from_conf(
        idem_dynamo::local_config(endpoint)
            .retry_config(RetryConfig::disabled())
            .interceptor(counter.clone())
            .build(),
    );
    runtime.block_on(async {
        let builder = DynamoStore::builder(client, format!("idem-bench-{}", std::process::id()))
            .check_ttl(false);
        match builder.create_table().await {
            Ok(_) | Err(SetupError::TableExists { .. }) => {}
            Err(error) => panic!("cannot create the bench table: {error}"),
        }
        EngineBuilder::from_arc(Arc::new(builder.build().await.unwrap()))
            .build()
            .unwrap()
    })
}

fn dynamo(c: &mut Criterion) {
    let Ok(endpoint) = std::env::var("IDEM_BENCH_ENDPOINT") else {
        eprintln!("IDEM_BENCH_ENDPOINT is not set: no DynamoDB server to measure against");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let counter = RequestCounter::new();
    let engine = setup(&runtime, &endpoint, &counter);
    let mut group = c.benchmark_group("dynamo");
    group.sample_size(20);
    let mut next = 0u64;
    group.bench_function("first_call", |b| {
        b.to_async(&runtime).iter_custom(|iterations| {
            let engine = engine.clone();
            let from = next;
            next += iterations;
            async move {
                let started = Instant::now();
                for key in from..from + iterations {
                    Call::new("bench::dynamo", &key)
                        .engine(&engine)
                        .run(|_| async { Ok::<_, Error>(1u8) })
                        .await
                        .unwrap();
                }
                started.elapsed()
            }
        })
    });
    runtime
        .block_on(
            Call::new("bench::dynamo", "replayed")
                .engine(&engine)
                .run(|_| async { Ok::<_, Error>(1u8) }),
        )
        .unwrap();
    group.bench_function("replay", |b| {
        b.to_async(&runtime).iter(|| async {
            Call::new("bench::dynamo", "replayed")
                .engine(&engine)
                .run(|_| async { Ok::<_, Error>(2u8) })
                .await
                .unwrap()
        })
    });
    group.finish();

    // Requests per call, counted on the wire: a first call, then its duplicate.
    let mut counts = Vec::new();
    for _ in 0..2 {
        counter.reset();
        let call = Call::new("bench::dynamo", "counted")
            .engine(&engine)
            .run(|_| async { Ok::<_, Error>(1u8) });
        runtime.block_on(call).unwrap();
        counts.push(counter.counts());
    }
    println!(
        "requests: first call {:?}, duplicate {:?}",
        counts[0], counts[1]
    );
}

criterion_group!(benches, dynamo);
criterion_main!(benches);
