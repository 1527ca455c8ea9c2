//! The layer and the middleware with real parts: an axum server on an ephemeral
//! 127.0.0.1 port, a reqwest client, and a downstream server that counts the keys it
//! receives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use idem_core::{Engine, MemoryStore};
use idem_http::{IdempotencyKeyMiddleware, IdempotencyLayer, Label};
use reqwest::header::HeaderValue;

/// A server on an ephemeral port, stopped when dropped.
struct Server {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(app: Router) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Server { url, task }
}

#[derive(Clone, Default)]
struct Payments {
    runs: Arc<AtomicUsize>,
    delay: Duration,
    fail_first: bool,
    large: bool,
}

/// Creates a payment: 201, a JSON body, `Location`, and `X-Run` (which is not recorded).
async fn create(State(payments): State<Payments>, body: String) -> impl IntoResponse {
    let run = payments.runs.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(payments.delay).await;
    if payments.fail_first && run == 1 {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            HeaderMap::new(),
            "try again".to_owned(),
        );
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        "location",
        HeaderValue::from_str(&format!("/payments/{run}")).unwrap(),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("x-run", HeaderValue::from(run));
    let payload = if payments.large {
        "x".repeat(100)
    } else {
        body
    };
    let json = serde_json::json!({ "payment": run, "request": payload }).to_string();
    (StatusCode::CREATED, headers, json)
}

fn app(layer: IdempotencyLayer, payments: Payments) -> Router {
    Router::new()
        .route("/payments", post(create).get(|| async { "listed" }))
        .with_state(payments)
        .layer(layer)
}

fn engine() -> Engine {
    Engine::new(MemoryStore::new())
}

async fn pay(url: &str, key: Option<&str>, body: &str) -> reqwest::Response {
    pay_with(&reqwest::Client::new(), url, key, body).await
}

async fn pay_with(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    body: &str,
) -> reqwest::Response {
    let mut request = client.post(format!("{url}/payments")).body(body.to_owned());
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.unwrap()
}

/// A payment request whose client gives up after 100 ms, before the handler answers.
async fn give_up(url: &str, key: &str) {
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(format!("{url}/payments"))
        .header("idempotency-key", key)
        .body("10 EUR")
        .send()
        .await;
    assert!(gave_up.is_err(), "the client gave up: {gave_up:?}");
}

/// A problem response's status and `type`'s last part.
async fn problem(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["status"], status);
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    let kind = body["type"]
        .as_str()
        .unwrap()
        .rsplit_once("#variant.")
        .expect("a type URI naming a variant of Problem")
        .1
        .to_owned();
    (status, kind)
}

