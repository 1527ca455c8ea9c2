//! The layer's overhead per request, in process (no network), on the in-memory store:
//! the same handler called bare and through `IdempotencyLayer`, for a first request (a
//! new key each time) and a replay (one key), and the time to the first byte of a
//! streamed response (a first request). The overhead is the difference.
//!
//! ```sh
//! cargo bench -p idem-http --bench layer
//! ```

use std::convert::Infallible;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{header, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use idem_core::testkit::floor::batched;
use idem_core::{Engine, MemoryStore};
use idem_http::IdempotencyLayer;
use tower::{service_fn, Layer, ServiceExt};

/// A handler that answers 201 with a small JSON body and a `Location`.
async fn handler(_: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .status(StatusCode::CREATED)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::LOCATION, "/payments/1")
        .body(Full::from(r#"{"payment":1,"amount":"10 EUR"}"#))
        .unwrap())
}

/// A handler that answers 200 with a body streamed in three chunks.
async fn streaming(
    _: Request<Full<Bytes>>,
) -> Result<
    Response<StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>>>>,
    Infallible,
> {
    let chunks = ["data: one\n\n", "data: two\n\n", "data: three\n\n"]
        .map(|chunk| Ok(Frame::data(Bytes::from_static(chunk.as_bytes()))));
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap())
}

/// Times the first frame of `iterations` responses of `service` (a fresh one every
/// 10,000, made outside the timing), each to a request with a new key; the rest of each
/// body is read, and the runtime left to finish the request's work, outside it. Each
/// request's time is also kept in `each`, for its percentiles.
async fn first_bytes<S, B>(
    iterations: u64,
    fresh: impl Fn() -> S,
    each: &Mutex<Vec<Duration>>,
) -> Duration
where
    S: tower::Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let mut elapsed = Duration::ZERO;
    let mut service = fresh();
    for n in 0..iterations {
        if n % 10_000 == 0 {
            service = fresh();
        }
        let started = Instant::now();
        let response = service
            .clone()
            .oneshot(request(&format!("key-{n}")))
            .await
            .unwrap();
        let mut body = std::pin::pin!(response.into_body());
        let first = body.frame().await;
        let took = started.elapsed();
        elapsed += took;
        each.lock().unwrap().push(took);
        std::hint::black_box(first);
        while body.frame().await.is_some() {}
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }
    elapsed
}

/// `service`'s answer to `request`, its body read whole, as a client reads it (a body
/// left unread would take the layer's path for a client that leaves mid-body).
async fn answered<S, B>(service: S, request: Request<Full<Bytes>>) -> Bytes
where
    S: tower::Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let response = service.oneshot(request).await.unwrap();
    response.into_body().collect().await.unwrap().to_bytes()
}

fn request(key: &str) -> Request<Full<Bytes>> {
    Request::post("/payments")
        .header("idempotency-key", key)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::from(r#"{"amount":"10 EUR"}"#))
        .unwrap()
}

fn layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bare = service_fn(handler);
    let guarded = IdempotencyLayer::new(Engine::new(MemoryStore::new()))
        .global_keys()
        .layer(service_fn(handler));
    runtime.block_on(answered(guarded.clone(), request("replayed")));

    // Under callgrind (`IDEM_BENCH_SIDE=first|replay`, `IDEM_BENCH_CALLS`): one kind of
    // request only, no criterion, to see where the instructions go.
    if let Ok(side) = std::env::var("IDEM_BENCH_SIDE") {
        let calls: u64 = std::env::var("IDEM_BENCH_CALLS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1000);
        runtime.block_on(async {
            for n in 0..calls {
                let key = match side.as_str() {
                    "first" => format!("key-{n}"),
                    "replay" => "replayed".to_owned(),
                    other => panic!("unknown IDEM_BENCH_SIDE {other}"),
                };
                answered(guarded.clone(), request(&key)).await;
            }
        });
        return;
    }

    let mut group = c.benchmark_group("layer");
    group.bench_function("bare_handler", |b| {
        b.to_async(&runtime).iter(|| answered(bare, request("any")))
    });
    let fresh_layer = || {
        IdempotencyLayer::new(Engine::new(MemoryStore::new()))
            .global_keys()
            .layer(service_fn(handler))
    };
    group.bench_function("first_request", |b| {
        b.to_async(&runtime).iter_custom(|iterations| {
            batched(iterations, fresh_layer, async |guarded, n| {
                answered(guarded.clone(), request(&format!("key-{n}"))).await
            })
        })
    });
    group.bench_function("replay", |b| {
        b.to_async(&runtime)
            .iter(|| answered(guarded.clone(), request("replayed")))
    });
    // A streamed response's first byte, bare and through the layer (a new key each),
    // and each request's time to it, for the p50 (criterion's estimates are of means).
    let (bare_each, layer_each) = (Mutex::new(Vec::new()), Mutex::new(Vec::new()));
    group.bench_function("first_byte_bare", |b| {
        b.to_async(&runtime)
            .iter_custom(|iterations| first_bytes(iterations, || service_fn(streaming), &bare_each))
    });
    group.bench_function("first_byte_through_layer", |b| {
        b.to_async(&runtime).iter_custom(|iterations| {
            first_bytes(
                iterations,
                || {
                    IdempotencyLayer::new(Engine::new(MemoryStore::new()))
                        .global_keys()
                        .layer(service_fn(streaming))
                },
                &layer_each,
            )
        })
    });
    let percentiles = |each: Mutex<Vec<Duration>>| {
        let mut each = each.into_inner().unwrap();
        each.sort_unstable();
        let at = |q: f64| each.get((each.len() as f64 * q) as usize).copied();
        (at(0.5), at(0.9), each.len())
    };
    let (bare, through) = (percentiles(bare_each), percentiles(layer_each));
    println!("time to first byte, per request (p50, p90, requests): bare {bare:?}, through the layer {through:?}");
    if let ((Some(bare), ..), (Some(through), ..)) = (bare, through) {
        println!(
            "time to first byte, p50 over bare: {:?} (target: at most 5 us)",
            through.saturating_sub(bare)
        );
    }
    // The engine's share: the same calls without HTTP (a key, a fingerprint, a value of
    // about the recorded response's size).
    let value = "x".repeat(160);
    let engine_call = |engine: &Engine, key: String| {
        let (engine, value) = (engine.clone(), value.clone());
        async move {
            idem_core::Call::new("http", &key)
                .engine(&engine)
                .fingerprint("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
                .run(|_| async move { Ok::<_, idem_core::Error>(value) })
                .await
                .unwrap()
        }
    };
    let engine = Engine::new(MemoryStore::new());
    runtime.block_on(engine_call(&engine, "replayed".to_owned()));
    group.bench_function("engine_first_call", |b| {
        b.to_async(&runtime).iter_custom(|iterations| {
            batched(
                iterations,
                || Engine::new(MemoryStore::new()),
                async |engine, n| engine_call(engine, format!("key-{n}")).await,
            )
        })
    });
    group.bench_function("engine_replay", |b| {
        b.to_async(&runtime)
            .iter(|| engine_call(&engine, "replayed".to_owned()))
    });
    group.finish();
}

criterion_group!(benches, layer);
criterion_main!(benches);
