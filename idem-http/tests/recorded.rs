//! What the layer records of a response, on the in-memory store: the body as raw bytes
//! (the bytes codec, never base64), replayed byte for byte; and a record written in the
//! earlier JSON form (the body base64) still replays.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use idem_core::store::{Codec, Record};
use idem_core::{Engine, EngineBuilder, MemoryStore, Store};
use idem_http::IdempotencyLayer;

/// Every byte value, over and over: not UTF-8, not JSON.
fn binary(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 256) as u8).collect()
}

/// A server whose handler answers `body` as `application/octet-stream`, counting runs.
async fn serve(engine: Engine, body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let app = Router::new()
        .route(
            "/blobs",
            post(move || {
                let body = body.clone();
                counted.fetch_add(1, Ordering::SeqCst);
                async move { ([("content-type", "application/octet-stream")], body) }
            }),
        )
        .layer(IdempotencyLayer::new(engine).global_keys());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/blobs", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, runs)
}

async fn post_key(url: &str, key: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("idempotency-key", key)
        .send()
        .await
        .unwrap()
}

/// The record of `key` once it holds the response: the layer records from its own task
/// once the body has gone out, just after the client has read it.
async fn record(store: &MemoryStore, engine: &Engine, key: &str) -> Arc<Record> {
    let id = engine.record_id("http", key).unwrap();
    for _ in 0..5000 {
        let read = store.read(&id).await.unwrap();
        if let Some(record) = read.filter(|r| r.data.is_some()) {
            return record;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("the response to {key} was not recorded within 5 s")
}

#[tokio::test]
async fn a_binary_body_is_recorded_as_bytes_and_replayed_byte_for_byte() {
    let store = Arc::new(MemoryStore::new());
    let engine = EngineBuilder::from_arc(store.clone()).build().unwrap();
    let body = binary(100 * 1024);
    let (url, runs) = serve(engine.clone(), body.clone()).await;

    let first = post_key(&url, "blob-1").await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.bytes().await.unwrap(), body);

    let record = record(&store, &engine, "blob-1").await;
    assert_eq!(record.codec, Codec::Bytes);
    let data = record.data.as_ref().unwrap();
    assert!(
        data.len() < body.len() + 200,
        "{} bytes recorded for a {}-byte body: the body is not re-encoded",
        data.len(),
        body.len()
    );
    assert!(data.ends_with(&body), "the body is recorded as it was sent");

    let retry = post_key(&url, "blob-1").await;
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.headers()["content-type"], "application/octet-stream");
    assert_eq!(retry.bytes().await.unwrap(), body);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_response_recorded_in_the_earlier_json_form_still_replays() {
    let store = Arc::new(MemoryStore::new());
    let engine = EngineBuilder::from_arc(store.clone()).build().unwrap();
    let body = binary(1000);
    let (url, runs) = serve(engine.clone(), b"new".to_vec()).await;
    assert_eq!(post_key(&url, "old-1").await.status(), 200);

    // The record as idem 0.1 wrote it: JSON, the body base64, codec `json`.
    let mut old = Arc::unwrap_or_clone(record(&store, &engine, "old-1").await);
    let json = serde_json::json!({ "Response": {
        "status": 201,
        "headers": [["content-type", "application/x-old"], ["location", "/blobs/7"]],
        "body": base64::engine::general_purpose::STANDARD.encode(&body),
    }});
    old.codec = Codec::Json;
    old.data = Some(json.to_string().into());
    store.put_raw(old);

    let retry = post_key(&url, "old-1").await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.headers()["content-type"], "application/x-old");
    assert_eq!(retry.headers()["location"], "/blobs/7");
    assert_eq!(retry.bytes().await.unwrap(), body);
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "an old record is replayed, never re-run"
    );
}

/// A replay shares the recorded body with the record (`idem_core::replayed_bytes`): the
/// replayed body's bytes are the record's own, not a copy. Checked in process, through
/// the layer as a tower service, since only there can the body's address be compared
/// with the record's (the loopback tests above check the bytes a client receives).
#[tokio::test]
async fn a_replayed_body_is_the_records_own_bytes_not_a_copy() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use tower::{Layer, ServiceExt};

    let store = Arc::new(MemoryStore::new());
    let engine = EngineBuilder::from_arc(store.clone()).build().unwrap();
    let body = Bytes::from(binary(256 * 1024));
    let handler = {
        let body = body.clone();
        tower::service_fn(move |_: http::Request<Full<Bytes>>| {
            let body = body.clone();
            async move { Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(body))) }
        })
    };
    let guarded = IdempotencyLayer::new(engine.clone())
        .global_keys()
        .layer(handler);
    /// One request through the layer: whether it was a replay, and its body.
    async fn send<S, B>(service: S) -> (bool, Bytes)
    where
        S: tower::Service<http::Request<Full<Bytes>>, Response = http::Response<B>>,
        S::Error: std::fmt::Debug,
        B: http_body::Body<Data = Bytes>,
        B::Error: std::fmt::Debug,
    {
        let request = http::Request::post("/blobs")
            .header("idempotency-key", "shared")
            .body(Full::from("{}"))
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        let replayed = response.headers().contains_key("idempotent-replayed");
        (
            replayed,
            response.into_body().collect().await.unwrap().to_bytes(),
        )
    }
    let (replayed, first) = send(guarded.clone()).await;
    assert!(!replayed);
    assert_eq!(first, body);
    let record = record(&store, &engine, "shared").await;
    let data = record.data.as_ref().unwrap();
    let (replayed, again) = send(guarded.clone()).await;
    assert!(replayed);
    assert_eq!(again, body);
    let recorded = data.as_ptr_range();
    let shown = again.as_ptr_range();
    assert!(
        recorded.start <= shown.start && shown.end <= recorded.end,
        "the replayed body lies in the record's buffer ({recorded:?}), not in a copy ({shown:?})"
    );
}
