//! The `Idempotency-Key` header for tower and axum services, on any idem store, and the
//! attempt's token passed downstream by a `reqwest-middleware` middleware.
//!
//! # Server: a tower layer
//! ```
//! use axum::{routing::post, Router};
//! use idem_core::{Engine, MemoryStore};
//! use idem_http::IdempotencyLayer;
//!
//! let engine = Engine::new(MemoryStore::new());
//! let app: Router = Router::new()
//!     .route("/payments", post(|| async { (axum::http::StatusCode::CREATED, "paid") }))
//!     .layer(IdempotencyLayer::new(engine).scope(|request| {
//!         // The tenant, from a header your authentication layer set.
//!         Some(request.headers.get("x-tenant")?.to_str().ok()?.to_owned())
//!     }));
//! # let _ = app;
//! ```
//!
//! A response is recorded as raw bytes (the engine's `bytes` codec: the status and
//! recorded headers as a small JSON head, then the body as sent, never base64), so a
//! record is the body's size plus a few dozen bytes on every store; responses recorded
//! in the earlier form (JSON, the body base64) still replay.
//!
//! For a guarded method (POST and PATCH by default) the layer reads the key from the
//! `Idempotency-Key` header, as the IETF draft (draft-ietf-httpapi-idempotency-key-header)
//! writes it (a structured-field string, `"8e03978e"`, whose RFC 9651 parameters such
//! as `;v=1` are ignored) or as Stripe does (a bare token), at most 255 characters; then:
//!
//! | request | answer |
//! |---|---|
//! | first with this key | the handler runs; its status, `Location`, representation headers (`Content-Type`, `Content-Encoding`, `ETag`, ...) and body (up to 1 MiB) are recorded, and replayed for 24 hours ([`retention`](IdempotencyLayer::retention)) |
//! | a retry | the recorded status, headers and body, plus `Idempotent-Replayed: true`; the handler does not run |
//! | a retry while the first is in progress | 409 `in-progress` with `Retry-After` the time left on the first's lease (or, with [`wait`](IdempotencyLayer::wait), the first's response, marked `Idempotent-Replayed: true`) |
//! | the same key with another method, path, query or body | 422 `mismatch` |
//! | no key (required route) / a key too long or malformed, a list of keys or two `Idempotency-Key` fields | 400 `missing-key` / `key-too-long` / `invalid-key` |
//! | a body over [`max_request_bytes`](IdempotencyLayer::max_request_bytes) (1 MiB) | 413 `request-too-large` |
//! | the store fails before the handler | 503 `store-unavailable` with `Retry-After` |
//! | a retry of a response larger than the limit | 410 `response-not-stored` (the handler does not run again; not 409, which a client following the draft retries) |
//! | a retry whose `Accept-Encoding` does not accept the recorded `Content-Encoding` | 406 `encoding-not-acceptable` (the handler does not run again; put compression outside the layer, see below) |
//! | the handler panics | 500 `handler-panicked`; the key is released, so a retry runs it again |
//! | the handler's response body fails or panics after its head was sent | the stream ends in an error; retries get 410 `response-not-stored` (the handler does not run again) |
//! | the server runs the layer outside a tokio runtime | 500 `runtime-missing`; the handler does not run, the key is not taken |
//!
//! **`Retry-After` on a 409 is an upper bound**, not an estimate: the engine's heartbeats
//! renew a running handler's lease, so the time left on it is nearly always the whole
//! lease (30 s by default) however soon the handler ends. A client that obeys it waits
//! that long; for short handlers, [`wait`](IdempotencyLayer::wait) holds the retry until
//! the first's response instead. On a PostgreSQL store whose transactions hold their
//! keys (`PgStoreBuilder::lock_held(true)`, with [`in_transaction`](IdempotencyLayer::in_transaction))
//! there is no lease: the 409 carries the layer's default `Retry-After`, and
//! [`wait`](IdempotencyLayer::wait) waits on the first's row lock for its commit.
//!
//! **The handler outlives its client.** On a tokio runtime (every axum server), the
//! guarded call runs on a task of its own: a client that times out or disconnects drops
//! only the waiting, while the handler runs to its end and its response is recorded, so
//! the client's retry replays it. (Were it cancelled with the connection, the retry would
//! meet the key in progress for the whole lease, then run the handler a second time.)
//! [`cancel_with_client`](IdempotencyLayer::cancel_with_client) turns this off for
//! handlers that must stop with their client. A handler that outlives its client also outlives the
//! layers outside this one: put a concurrency limit (or a timeout meant to stop
//! handlers) inside it, next to the handler, not outside, or the limit is released when
//! the client leaves while the handler still runs. Graceful shutdown does not wait for
//! such a handler: a runtime dropped under it stops it as a crash would (its lease
//! lapses, and a retry runs it again).
//!
//! **Responses stream.** The handler's response goes to its client as soon as the
//! handler answers, its body passing through as it is produced (server-sent events, a
//! large download), while the layer copies it up to
//! [`max_body_bytes`](IdempotencyLayer::max_body_bytes) for the record. The key stays
//! held, its lease kept by the engine's heartbeats (a duplicate meanwhile gets 409),
//! until the body ends or passes the limit, whichever comes first: then the record
//! completes, with the whole body, or "not stored" for a larger one (whose stream goes
//! on uncut). A body that fails or panics after its head was sent ends the stream in
//! an error, and is recorded "not stored", never as a truncated body. A client that
//! leaves mid-stream leaves the rest to the layer, which reads it for the record for up
//! to [`drain_timeout`](IdempotencyLayer::drain_timeout) (30 s), then drops it
//! ("not stored"), never past the engine's `max_duration` (15 min by default, counted
//! from the call's start; heartbeats stop then): a stream still going then is recorded
//! "not stored" before its lease lapses, and goes on. A body that declares its
//! `Content-Length` is whole once that many bytes are copied. Trailers (gRPC's
//! `grpc-status`, a checksum after the body) reach the first client but are **not
//! recorded**: a replay has none, so do not guard a service whose answer is in its
//! trailers.
//!
//! **Compression goes outside the layer.** Put tower-http's `CompressionLayer` (or any
//! content coding) *outside* `IdempotencyLayer`, so the layer records the plain body and
//! each answer, first or replayed, is compressed anew for the request's own
//! `Accept-Encoding`:
//!
//! ```
//! # use axum::{routing::post, Router};
//! # use idem_core::{Engine, MemoryStore};
//! # use idem_http::IdempotencyLayer;
//! # let engine = Engine::new(MemoryStore::new());
//! let app: Router = Router::new()
//!     .route("/payments", post(|| async { "paid" }))
//!     .layer(IdempotencyLayer::new(engine).global_keys()) // inner: records the plain body
//!     .layer(tower_http::compression::CompressionLayer::new()); // outer: per request
//! # let _ = app;
//! ```
//!
//! In axum, `Router::layer` wraps what came before, so the layer added last is the
//! outer one; in a `tower::ServiceBuilder` the order is the other way round: the first
//! `.layer(..)` is the outer one, so write `ServiceBuilder::new().layer(CompressionLayer::new()).layer(idempotency)`.
//!
//! Compressed inside the layer, the record is the encoded body with its
//! `Content-Encoding`, replayed as it was: a retry whose `Accept-Encoding` allows the
//! coding gets it (decoding to the same bytes as the first response); one that does not
//! gets 406 [`encoding-not-acceptable`](Problem::EncodingNotAcceptable), never bytes it
//! cannot read (the layer does not decode records: their `ETag` belongs to the encoded
//! bytes).
//!
//! **The handler's rows and the record in one transaction.**
//! [`in_transaction`](IdempotencyLayer::in_transaction) runs each guarded call in a
//! transaction of the engine's store (`idem_postgres::PgTransaction`), lent to the
//! handler as a [`RequestTransaction`] (an axum extractor): the rows the handler
//! writes in it and the response the layer records commit together, after the response
//! has ended, or not at all. A server killed mid-handler leaves no rows; a retry runs
//! the handler once (after the lease lapses, or, when the transaction holds the key,
//! `lock_held(true)`, as soon as the database ends the dead server's session) or replays
//! the committed response. In that form the key stays held while the handler keeps its
//! `RequestTransaction`: retries meanwhile get 409 (or wait). The
//! response is read whole before it goes out (it may not be sent before its commit), so
//! it does not stream. A 4xx is recorded like a success, so its rows commit (undo them
//! in a savepoint if they must not); a 5xx, a service error or a panic rolls them back
//! and releases the key. Each request in progress holds one pooled connection for its
//! whole handler, and the heartbeats need another now and then: size the store's pool
//! for the concurrent guarded requests plus headroom, or duplicates and other keys wait
//! for a connection and get 503 `store-unavailable`. The store's table must exist
//! (`PgStore::migrate`, as for any use of the store). The glue is generic over idem's
//! store `Transaction` trait, so this crate does not depend on sqlx, nor idem-postgres
//! on HTTP.
//!
//! Every error is an RFC 9457 problem (`application/problem+json`) whose `type` names
//! the case ([`Problem`]). **Server errors (5xx) are not recorded** by default: the key
//! is released, so a retry runs the handler again
//! ([`record_server_errors`](IdempotencyLayer::record_server_errors)); client errors
//! (4xx) are recorded like successes. A handler whose service fails (its `Err`) releases
//! the key too.
//!
//! Keys are scoped by [`scope`](IdempotencyLayer::scope) (tenant, account, user), so
//! two tenants' keys never meet; a layer without a scope does not compile unless
//! [`global_keys`](IdempotencyLayer::global_keys) says so explicitly. Requests of
//! other methods, and requests without a key on an [`optional`](IdempotencyLayer::optional)
//! route, pass through unguarded.
//!
//! # Client: the token passed downstream
//! Inside a guarded handler, [`IdempotencyKeyMiddleware`] (feature `client`, on by
//! default) gives each downstream request an `Idempotency-Key` derived from the
//! attempt's token: a handler that crashes after its downstream call and runs again
//! sends the same key, and the downstream API deduplicates it.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "client")]
mod client;
mod encoding;
mod fingerprint;
mod guard;
pub mod key;
mod layer;
mod problem;
mod record;
mod stream;
mod transaction;

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub use client::{downstream_key, IdempotencyKeyMiddleware, Label};
pub use layer::{
    Body, BoxError, IdempotencyLayer, Idempotent, ScopeChosen, ScopeNotChosen,
    DEFAULT_DRAIN_TIMEOUT, DEFAULT_RETENTION,
};
pub use problem::{error_response, Problem};
pub use record::REPLAYED;
pub use transaction::{RequestTransaction, TransactionMissing};
