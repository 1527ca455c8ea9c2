//! Latency and requests per call against a local DynamoDB server: informative, since a
//! local emulator is not DynamoDB. Beside idem, in the same run, a hand-written floor:
//! the same two conditional UpdateItems a dedup needs (take the key with the fence
//! read back, record the value; a duplicate decodes the old item the refusal returns),
//! with the same client and table. After criterion's figures, idem and the floor run
//! alternated in rounds and are compared on p50 and client CPU per call (the thread's
//! on-CPU time; the runtime is single-threaded, so this is all the client's work).
//! `replay_cached` is a duplicate answered by the engine's local cache (no request),
//! beside `replay_in_memory`, a replay on the in-memory store, in the same run.
//! `IDEM_BENCH_SIDE=idem-first|floor-first|idem-duplicate|floor-duplicate` with
//! `IDEM_BENCH_CALLS=N` runs only N calls of one side, for callgrind
//! (`scripts/callgrind-floor dynamo`).
//!
//! ```sh
//! IDEM_BENCH_ENDPOINT=http://127.0.0.1:8000 cargo bench -p idem-dynamo --features testkit --bench dynamo
//! ```

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use criterion::{criterion_group, criterion_main, Criterion};
use idem_core::{Call, Engine, EngineBuilder, Error, LocalCache, MemoryStore};
use idem_dynamo::testkit::RequestCounter;
use idem_dynamo::{DynamoStore, SetupError};

const LEASE_MS: u64 = 30_000;
const TTL_MS: u64 = 3_600_000;

/// The hand-written floor.
struct Floor {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl Floor {
    async fn call(&self, key: &str, value: u64) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let n = |v: u64| AttributeValue::N(v.to_string());
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let taken = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(key))
            .update_expression("SET #s = :p, #o = :o, #l = :l, #e = :e ADD #f :one")
            .condition_expression(
                "attribute_not_exists(#s) OR (#s = :c AND #e <= :now_s) OR (#s = :p AND #l <= :now)",
            )
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_names("#l", "in_progress_expiration")
            .expression_attribute_names("#e", "expiration")
            .expression_attribute_names("#f", "fence")
            .expression_attribute_values(":p", s("INPROGRESS"))
            .expression_attribute_values(":c", s("COMPLETED"))
            .expression_attribute_values(":o", s("owner-1"))
            .expression_attribute_values(":l", n(now + LEASE_MS))
            .expression_attribute_values(":e", n((now + LEASE_MS + TTL_MS).div_ceil(1000)))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":now_s", n(now / 1000))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match taken {
            Ok(output) => {
                let fence = output
                    .attributes()
                    .and_then(|a| a.get("fence"))
                    .cloned()
                    .unwrap();
                let recorded = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .key("id", s(key))
                    .update_expression("SET #s = :c, #d = :d, #e = :e")
                    .condition_expression("#o = :o AND #f = :f")
                    .expression_attribute_names("#s", "status")
                    .expression_attribute_names("#d", "data")
                    .expression_attribute_names("#e", "expiration")
                    .expression_attribute_names("#o", "owner")
                    .expression_attribute_names("#f", "fence")
                    .expression_attribute_values(":c", s("COMPLETED"))
                    .expression_attribute_values(":d", s(&serde_json::to_string(&value).unwrap()))
                    .expression_attribute_values(":e", n((now + TTL_MS).div_ceil(1000)))
                    .expression_attribute_values(":o", s("owner-1"))
                    .expression_attribute_values(":f", fence)
                    .send()
                    .await
                    .unwrap();
                black_box(recorded);
                value
            }
            Err(SdkError::ServiceError(error)) => match error.err() {
                UpdateItemError::ConditionalCheckFailedException(failed) => {
                    // A duplicate: the recorded value, from the old item, or from one
                    // consistent read where the server returns none (dynalite), as idem.
                    let item: HashMap<String, AttributeValue> = match failed.item() {
                        Some(item) if !item.is_empty() => item.clone(),
                        _ => self
                            .client
                            .get_item()
                            .table_name(&self.table)
                            .key("id", s(key))
                            .consistent_read(true)
                            .send()
                            .await
                            .unwrap()
                            .item
                            .unwrap(),
                    };
                    let data = item.get("data").unwrap().as_s().unwrap();
                    black_box(serde_json::from_str(data).unwrap())
                }
                other => panic!("{other:?}"),
            },
            Err(other) => panic!("{other:?}"),
        }
    }
}