#[tokio::test]
async fn a_retry_gets_the_recorded_status_headers_and_body_and_the_handler_runs_once() {
    let payments = Payments::default();
    let server = serve(app(
        IdempotencyLayer::new(engine()).global_keys(),
        payments.clone(),
    ))
    .await;
    let first = pay(&server.url, Some("\"pay-1\""), "10 EUR").await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    assert_eq!(
        first.headers()["x-run"],
        "1",
        "the first response keeps all its headers"
    );
    let first_location = first.headers()["location"].clone();
    let first_body = first.text().await.unwrap();
    // The same key, bare (as Stripe sends it): the same record.
    let retry = pay(&server.url, Some("pay-1"), "10 EUR").await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.headers()["location"], first_location);
    assert_eq!(retry.headers()["content-type"], "application/json");
    assert!(
        retry.headers().get("x-run").is_none(),
        "only allowed headers are recorded"
    );
    assert_eq!(retry.text().await.unwrap(), first_body);
    assert_eq!(payments.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn every_status_rule_answers_with_its_problem() {
    let payments = Payments::default();
    let server = serve(app(
        IdempotencyLayer::new(engine()).global_keys(),
        payments.clone(),
    ))
    .await;
    assert_eq!(
        problem(pay(&server.url, None, "x").await).await,
        (400, "MissingKey".into())
    );
    let long = "k".repeat(256);
    assert_eq!(
        problem(pay(&server.url, Some(&long), "x").await).await,
        (400, "KeyTooLong".into())
    );
    assert_eq!(
        problem(pay(&server.url, Some("\"open"), "x").await).await,
        (400, "InvalidKey".into())
    );
    assert_eq!(pay(&server.url, Some("k-1"), "10 EUR").await.status(), 201);
    // The same key with another body.
    assert_eq!(
        problem(pay(&server.url, Some("k-1"), "99 EUR").await).await,
        (422, "Mismatch".into())
    );
    // A guarded body is read whole, up to the limit (1 MiB by default).
    let huge = "x".repeat(1024 * 1024 + 1);
    assert_eq!(
        problem(pay(&server.url, Some("k-2"), &huge).await).await,
        (413, "RequestTooLarge".into())
    );
    // GET is not guarded: no key needed.
    let listed = reqwest::get(format!("{}/payments", server.url))
        .await
        .unwrap();
    assert_eq!(listed.text().await.unwrap(), "listed");
    assert_eq!(payments.runs.load(Ordering::SeqCst), 1);

    // An optional route: no key, no guard; the handler runs every time.
    let optional = serve(app(
        IdempotencyLayer::new(engine()).global_keys().optional(),
        payments.clone(),
    ))
    .await;
    assert_eq!(pay(&optional.url, None, "x").await.status(), 201);
    assert_eq!(pay(&optional.url, None, "x").await.status(), 201);
    assert_eq!(payments.runs.load(Ordering::SeqCst), 3);
}

async fn race(layer: IdempotencyLayer) -> (Vec<(u16, bool, String)>, usize) {
    let payments = Payments {
        delay: Duration::from_millis(300),
        ..Payments::default()
    };
    let server = serve(app(layer, payments.clone())).await;
    // One client (building one costs more than the handler's delay), many connections.
    let client = reqwest::Client::new();
    let requests: Vec<_> = (0..64)
        .map(|_| {
            let (url, client) = (server.url.clone(), client.clone());
            tokio::spawn(async move {
                let response = pay_with(&client, &url, Some("race-1"), "10 EUR").await;
                let replayed = response.headers().get("idempotent-replayed").is_some();
                (
                    response.status().as_u16(),
                    replayed,
                    response.text().await.unwrap(),
                )
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    (answers, payments.runs.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_identical_requests_run_the_handler_once() {
    let (answers, runs) = race(IdempotencyLayer::new(engine()).global_keys()).await;
    assert_eq!(runs, 1);
    let ran: Vec<_> = answers
        .iter()
        .filter(|(s, replayed, _)| *s == 201 && !replayed)
        .collect();
    assert_eq!(ran.len(), 1, "{answers:?}");
    for (status, replayed, body) in &answers {
        match status {
            201 => assert_eq!(body, &ran[0].2, "a replay is the first response"),
            409 => assert!(!replayed && body.contains("variant.InProgress"), "{body}"),
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(
        answers.iter().any(|(s, _, _)| *s == 409),
        "some arrived while it ran: {answers:?}"
    );

    // Waiting: every caller gets the same 201.
    let (answers, runs) = race(
        IdempotencyLayer::new(engine())
            .global_keys()
            .wait(Duration::from_secs(10)),
    )
    .await;
    assert_eq!(runs, 1);
    assert!(
        answers
            .iter()
            .all(|(s, _, body)| *s == 201 && body == &answers[0].2),
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|(_, replayed, _)| !replayed).count(),
        1
    );
}

#[tokio::test]
async fn a_retry_after_the_server_restarted_on_the_same_store_is_replayed() {
    let engine = engine();
    let payments = Payments::default();
    let first = serve(app(
        IdempotencyLayer::new(engine.clone()).global_keys(),
        payments.clone(),
    ))
    .await;
    let body = pay(&first.url, Some("restart-1"), "10 EUR")
        .await
        .text()
        .await
        .unwrap();
    drop(first);
    let second = serve(app(
        IdempotencyLayer::new(engine).global_keys(),
        payments.clone(),
    ))
    .await;
    let retry = pay(&second.url, Some("restart-1"), "10 EUR").await;
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.text().await.unwrap(), body);
    assert_eq!(payments.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn two_tenants_keys_never_meet_and_a_request_without_tenant_is_refused() {
    let payments = Payments::default();
    let layer = IdempotencyLayer::new(engine())
        .scope(|request| Some(request.headers.get("x-tenant")?.to_str().ok()?.to_owned()));
    let server = serve(app(layer, payments.clone())).await;
    let client = reqwest::Client::new();
    let send = |tenant: Option<&'static str>, body: &'static str| {
        let mut request = client
            .post(format!("{}/payments", server.url))
            .header("idempotency-key", "shared-key")
            .body(body);
        if let Some(tenant) = tenant {
            request = request.header("x-tenant", tenant);
        }
        request.send()
    };
    assert_eq!(send(Some("acme"), "10 EUR").await.unwrap().status(), 201);
    // Another tenant, the same key and another body: its own record, no 422.
    assert_eq!(send(Some("globex"), "99 EUR").await.unwrap().status(), 201);
    let replay = send(Some("acme"), "10 EUR").await.unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(payments.runs.load(Ordering::SeqCst), 2);
    assert_eq!(
        problem(send(None, "10 EUR").await.unwrap()).await,
        (400, "MissingScope".into())
    );
}

#[tokio::test]
async fn a_response_too_large_to_record_is_not_run_again() {
    let payments = Payments {
        large: true,
        ..Payments::default()
    };
    let server = serve(app(
        IdempotencyLayer::new(engine())
            .global_keys()
            .max_body_bytes(64),
        payments.clone(),
    ))
    .await;
    let first = pay(&server.url, Some("large-1"), "10 EUR").await;
    assert_eq!(first.status(), 201);
    assert!(
        first.text().await.unwrap().len() > 64,
        "the first caller gets it whole"
    );
    let retry = pay(&server.url, Some("large-1"), "10 EUR").await;
    assert_eq!(problem(retry).await, (410, "ResponseNotStored".into()));
    assert_eq!(payments.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_server_error_is_not_recorded_so_the_retry_runs_again() {
    let payments = Payments {
        fail_first: true,
        ..Payments::default()
    };
    let server = serve(app(
        IdempotencyLayer::new(engine()).global_keys(),
        payments.clone(),
    ))
    .await;
    assert_eq!(
        pay(&server.url, Some("flaky-1"), "10 EUR").await.status(),
        500
    );
    let retry = pay(&server.url, Some("flaky-1"), "10 EUR").await;
    assert_eq!(retry.status(), 201);
    assert!(retry.headers().get("idempotent-replayed").is_none());
    assert_eq!(payments.runs.load(Ordering::SeqCst), 2);
}

/// The downstream API: counts each `Idempotency-Key` it receives (`-` for none).
async fn downstream() -> (Server, Arc<Mutex<HashMap<String, usize>>>) {
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let counter = seen.clone();
    let app = Router::new().route(
        "/charge",
        post(move |headers: HeaderMap| {
            let counter = counter.clone();
            async move {
                let key = headers
                    .get("idempotency-key")
                    .map_or("-".to_owned(), |v| v.to_str().unwrap().to_owned());
                *counter.lock().unwrap().entry(key).or_default() += 1;
                "charged"
            }
        }),
    );
    (serve(app).await, seen)
}

#[tokio::test]
async fn a_body_that_crashes_after_its_downstream_request_sends_the_same_key_when_run_again() {
    let (bank, seen) = downstream().await;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(IdempotencyKeyMiddleware::new())
        .build();
    let runs = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (client, runs, bank) = (client.clone(), runs.clone(), bank.url.clone());
        move || {
            let (client, runs, bank) = (client.clone(), runs.clone(), bank.clone());
            async move {
                let charge = format!("{bank}/charge");
                client.post(&charge).send().await.unwrap();
                // A second, different request of the same body, labelled.
                client
                    .post(&charge)
                    .with_extension(Label("fee".into()))
                    .send()
                    .await
                    .unwrap();
                // One that brings its own key keeps it.
                client
                    .post(&charge)
                    .header("idempotency-key", "caller-chosen")
                    .send()
                    .await
                    .unwrap();
                if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("the process crashes after its downstream requests");
                }
                (StatusCode::CREATED, "paid")
            }
        }
    };
    let app = Router::new()
        .route("/pay", post(handler))
        .layer(IdempotencyLayer::new(engine()).global_keys());
    let server = serve(app).await;
    let send = || {
        reqwest::Client::new()
            .post(format!("{}/pay", server.url))
            .header("idempotency-key", "order-7")
            .send()
    };
    let crashed = send().await.unwrap();
    assert_eq!(
        problem(crashed).await,
        (500, "HandlerPanicked".to_owned()),
        "the crashed request is answered with a problem"
    );
    assert_eq!(
        send().await.unwrap().status(),
        201,
        "the key was released, the body ran again"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let keys = seen.lock().unwrap().clone();
    assert_eq!(keys.len(), 3, "three distinct keys: {keys:?}");
    assert!(
        keys.values().all(|&n| n == 2),
        "each sent once per run: {keys:?}"
    );
    assert_eq!(keys.get("caller-chosen"), Some(&2));

    // Outside a guarded body nothing is added.
    client
        .post(format!("{}/charge", bank.url))
        .send()
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().get("-"), Some(&1));
}

#[tokio::test]
async fn the_header_the_methods_and_the_server_error_policy_are_configurable() {
    let payments = Payments {
        fail_first: true,
        ..Payments::default()
    };
    let layer = IdempotencyLayer::new(engine())
        .global_keys()
        .header(http::HeaderName::from_static("x-request-id"))
        .methods([http::Method::POST])
        .record_server_errors(true);
    let server = serve(app(layer, payments.clone())).await;
    let client = reqwest::Client::new();
    let send = || {
        client
            .post(format!("{}/payments", server.url))
            .header("x-request-id", "req-1")
            .body("10 EUR")
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 500);
    // Recorded this time: the retry replays the 500 and the handler does not run again.
    let retry = send().await.unwrap();
    assert_eq!(
        (
            retry.status().as_u16(),
            retry.headers()["idempotent-replayed"].to_str().unwrap()
        ),
        (500, "true")
    );
    assert_eq!(payments.runs.load(Ordering::SeqCst), 1);
    // `Idempotency-Key` means nothing to this layer: without its own header, 400.
    let other = client
        .post(format!("{}/payments", server.url))
        .header("idempotency-key", "req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(other).await, (400, "MissingKey".into()));
}

/// The commonest retry: a client that times out and gives up. Its handler is not
/// cancelled with its connection: it runs to its end and its response is recorded, so
/// the retry replays it (it used to meet the key in progress for the whole lease, then
/// run the handler a second time).
#[tokio::test]
async fn a_client_that_gives_up_does_not_cancel_the_handler_and_its_retry_replays() {
    let payments = Payments {
        delay: Duration::from_millis(400),
        ..Payments::default()
    };
    let server = serve(app(
        IdempotencyLayer::new(engine()).global_keys(),
        payments.clone(),
    ))
    .await;
    give_up(&server.url, "\"gave-up\"").await;
    // Past the handler's end, far inside the 30 s lease.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let retry = pay(&server.url, Some("\"gave-up\""), "10 EUR").await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(payments.runs.load(Ordering::SeqCst), 1);
}

/// A handler that panics: its caller gets a 500 problem, not a closed connection, and
/// the key is released, so the retry runs the handler again.
#[tokio::test]
async fn a_panicking_handler_is_answered_with_a_problem_and_its_retry_runs_again() {
    let runs = Arc::new(AtomicUsize::new(0));
    let handler_runs = runs.clone();
    let app = Router::new()
        .route(
            "/payments",
            post(move || {
                let runs = handler_runs.clone();
                async move {
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("the first run panics");
                    }
                    (StatusCode::CREATED, "paid")
                }
            }),
        )
        .layer(IdempotencyLayer::new(engine()).global_keys());
    let server = serve(app).await;
    let first = pay(&server.url, Some("\"panics\""), "10 EUR").await;
    assert_eq!(problem(first).await, (500, "HandlerPanicked".to_owned()));
    let retry = pay(&server.url, Some("\"panics\""), "10 EUR").await;
    assert_eq!(retry.status(), 201);
    assert!(retry.headers().get("idempotent-replayed").is_none());
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

/// The header by RFC 9651: a string with parameters is the same key (the parameters
/// are ignored); two field lines, or a list, are 400. With raw header values.
#[tokio::test]
async fn the_header_is_read_as_a_structured_field() {
    let payments = Payments::default();
    let server = serve(app(
        IdempotencyLayer::new(engine()).global_keys(),
        payments.clone(),
    ))
    .await;
    let first = pay(&server.url, Some("\"sf-1\";v=1"), "10 EUR").await;
    assert_eq!(first.status(), 201);
    let again = pay(&server.url, Some("\"sf-1\"; note=\"x;y\""), "10 EUR").await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(payments.runs.load(Ordering::SeqCst), 1);

    let list = pay(&server.url, Some("\"sf-2\", \"sf-3\""), "10 EUR").await;
    assert_eq!(problem(list).await, (400, "InvalidKey".to_owned()));
    let two_lines = reqwest::Client::new()
        .post(format!("{}/payments", server.url))
        .header("idempotency-key", "\"sf-4\"")
        .header("idempotency-key", "\"sf-5\"")
        .body("10 EUR")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(two_lines).await, (400, "InvalidKey".to_owned()));
    assert_eq!(payments.runs.load(Ordering::SeqCst), 1);
}

/// A retry while the first request runs gets 409 with `Retry-After` set to the time
/// left on the first one's lease (30 s by default), not a fixed second.
#[tokio::test]
async fn a_retry_in_progress_is_told_the_time_left_on_the_lease() {
    let payments = Payments {
        delay: Duration::from_millis(500),
        ..Payments::default()
    };
    let server = serve(app(
        IdempotencyLayer::new(engine()).global_keys(),
        payments.clone(),
    ))
    .await;
    let url = server.url.clone();
    let first = tokio::spawn(async move { pay(&url, Some("\"slow\""), "10 EUR").await.status() });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let busy = pay(&server.url, Some("\"slow\""), "10 EUR").await;
    assert_eq!(busy.status(), 409);
    let retry_after: u64 = busy.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (29..=30).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    assert_eq!(first.await.unwrap(), 201);
}

/// With `cancel_with_client`, a client that gives up cancels its handler: the key stays
/// in progress (its lease has not lapsed), so the retry gets 409 and the handler never
/// finished.
#[tokio::test]
async fn a_layer_that_cancels_with_its_client_stops_the_handler() {
    let payments = Payments {
        delay: Duration::from_millis(400),
        ..Payments::default()
    };
    let layer = IdempotencyLayer::new(engine())
        .global_keys()
        .cancel_with_client();
    let server = serve(app(layer, payments.clone())).await;
    give_up(&server.url, "\"cancelled\"").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let retry = pay(&server.url, Some("\"cancelled\""), "10 EUR").await;
    assert_eq!(problem(retry).await, (409, "InProgress".to_owned()));
}

/// A compressed response is replayed as the same representation: its
/// `Content-Encoding` (and the other representation headers) are recorded by default,
/// so a client never reads gzip bytes as plain text.
#[tokio::test]
async fn a_compressed_response_is_replayed_with_its_content_encoding() {
    let app = Router::new()
        .route(
            "/payments",
            post(|| async {
                let mut headers = HeaderMap::new();
                headers.insert("content-encoding", HeaderValue::from_static("gzip"));
                headers.insert("content-type", HeaderValue::from_static("application/json"));
                headers.insert("etag", HeaderValue::from_static("\"v1\""));
                headers.insert("vary", HeaderValue::from_static("accept-encoding"));
                // Bytes as a compression layer would have written them.
                (
                    StatusCode::CREATED,
                    headers,
                    vec![0x1f_u8, 0x8b, 0x08, 0x00, 0x01],
                )
            }),
        )
        .layer(IdempotencyLayer::new(engine()).global_keys());
    let server = serve(app).await;
    // A client that does not decode (it sends no Accept-Encoding: any coding is
    // acceptable), to compare the bytes as sent.
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let first = pay_with(&raw, &server.url, Some("\"gz\""), "10 EUR").await;
    let first_body = first.bytes().await.unwrap();
    let replay = pay_with(&raw, &server.url, Some("\"gz\""), "10 EUR").await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    for (name, value) in [
        ("content-encoding", "gzip"),
        ("etag", "\"v1\""),
        ("vary", "accept-encoding"),
    ] {
        assert_eq!(replay.headers()[name], value, "{name}");
    }
    assert_eq!(replay.bytes().await.unwrap(), first_body);
}

/// A response body that fails after the handler ran does not release the key: the
/// handler's effect happened, so the record says "not stored" and the retry does not
/// run it again (it used to be released, and the retry ran the handler a second time).
/// The head was sent when the handler answered (the body streams), so the first
/// caller sees its body cut.
#[tokio::test]
async fn a_response_body_that_fails_after_the_handler_ran_is_recorded_not_run_again() {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// One chunk, then an error.
    struct Failing(bool);
    impl http_body::Body for Failing {
        type Data = bytes::Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
            if self.0 {
                return Poll::Ready(Some(Err(std::io::Error::other("the body failed"))));
            }
            self.0 = true;
            Poll::Ready(Some(Ok(http_body::Frame::data(bytes::Bytes::from_static(
                b"partial",
            )))))
        }
    }

    let runs = Arc::new(AtomicUsize::new(0));
    let handler_runs = runs.clone();
    let app = Router::new()
        .route(
            "/payments",
            post(move || {
                let runs = handler_runs.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::CREATED, axum::body::Body::new(Failing(false)))
                }
            }),
        )
        .layer(IdempotencyLayer::new(engine()).global_keys());
    let server = serve(app).await;
    let first = reqwest::Client::new()
        .post(format!("{}/payments", server.url))
        .header("idempotency-key", "\"body-fails\"")
        .body("10 EUR")
        .send()
        .await;
    // The head and the failed body go out together: the response is cut, before its
    // head was flushed or after.
    match first {
        Ok(first) => assert!(first.bytes().await.is_err(), "the body is cut"),
        Err(error) => assert!(error.is_request(), "{error}"),
    }
    let retry = pay(&server.url, Some("\"body-fails\""), "10 EUR").await;
    assert_eq!(problem(retry).await, (410, "ResponseNotStored".to_owned()));
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the handler ran once");
}

/// Downstream keys survive what changes between a crash and its re-run: the default
/// label has no scheme, host or port (the same path on another host gets the same key);
/// and with idem disabled the keys are still sent, from the request's key, so a
/// duplicate request never reaches the downstream API without one.
#[tokio::test]
async fn downstream_keys_ignore_the_host_and_survive_a_disabled_engine() {
    let (bank, seen) = downstream().await;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(IdempotencyKeyMiddleware::new())
        .build();
    let port = bank.url.rsplit_once(':').unwrap().1.to_owned();
    let handler = {
        let client = client.clone();
        move || {
            let (client, port) = (client.clone(), port.clone());
            async move {
                // The provider's address as configured before and after a change.
                for host in ["127.0.0.1", "localhost"] {
                    client
                        .post(format!("http://{host}:{port}/charge"))
                        .send()
                        .await
                        .unwrap();
                }
                (StatusCode::CREATED, "paid")
            }
        }
    };
    let disabled = Engine::builder(MemoryStore::new())
        .disabled(true)
        .build()
        .unwrap();
    for engine in [engine(), disabled] {
        seen.lock().unwrap().clear();
        let app = Router::new()
            .route("/pay", post(handler.clone()))
            .layer(IdempotencyLayer::new(engine).global_keys());
        let server = serve(app).await;
        for _ in 0..2 {
            reqwest::Client::new()
                .post(format!("{}/pay", server.url))
                .header("idempotency-key", "order-8")
                .send()
                .await
                .unwrap();
        }
        let keys = seen.lock().unwrap().clone();
        assert!(!keys.contains_key("-"), "every request had a key: {keys:?}");
        assert_eq!(keys.len(), 1, "one key for both hosts: {keys:?}");
    }
}

/// Recorded responses are kept 24 hours by default (the engine's 1 h default is short
/// for client retries), or as long as `retention` says.
#[tokio::test]
async fn responses_are_kept_a_day_by_default_or_as_configured() {
    let hour_ms = 3_600_000_u64;
    for (layer_retention, expected_hours) in [(None, 24), (Some(2), 2)] {
        let engine = engine();
        let mut layer = IdempotencyLayer::new(engine.clone()).global_keys();
        if let Some(hours) = layer_retention {
            layer = layer.retention(Duration::from_secs(hours * 3600));
        }
        let server = serve(app(layer, Payments::default())).await;
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert_eq!(
            pay(&server.url, Some("\"kept\""), "1 EUR").await.status(),
            201
        );
        let id = engine.record_id("http", "kept").unwrap();
        let record = engine.store().read(&id).await.unwrap().expect("recorded");
        let kept_ms = record.expires_at_s * 1000 - before;
        assert!(
            kept_ms >= expected_hours * hour_ms && kept_ms <= expected_hours * hour_ms + 60_000,
            "kept {kept_ms} ms, expected {expected_hours} h"
        );
    }
}

/// What a scripted streaming handler's body does next.
enum Step {
    Chunk(&'static str),
    Panic,
    End,
}

/// A handler whose response body streams what the test scripts, one step at a time
/// (as server-sent events with `sse`); it counts its runs and tells when its body is
/// dropped.
#[derive(Clone)]
struct Scripted {
    runs: Arc<AtomicUsize>,
    steps: Arc<Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Step>>>>,
    dropped: Arc<tokio::sync::Notify>,
    sse: bool,
}

/// Tells the test when the handler's body is dropped.
struct Dropped(Arc<tokio::sync::Notify>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

async fn scripted_handler(State(scripted): State<Scripted>) -> axum::response::Response {
    use futures_util::StreamExt as _;
    scripted.runs.fetch_add(1, Ordering::SeqCst);
    let steps = scripted.steps.lock().unwrap().take().expect("run once");
    let dropped = Dropped(scripted.dropped.clone());
    let chunks = futures_util::stream::unfold((steps, dropped), |(mut steps, dropped)| async {
        match steps.recv().await? {
            Step::Chunk(chunk) => {
                Some((Ok::<_, std::convert::Infallible>(chunk), (steps, dropped)))
            }
            Step::Panic => panic!("the handler's stream panics"),
            Step::End => None,
        }
    });
    if scripted.sse {
        let events =
            chunks.map(|chunk| chunk.map(|data| axum::response::sse::Event::default().data(data)));
        (StatusCode::CREATED, axum::response::sse::Sse::new(events)).into_response()
    } else {
        (StatusCode::CREATED, axum::body::Body::from_stream(chunks)).into_response()
    }
}

/// A server whose `/stream` runs a scripted handler under `layer`, and the sender of
/// its steps.
async fn scripted(
    layer: IdempotencyLayer,
    sse: bool,
) -> (Server, Scripted, tokio::sync::mpsc::UnboundedSender<Step>) {
    let (steps, script) = tokio::sync::mpsc::unbounded_channel();
    let scripted = Scripted {
        runs: Arc::default(),
        steps: Arc::new(Mutex::new(Some(script))),
        dropped: Arc::default(),
        sse,
    };
    let app = Router::new()
        .route("/stream", post(scripted_handler))
        .with_state(scripted.clone())
        .layer(layer);
    (serve(app).await, scripted, steps)
}

/// Sends a request to `/stream`; a head that never comes (the layer waiting for the
/// body's end) fails the test instead of blocking it.
async fn post_stream(url: &str, key: &str) -> reqwest::Response {
    let sending = reqwest::Client::new()
        .post(format!("{url}/stream"))
        .header("idempotency-key", key)
        .send();
    tokio::time::timeout(Duration::from_secs(10), sending)
        .await
        .expect("the head came")
        .unwrap()
}

/// Reads `response`'s body until it has `until` at its end; a hang (the body never
/// gets there) fails the test instead of blocking it.
async fn read_until(response: &mut reqwest::Response, read: &mut String, until: &str) {
    let reading = async {
        while !read.ends_with(until) {
            let chunk = response.chunk().await.unwrap().expect("the body goes on");
            read.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(10), reading)
        .await
        .unwrap_or_else(|_| panic!("the body never got to {until:?}"));
}

/// Server-sent events pass through the layer as the handler produces them: the client
/// reads the first event while the handler has not produced the second (the layer used
/// to read the body whole first, so nothing arrived); a duplicate meanwhile is told the
/// first is in progress; once the stream ends, the retry replays the whole stream.
#[tokio::test]
async fn server_sent_events_stream_through_the_layer_and_are_replayed_whole() {
    let (server, scripted, steps) =
        scripted(IdempotencyLayer::new(engine()).global_keys(), true).await;
    steps.send(Step::Chunk("first")).unwrap();
    let mut first = post_stream(&server.url, "\"sse\"").await;
    assert_eq!(first.status(), 201);
    assert_eq!(first.headers()["content-type"], "text/event-stream");
    let mut events = String::new();
    read_until(&mut first, &mut events, "data: first\n\n").await;

    let duplicate = post_stream(&server.url, "\"sse\"").await;
    assert_eq!(problem(duplicate).await, (409, "InProgress".to_owned()));

    steps.send(Step::Chunk("second")).unwrap();
    read_until(&mut first, &mut events, "data: second\n\n").await;
    steps.send(Step::End).unwrap();
    assert!(first.chunk().await.unwrap().is_none(), "the stream ended");
    assert_eq!(events, "data: first\n\ndata: second\n\n");

    let retry = post_stream(&server.url, "\"sse\"").await;
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.headers()["content-type"], "text/event-stream");
    assert_eq!(retry.text().await.unwrap(), events);
    assert_eq!(scripted.runs.load(Ordering::SeqCst), 1);
}

/// A stream over `max_body_bytes` reaches its client whole (the copy stops at the
/// limit, the stream does not), and the record is complete as soon as the copy passes
/// the limit: a retry while the stream still goes on gets 410 `response-not-stored`,
/// not 409, nor a truncated body.
#[tokio::test]
async fn a_stream_over_the_limit_goes_on_and_is_recorded_not_stored_at_the_limit() {
    let layer = IdempotencyLayer::new(engine())
        .global_keys()
        .max_body_bytes(10);
    let (server, scripted, steps) = scripted(layer, false).await;
    steps.send(Step::Chunk("12345678")).unwrap();
    steps.send(Step::Chunk("abcdefgh")).unwrap();
    let mut first = post_stream(&server.url, "\"large\"").await;
    let mut body = String::new();
    read_until(&mut first, &mut body, "abcdefgh").await;

    let retry = post_stream(&server.url, "\"large\"").await;
    assert_eq!(problem(retry).await, (410, "ResponseNotStored".to_owned()));

    steps.send(Step::Chunk("-the end")).unwrap();
    steps.send(Step::End).unwrap();
    read_until(&mut first, &mut body, "-the end").await;
    assert!(first.chunk().await.unwrap().is_none());
    assert_eq!(body, "12345678abcdefgh-the end");
    assert_eq!(scripted.runs.load(Ordering::SeqCst), 1);
}

/// A client that reads the stream's first chunk, `read, `, and leaves; the handler
/// then streams `unread, ` and `unread too, ` to the closed connection (so the server
/// sees its client gone).
async fn leave_mid_stream(url: &str, key: &str, steps: &tokio::sync::mpsc::UnboundedSender<Step>) {
    steps.send(Step::Chunk("read, ")).unwrap();
    let mut first = post_stream(url, key).await;
    read_until(&mut first, &mut String::new(), "read, ").await;
    drop(first);
    for chunk in ["unread, ", "unread too, "] {
        tokio::time::sleep(Duration::from_millis(100)).await;
        steps.send(Step::Chunk(chunk)).unwrap();
    }
}

/// A client that leaves mid-stream leaves the rest of the body to the layer, which
/// reads it on for the record: the handler's stream ends after the client left, and
/// the retry replays all of it (not the part the client read, and not 410).
#[tokio::test]
async fn a_client_that_leaves_mid_stream_gets_the_whole_stream_on_its_retry() {
    let layer = IdempotencyLayer::new(engine())
        .global_keys()
        .wait(Duration::from_secs(10));
    let (server, scripted, steps) = scripted(layer, false).await;
    leave_mid_stream(&server.url, "\"left\"", &steps).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    steps.send(Step::Chunk("the end")).unwrap();
    steps.send(Step::End).unwrap();
    let retry = post_stream(&server.url, "\"left\"").await;
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(
        retry.text().await.unwrap(),
        "read, unread, unread too, the end"
    );
    assert_eq!(scripted.runs.load(Ordering::SeqCst), 1);
}

/// A stream whose client left and that does not end within `drain_timeout` is dropped
/// (the handler's stream sees it), and recorded "not stored": the retry gets 410, never
/// the part that was read as if it were whole, and the handler does not run again.
#[tokio::test]
async fn a_stream_whose_client_left_is_dropped_after_the_drain_timeout_and_not_stored() {
    let layer = IdempotencyLayer::new(engine())
        .global_keys()
        .drain_timeout(Duration::from_millis(300))
        .wait(Duration::from_secs(10));
    let (server, scripted, steps) = scripted(layer, false).await;
    leave_mid_stream(&server.url, "\"dropped\"", &steps).await;
    // The stream never ends; the layer drops it.
    tokio::time::timeout(Duration::from_secs(10), scripted.dropped.notified())
        .await
        .expect("the layer dropped the stream");
    let retry = post_stream(&server.url, "\"dropped\"").await;
    assert_eq!(problem(retry).await, (410, "ResponseNotStored".to_owned()));
    assert_eq!(scripted.runs.load(Ordering::SeqCst), 1);
    drop(steps);
}

/// A handler whose stream panics after its head was sent: the client's stream ends in
/// an error (it cannot become a 500 any more), the record says "not stored", and the
/// retry gets 410 without running the handler again.
#[tokio::test]
async fn a_stream_that_panics_after_its_head_ends_the_stream_and_is_not_stored() {
    let (server, scripted, steps) =
        scripted(IdempotencyLayer::new(engine()).global_keys(), false).await;
    steps.send(Step::Chunk("partial")).unwrap();
    let mut first = post_stream(&server.url, "\"panics\"").await;
    assert_eq!(first.status(), 201);
    read_until(&mut first, &mut String::new(), "partial").await;
    steps.send(Step::Panic).unwrap();
    assert!(first.chunk().await.is_err(), "the stream ends in an error");
    let retry = post_stream(&server.url, "\"panics\"").await;
    assert_eq!(problem(retry).await, (410, "ResponseNotStored".to_owned()));
    assert_eq!(scripted.runs.load(Ordering::SeqCst), 1);
}

/// Without a tokio runtime (another executor), whose timers the engine's heartbeats
/// need, the layer refuses a guarded request before taking its key: a 500 problem, the
/// handler not run, the key free for a server that has a runtime. (It used to run the
/// handler and panic at its first wait, the key held and no answer given.)
#[test]
fn without_a_tokio_runtime_a_guarded_request_is_refused_before_its_key_is_taken() {
    use tower::{Layer as _, ServiceExt as _};
    let runs = Arc::new(AtomicUsize::new(0));
    let handler_runs = runs.clone();
    let service = IdempotencyLayer::new(engine())
        .global_keys()
        .layer(tower::service_fn(
            move |_: axum::http::Request<axum::body::Body>| {
                handler_runs.fetch_add(1, Ordering::SeqCst);
                async {
                    // One wait: the engine's heartbeat timer is armed.
                    tokio::task::yield_now().await;
                    Ok::<_, std::convert::Infallible>(axum::http::Response::new(
                        axum::body::Body::from("paid"),
                    ))
                }
            },
        ));
    let request = || {
        axum::http::Request::post("/payments")
            .header("idempotency-key", "\"no-runtime\"")
            .body(axum::body::Body::from("10 EUR"))
            .unwrap()
    };
    let response = futures_executor::block_on(service.clone().oneshot(request())).unwrap();
    assert_eq!(response.status(), 500);
    let body = futures_executor::block_on(http_body_util::BodyExt::collect(response.into_body()))
        .unwrap()
        .to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("variant.RuntimeMissing"),
        "{body:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the handler did not run");
    // On a runtime, the same key is free: its handler runs, once.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let response = runtime.block_on(service.oneshot(request())).unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// Compression and the layer, with tower-http's `CompressionLayer` and a client that
/// decodes gzip. Outside the layer (as the docs recommend), the record is the plain
/// body, compressed anew for the replay, which decodes to the same bytes as the first
/// response. Inside it, the record is the gzip body with its `Content-Encoding`,
/// replayed to a retry that accepts gzip (decoding to the same bytes) and answered 406
/// `encoding-not-acceptable` to one that does not (never gzip bytes it cannot read).
#[tokio::test]
async fn a_compressed_replay_decodes_to_the_first_bytes_and_goes_only_to_who_accepts_it() {
    use tower_http::compression::CompressionLayer;
    let json = serde_json::json!({ "payment": 1, "note": "x".repeat(2000) }).to_string();
    let body = json.clone();
    let payments = Router::new().route(
        "/payments",
        post(move || async move {
            (
                StatusCode::CREATED,
                [("content-type", "application/json")],
                body,
            )
        }),
    );
    let gzip = reqwest::Client::new();
    let plain = reqwest::Client::builder().no_gzip().build().unwrap();

    let outside = payments
        .clone()
        .layer(IdempotencyLayer::new(engine()).global_keys())
        .layer(CompressionLayer::new());
    let server = serve(outside).await;
    let first = pay_with(&gzip, &server.url, Some("\"outside\""), "10 EUR").await;
    assert_eq!(first.text().await.unwrap(), json);
    let compressed = plain
        .post(format!("{}/payments", server.url))
        .header("idempotency-key", "\"outside\"")
        .header("accept-encoding", "gzip")
        .body("10 EUR")
        .send()
        .await
        .unwrap();
    assert_eq!(compressed.headers()["content-encoding"], "gzip");
    assert_ne!(compressed.bytes().await.unwrap(), json.as_bytes());
    let replay = pay_with(&gzip, &server.url, Some("\"outside\""), "10 EUR").await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.text().await.unwrap(), json);

    let inside = payments
        .layer(CompressionLayer::new())
        .layer(IdempotencyLayer::new(engine()).global_keys());
    let server = serve(inside).await;
    let first = pay_with(&gzip, &server.url, Some("\"inside\""), "10 EUR").await;
    assert_eq!(first.text().await.unwrap(), json);
    let replay = pay_with(&gzip, &server.url, Some("\"inside\""), "10 EUR").await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.text().await.unwrap(), json);
    let identity = plain
        .post(format!("{}/payments", server.url))
        .header("idempotency-key", "\"inside\"")
        .header("accept-encoding", "identity")
        .body("10 EUR")
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem(identity).await,
        (406, "EncodingNotAcceptable".to_owned())
    );
}

/// A 300 ms lease, heartbeats for 600 ms (the engine's max_duration).
fn short_engine() -> Engine {
    Engine::builder(MemoryStore::new())
        .lease(Duration::from_millis(300))
        .max_duration(Duration::from_millis(600))
        .store_timeout(Duration::from_millis(100))
        .build()
        .unwrap()
}

/// A handler that counts its runs, answers after `head_after`, then streams a chunk
/// every 50 ms, forever.
fn endless(runs: Arc<AtomicUsize>, head_after: Duration) -> Router {
    Router::new().route(
        "/stream",
        post(move || {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(head_after).await;
                let chunks = futures_util::stream::unfold((), |()| async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Some((Ok::<_, std::convert::Infallible>("tick\n"), ()))
                });
                (StatusCode::CREATED, axum::body::Body::from_stream(chunks)).into_response()
            }
        }),
    )
}

/// A stream still going at the engine's `max_duration` (heartbeats stop then) is
/// recorded "not stored" before its lease lapses, counted from the call's start: a
/// handler that takes 500 ms to answer, then streams on, is recorded at 0.6 s, and a
/// duplicate at 1.0 s meets the record, not a lapsed lease. (Review of #24: the
/// layer's deadline counted from the head, 1.1 s, after the lease lapsed by 0.9 s,
/// and the duplicate ran the handler again.)
#[tokio::test]
async fn a_slow_head_then_a_long_stream_is_recorded_before_the_lease_lapses() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = IdempotencyLayer::new(short_engine()).global_keys();
    let server = serve(endless(runs.clone(), Duration::from_millis(500)).layer(layer)).await;
    let started = tokio::time::Instant::now();
    let mut first = post_stream(&server.url, "\"slow-head\"").await;
    assert_eq!(first.status(), 201);
    // Keep reading the first stream, as its client does.
    let reader = tokio::spawn(async move { while let Ok(Some(_)) = first.chunk().await {} });
    tokio::time::sleep_until(started + Duration::from_millis(1000)).await;
    let duplicate = post_stream(&server.url, "\"slow-head\"").await;
    let status = duplicate.status();
    reader.abort();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the handler ran twice for one key (the duplicate got {status})"
    );
}

/// The same deadline through the drain: a client that leaves shortly before
/// max_duration leaves the rest to be drained for `drain_timeout` (5 s here), but never
/// past max_duration, when the heartbeats stop. (Review of #24: the drain ran its whole
/// timeout, the lease lapsed mid-drain and a duplicate ran the handler again.)
#[tokio::test]
async fn a_drain_ends_at_max_duration_before_the_lease_lapses() {
    let runs = Arc::new(AtomicUsize::new(0));
    let layer = IdempotencyLayer::new(short_engine())
        .global_keys()
        .drain_timeout(Duration::from_secs(5));
    let server = serve(endless(runs.clone(), Duration::ZERO).layer(layer)).await;
    let started = tokio::time::Instant::now();
    let mut first = post_stream(&server.url, "\"drained\"").await;
    assert_eq!(first.status(), 201);
    first.chunk().await.unwrap().expect("a first chunk");
    // The client leaves at 0.4 s; the layer drains the endless stream for 5 s.
    tokio::time::sleep_until(started + Duration::from_millis(400)).await;
    drop(first);
    tokio::time::sleep_until(started + Duration::from_millis(1200)).await;
    let duplicate = post_stream(&server.url, "\"drained\"").await;
    let status = duplicate.status();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the handler ran twice for one key (the duplicate got {status})"
    );
}

