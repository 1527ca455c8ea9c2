//! Replays of large recorded responses through the layer on the in-memory store, each
//! beside the bare handler answering the same bytes, in one run; and the size of the
//! record for each body, as recorded now (raw bytes) and in the earlier form (base64
//! inside JSON), printed before the timings.
//!
//! ```sh
//! cargo bench -p idem-http --bench replay_size
//! ```

use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use idem_core::{EngineBuilder, MemoryStore, Store};
use idem_http::IdempotencyLayer;
use tower::{service_fn, Layer, ServiceExt};

const SIZES: [(usize, &str); 3] = [(1024, "1KB"), (100 * 1024, "100KB"), (1024 * 1024, "1MB")];

fn request() -> Request<Full<Bytes>> {
    Request::post("/files")
        .header("idempotency-key", "replayed")
        .body(Full::from("{}"))
        .unwrap()
}

fn replays(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("replay_size");
    for (size, name) in SIZES {
        let body = Bytes::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let handler = {
            let body = body.clone();
            move |_: Request<Full<Bytes>>| {
                let body = body.clone();
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(StatusCode::OK)
                            .header(header::CONTENT_TYPE, "application/octet-stream")
                            .body(Full::new(body))
                            .unwrap(),
                    )
                }
            }
        };
        let store = Arc::new(MemoryStore::new());
        let engine = EngineBuilder::from_arc(store.clone()).build().unwrap();
        let guarded = IdempotencyLayer::new(engine.clone())
            .global_keys()
            .max_body_bytes(2 * 1024 * 1024)
            .layer(service_fn(handler.clone()));
        let first = runtime.block_on(async {
            let response = guarded.clone().oneshot(request()).await.unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        });
        assert_eq!(first, body);
        let id = engine.record_id("http", "replayed").unwrap();
        // The layer records a response once its body has gone out, from its own task:
        // the record completes just after the client has read the body.
        let record = runtime.block_on(async {
            for _ in 0..5000 {
                let record = store.read(&id).await.unwrap();
                if let Some(record) = record.filter(|r| r.data.is_some()) {
                    return record;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            panic!("the response to {id} was not recorded within 5 s")
        });
        let legacy = serde_json::json!({ "Response": {
            "status": 200,
            "headers": [["content-type", "application/octet-stream"]],
            "body": base64::engine::general_purpose::STANDARD.encode(&body),
        }})
        .to_string();
        println!(
            "{name}: record data {} bytes ({}), earlier form {} bytes (json, base64): {:.2}x",
            record.data.as_ref().unwrap().len(),
            record.codec,
            legacy.len(),
            legacy.len() as f64 / record.data.as_ref().unwrap().len() as f64
        );
        group.throughput(Throughput::Bytes(size as u64));
        // Two floors: a handler answering bytes it shares (no copy), and one answering a
        // copy of them (what a replay costs at best: the record's bytes copied once).
        let bare = service_fn(handler);
        group.bench_function(BenchmarkId::new("bare_handler", name), |b| {
            b.to_async(&runtime).iter(|| async {
                let response = bare.clone().oneshot(request()).await.unwrap();
                response.into_body().collect().await.unwrap().to_bytes()
            })
        });
        let copying = service_fn(move |_: Request<Full<Bytes>>| {
            let body = Bytes::copy_from_slice(&body);
            async move {
                Ok::<_, Infallible>(
                    Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_TYPE, "application/octet-stream")
                        .body(Full::new(body))
                        .unwrap(),
                )
            }
        });
        group.bench_function(BenchmarkId::new("bare_handler_copying", name), |b| {
            b.to_async(&runtime).iter(|| async {
                let response = copying.clone().oneshot(request()).await.unwrap();
                response.into_body().collect().await.unwrap().to_bytes()
            })
        });
        group.bench_function(BenchmarkId::new("layer_replay", name), |b| {
            b.to_async(&runtime).iter(|| async {
                let response = guarded.clone().oneshot(request()).await.unwrap();
                response.into_body().collect().await.unwrap().to_bytes()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, replays);
criterion_main!(benches);