fn setup(
    runtime: &tokio::runtime::Runtime,
    endpoint: &str,
    counter: &RequestCounter,
) -> (Engine, Engine, Floor) {
    let client = aws_sdk_dynamodb::Client::from_conf(
        idem_dynamo::local_config(endpoint)
            .retry_config(RetryConfig::disabled())
            .interceptor(counter.clone())
            .build(),
    );
    let table = format!("idem-bench-{}", std::process::id());
    let floor = Floor {
        client: client.clone(),
        table: table.clone(),
    };
    runtime.block_on(async {
        let builder = DynamoStore::builder(client, table).check_ttl(false);
        match builder.create_table().await {
            Ok(_) | Err(SetupError::TableExists { .. }) => {}
            Err(error) => panic!("cannot create the bench table: {error}"),
        }
        let store = Arc::new(builder.build().await.unwrap());
        let engine = EngineBuilder::from_arc(store.clone()).build().unwrap();
        // The same store, with the local cache in front.
        let cached = EngineBuilder::from_arc(store)
            .local_cache(LocalCache::new())
            .build()
            .unwrap();
        (engine, cached, floor)
    })
}

fn dynamo(c: &mut Criterion) {
    let Ok(endpoint) = std::env::var("IDEM_BENCH_ENDPOINT") else {
        eprintln!("IDEM_BENCH_ENDPOINT is not set: no DynamoDB server to measure against");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let counter = RequestCounter::new();
    let (engine, cached, floor) = setup(&runtime, &endpoint, &counter);
    let idem_call = |key: u64| {
        let engine = engine.clone();
        async move {
            Call::new("bench::dynamo", &key)
                .engine(&engine)
                .run(|_| async move { Ok::<_, Error>(key) })
                .await
                .unwrap()
        }
    };
    let floor_call = |n: u64| {
        let key = format!("floor:{n}");
        let floor = &floor;
        async move { floor.call(&key, n).await }
    };
    // Under callgrind: only `IDEM_BENCH_CALLS` calls of one side, no criterion. The
    // table outlives the run: first calls are numbered from the process id.
    let run = std::process::id() as u64 * 1_000_000;
    if idem_core::testkit::floor::callgrind_side(&runtime, run, idem_call, floor_call) {
        return;
    }
    runtime.block_on(async {
        idem_call(1).await;
        floor_call(1).await;
    });

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

    // Alternated rounds: p50 and client CPU per call, idem beside the floor.
    idem_core::testkit::floor::compare_first_and_duplicate(
        &runtime,
        21,
        50,
        run + 500_000,
        idem_call,
        floor_call,
    );

    // Requests per call, counted on the wire: a first call and its duplicate, then two
    // duplicates on the engine with the local cache.
    let mut counts = Vec::new();
    for engine in [&engine, &engine, &cached, &cached] {
        counter.reset();
        let call = Call::new("bench::dynamo", "counted")
            .engine(engine)
            .run(|_| async { Ok::<_, Error>(1u8) });
        runtime.block_on(call).unwrap();
        counts.push(counter.counts());
    }
    println!(
        "requests: first call {:?}, duplicate {:?}; with the local cache: first duplicate {:?}, next duplicate {:?}",
        counts[0], counts[1], counts[2], counts[3]
    );

    // Last, since they send no request: dynalite closes a connection idle for 5 s, and
    // the client's next request could meet it closed. The record "replayed", replayed
    // by the engine with the local cache (which the first duplicate fills), and a
    // replay on the in-memory store for comparison.
    let memory = Engine::new(MemoryStore::new());
    let mut local = c.benchmark_group("dynamo");
    for engine in [&cached, &memory] {
        runtime
            .block_on(
                Call::new("bench::dynamo", "replayed")
                    .engine(engine)
                    .run(|_| async { Ok::<_, Error>(1u8) }),
            )
            .unwrap();
    }
    for (name, engine) in [("replay_cached", &cached), ("replay_in_memory", &memory)] {
        local.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| async {
                Call::new("bench::dynamo", "replayed")
                    .engine(engine)
                    .run(|_| async { Ok::<_, Error>(2u8) })
                    .await
                    .unwrap()
            })
        });
    }
    local.finish();
}

criterion_group!(benches, dynamo);
criterion_main!(benches);