/// With `cancel_with_client`, a body that declares its `Content-Length` and whose
/// stream ends one poll after its last byte: hyper stops polling the body once it wrote
/// `Content-Length` bytes and drops it without reading its end. The copy is whole once
/// it holds the declared length, so the retry replays it. (Review of #24: the record
/// said "not stored", the rest handed to a zero-timeout drain that gave up at the first
/// `Pending`, and the retry got 410.)
#[tokio::test]
async fn with_cancel_with_client_a_sized_stream_read_whole_is_replayed() {
    sized_stream_read_whole_is_replayed(
        IdempotencyLayer::new(Engine::new(MemoryStore::new()))
            .global_keys()
            .cancel_with_client(),
    )
    .await;
}

/// The same, detached (the default).
#[tokio::test]
async fn detached_a_sized_stream_read_whole_is_replayed() {
    sized_stream_read_whole_is_replayed(
        IdempotencyLayer::new(Engine::new(MemoryStore::new())).global_keys(),
    )
    .await;
}

async fn sized_stream_read_whole_is_replayed(layer: IdempotencyLayer) {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let app = Router::new()
        .route(
            "/stream",
            post(move || {
                let runs = counted.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    let chunks = futures_util::stream::unfold(0, |sent| async move {
                        // The end comes a moment after the last byte (a file's EOF
                        // read, a channel closed by another task).
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        (sent == 0).then_some((Ok::<_, std::convert::Infallible>("hello"), 1))
                    });
                    (
                        StatusCode::CREATED,
                        [("content-length", "5")],
                        axum::body::Body::from_stream(chunks),
                    )
                        .into_response()
                }
            }),
        )
        .layer(layer);
    let server = serve(app).await;
    let first = post_stream(&server.url, "\"sized\"").await;
    assert_eq!(first.status(), 201);
    assert_eq!(
        first.text().await.unwrap(),
        "hello",
        "the client read it whole"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let retry = post_stream(&server.url, "\"sized\"").await;
    let status = retry.status();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        (status.as_u16(), retry.text().await.unwrap()),
        (201, "hello".to_owned()),
        "a response its client read whole is replayed"
    );
}

