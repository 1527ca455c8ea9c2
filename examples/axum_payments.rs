//! A payments API on axum behind `idem_http::IdempotencyLayer`, on the in-memory store.
//!
//! ```sh
//! cargo run -p idem-examples --example axum_payments              # serves on 127.0.0.1:3000
//! cargo run -p idem-examples --example axum_payments -- --demo    # runs the curl session below itself
//! ```
//!
//! The curl session (README, "Over HTTP"):
//!
//! ```sh
//! curl -i localhost:3000/payments -H 'Idempotency-Key: "pay-1"' -H 'X-Tenant: acme' -d '{"cents":1250}'   # 201, runs
//! curl -i localhost:3000/payments -H 'Idempotency-Key: "pay-1"' -H 'X-Tenant: acme' -d '{"cents":1250}'   # 201, Idempotent-Replayed: true
//! curl -i localhost:3000/payments -H 'Idempotency-Key: "pay-1"' -H 'X-Tenant: acme' -d '{"cents":9999}'   # 422 mismatch
//! curl -i localhost:3000/payments -H 'Idempotency-Key: "pay-1"' -H 'X-Tenant: globex' -d '{"cents":9999}' # 201, another tenant
//! curl -i localhost:3000/payments -H 'X-Tenant: acme' -d '{"cents":1250}'                                 # 400 missing-key
//! curl -i 'localhost:3000/payments?slow' -H 'Idempotency-Key: slow-1' -H 'X-Tenant: acme' -d '{}' &       # runs 3 s...
//! curl -i 'localhost:3000/payments?slow' -H 'Idempotency-Key: slow-1' -H 'X-Tenant: acme' -d '{}'         # 409 in-progress, Retry-After
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use idem_core::{Engine, MemoryStore};
use idem_http::IdempotencyLayer;

/// Creates a payment: 201 with its id, `Location` and the amount; `?slow` takes 3 s.
async fn create(
    State(next_id): State<Arc<AtomicU64>>,
    RawQuery(query): RawQuery,
    body: String,
) -> impl IntoResponse {
    if query.as_deref() == Some("slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let id = next_id.fetch_add(1, Ordering::SeqCst);
    let cents = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["cents"].as_u64());
    let payment = serde_json::json!({ "id": id, "cents": cents }).to_string();
    (
        StatusCode::CREATED,
        [
            (header::LOCATION, format!("/payments/{id}")),
            (header::CONTENT_TYPE, "application/json".to_owned()),
        ],
        payment,
    )
}

fn app() -> Router {
    let engine = Engine::new(MemoryStore::new());
    Router::new()
        .route("/payments", post(create))
        .with_state(Arc::new(AtomicU64::new(1)))
        // Keys scoped by tenant: two tenants' keys never meet.
        .layer(
            IdempotencyLayer::new(engine)
                .scope(|request| Some(request.headers.get("x-tenant")?.to_str().ok()?.to_owned())),
        )
}

/// The curl session above, sent by reqwest to a server on an ephemeral port.
async fn demo(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let client = reqwest::Client::new();
    let send = |key: Option<&'static str>,
                tenant: &'static str,
                query: &'static str,
                body: &'static str| {
        let mut request = client
            .post(format!("{url}/payments{query}"))
            .header("x-tenant", tenant)
            .body(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send()
    };
    let show = |what: &str, response: &reqwest::Response| {
        let replayed = response.headers().get("idempotent-replayed").is_some();
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| format!(", Retry-After: {}", v.to_str().unwrap_or("?")));
        println!(
            "{what:<48} {}{}{}",
            response.status(),
            if replayed {
                ", Idempotent-Replayed: true"
            } else {
                ""
            },
            retry.unwrap_or_default()
        );
    };
    for (what, key, tenant, body) in [
        (
            "first request",
            Some("\"pay-1\""),
            "acme",
            r#"{"cents":1250}"#,
        ),
        ("retry", Some("\"pay-1\""), "acme", r#"{"cents":1250}"#),
        (
            "same key, other body",
            Some("\"pay-1\""),
            "acme",
            r#"{"cents":9999}"#,
        ),
        (
            "same key, other tenant",
            Some("\"pay-1\""),
            "globex",
            r#"{"cents":9999}"#,
        ),
        ("no key", None, "acme", r#"{"cents":1250}"#),
    ] {
        let response = send(key, tenant, "", body).await?;
        show(what, &response);
        println!("{:<48} {}", "", response.text().await?);
    }
    let slow = tokio::spawn(send(Some("slow-1"), "acme", "?slow", "{}"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let duplicate = send(Some("slow-1"), "acme", "?slow", "{}").await?;
    show("a retry while the first runs", &duplicate);
    show("the first, once done", &slow.await??);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--demo") {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app()).await });
        return demo(&url).await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("payments on http://127.0.0.1:3000/payments (Ctrl-C stops)");
    axum::serve(listener, app()).await?;
    Ok(())
}