/// A panicking handler gets a 500 problem, never a closed connection, with
/// `cancel_with_client` too, where the guarded call runs in the request's future and
/// the engine re-raises the panic after releasing the key. (Review of #24: it unwound
/// into the server, which closed the connection without an answer.)
#[tokio::test]
async fn with_cancel_with_client_a_panicking_handler_still_gets_an_answer() {
    let app = Router::new()
        .route(
            "/stream",
            post(|| async {
                if true {
                    panic!("the handler panics");
                }
                "never"
            }),
        )
        .layer(
            IdempotencyLayer::new(Engine::new(MemoryStore::new()))
                .global_keys()
                .cancel_with_client(),
        );
    let server = serve(app).await;
    let answer = reqwest::Client::new()
        .post(format!("{}/stream", server.url))
        .header("idempotency-key", "\"panics\"")
        .send()
        .await;
    assert_eq!(
        answer.map(|response| response.status().as_u16()).ok(),
        Some(500),
        "an HTTP answer, not a closed connection"
    );
}

/// A header value beyond ASCII (a `Location` whose path is UTF-8) is recorded and
/// replayed byte for byte. (Review of #24: only visible ASCII was kept, and the replay
/// had no `Location`.)
#[tokio::test]
async fn a_utf8_header_value_is_replayed_byte_for_byte() {
    let location = "/zahlungen/\u{e4}\u{f6}\u{fc}".as_bytes();
    let app = Router::new()
        .route(
            "/stream",
            post(move || async move {
                let mut headers = HeaderMap::new();
                headers.insert(
                    "location",
                    axum::http::HeaderValue::from_bytes(location).unwrap(),
                );
                (StatusCode::CREATED, headers, "paid")
            }),
        )
        .layer(IdempotencyLayer::new(engine()).global_keys());
    let server = serve(app).await;
    let first = post_stream(&server.url, "\"utf8\"").await;
    assert_eq!(first.headers()["location"].as_bytes(), location);
    let retry = post_stream(&server.url, "\"utf8\"").await;
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.headers()["location"].as_bytes(), location);
}
