//! The tower layer: a request with an `Idempotency-Key` runs its handler at most once
//! per key; a retry gets the recorded response back. Here, the layer's configuration
//! and the tower `Layer` and `Service` plumbing; a request's path through them is in
//! `guard.rs`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::request::Parts;
use http::{Method, Request, Response};
use http_body::Body as HttpBody;
use http_body_util::combinators::UnsyncBoxBody;
use idem_core::Engine;
use tower_layer::Layer;
use tower_service::Service;

use crate::fingerprint;
use crate::guard::guard;
use crate::transaction::{self, InTransaction};

/// The error type of bodies: any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the layer gives: the handler's, a replayed one or a
/// problem.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

type ScopeFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;
type FingerprintFn = dyn Fn(&Parts, &[u8]) -> Vec<u8> + Send + Sync;

/// The layer: see the [crate documentation](crate) for what it does.
///
/// It becomes a tower `Layer` once its keys' scope is chosen: [`scope`](Self::scope)
/// (by tenant, account or user), or [`global_keys`](Self::global_keys) said explicitly.
/// A layer built without either does not compile (`IdempotencyLayer<ScopeNotChosen>`
/// is not a `Layer`): with global keys, one client's retry that reuses another
/// client's key receives that client's recorded response. Keys scoped to the client
/// or the resource owner keep one client from ever receiving another's.
///
/// ```compile_fail
/// // Refused: neither `scope` nor `global_keys`.
/// use idem_core::{Engine, MemoryStore};
/// let app: axum::Router = axum::Router::new()
///     .layer(idem_http::IdempotencyLayer::new(Engine::new(MemoryStore::new())));
/// ```
///
/// ```
/// use idem_core::{Engine, MemoryStore};
/// let app: axum::Router = axum::Router::new()
///     .layer(idem_http::IdempotencyLayer::new(Engine::new(MemoryStore::new())).global_keys());
/// # let _ = app;
/// ```
#[derive(Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct IdempotencyLayer<Keys = ScopeChosen> {
    config: Arc<Config>,
    keys: std::marker::PhantomData<Keys>,
}

/// A layer whose keys' scope is not chosen yet: call [`IdempotencyLayer::scope`] or
/// [`IdempotencyLayer::global_keys`] to make it a `Layer`.
#[derive(Debug, Clone, Copy)]
pub struct ScopeNotChosen;

/// A layer whose keys are scoped, or global by an explicit
/// [`IdempotencyLayer::global_keys`]: a tower `Layer`.
#[derive(Debug, Clone, Copy)]
pub struct ScopeChosen;

/// The layer's configuration, shared by every request's path.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) engine: Engine,
    pub(crate) namespace: String,
    pub(crate) header: HeaderName,
    pub(crate) required: bool,
    pub(crate) methods: Vec<Method>,
    pub(crate) scope: Option<Arc<ScopeFn>>,
    pub(crate) fingerprint: Arc<FingerprintFn>,
    pub(crate) record_headers: Vec<HeaderName>,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_request_bytes: usize,
    pub(crate) wait: Option<Duration>,
    pub(crate) retention: Duration,
    pub(crate) record_server_errors: bool,
    pub(crate) retry_after_s: u64,
    pub(crate) detached: bool,
    pub(crate) drain_timeout: Duration,
    /// The store transaction each guarded call runs in, if any.
    pub(crate) transaction: Option<Arc<dyn InTransaction>>,
}

impl<Keys> std::fmt::Debug for IdempotencyLayer<Keys> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.config;
        f.debug_struct("IdempotencyLayer")
            .field("namespace", &c.namespace)
            .field("header", &c.header)
            .field("required", &c.required)
            .field("methods", &c.methods)
            .field("scoped", &c.scope.is_some())
            .field("record_headers", &c.record_headers)
            .field("max_body_bytes", &c.max_body_bytes)
            .field("max_request_bytes", &c.max_request_bytes)
            .field("wait", &c.wait)
            .field("retention", &c.retention)
            .field("record_server_errors", &c.record_server_errors)
            .field("detached", &c.detached)
            .field("drain_timeout", &c.drain_timeout)
            .field("in_transaction", &c.transaction.is_some())
            .finish_non_exhaustive()
    }
}

/// How long a recorded response is replayed by default: 24 hours, as Stripe keeps its
/// keys (the engine's 1 h default is short for clients that retry later).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a streamed response whose client has gone is still read for its record
/// by default: 30 seconds (see [`IdempotencyLayer::drain_timeout`]).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The response headers recorded by default: `Location` and the representation
/// headers (RFC 9110 §8), so a replay is the same representation as the first response
/// (a compressed body keeps its `Content-Encoding`).
const REPRESENTATION_HEADERS: [HeaderName; 10] = [
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
    header::CONTENT_LOCATION,
    header::LOCATION,
    header::ETAG,
    header::LAST_MODIFIED,
    header::VARY,
    header::CACHE_CONTROL,
    header::EXPIRES,
];

impl IdempotencyLayer<ScopeNotChosen> {
    /// A layer over `engine` with the defaults: the `Idempotency-Key` header, required,
    /// on POST and PATCH; the keys' scope still to choose ([`scope`](IdempotencyLayer::scope)
    /// or [`global_keys`](IdempotencyLayer::global_keys): the layer is a `Layer` only
    /// then); request
    /// bodies up to 1 MiB; the default fingerprint; `Location` and the representation
    /// headers (`Content-Type`, `Content-Encoding`, `Content-Language`,
    /// `Content-Location`, `ETag`, `Last-Modified`, `Vary`, `Cache-Control`, `Expires`)
    /// recorded with the status and the body up to 1 MiB; server errors not recorded; no
    /// waiting; each guarded handler on a task of its own, so a client that gives up does
    /// not cancel it (see [`cancel_with_client`](IdempotencyLayer::cancel_with_client)).
    pub fn new(engine: Engine) -> IdempotencyLayer<ScopeNotChosen> {
        IdempotencyLayer {
            config: Arc::new(Config {
                engine,
                namespace: "http".to_owned(),
                header: HeaderName::from_static("idempotency-key"),
                required: true,
                methods: vec![Method::POST, Method::PATCH],
                scope: None,
                fingerprint: Arc::new(fingerprint::default_fingerprint),
                record_headers: REPRESENTATION_HEADERS.to_vec(),
                max_body_bytes: 1024 * 1024,
                max_request_bytes: 1024 * 1024,
                wait: None,
                retention: DEFAULT_RETENTION,
                record_server_errors: false,
                retry_after_s: 1,
                detached: true,
                drain_timeout: DEFAULT_DRAIN_TIMEOUT,
                transaction: None,
            }),
            keys: std::marker::PhantomData,
        }
    }
}

impl<Keys> IdempotencyLayer<Keys> {
    fn with(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(Arc::make_mut(&mut self.config));
        self
    }

    /// The records' namespace (`http` by default): give each layer its own when routes
    /// must not share keys.
    pub fn namespace(self, namespace: impl Into<String>) -> Self {
        let namespace = namespace.into();
        self.with(|c| c.namespace = namespace)
    }

    /// The header the key comes in (`Idempotency-Key` by default).
    pub fn header(self, header: HeaderName) -> Self {
        self.with(|c| c.header = header)
    }

    /// Lets requests without a key pass through **unguarded** (their handler runs every
    /// time) instead of answering 400.
    pub fn optional(self) -> Self {
        self.with(|c| c.required = false)
    }

    /// Runs each guarded handler in the request's own future, so that a client that
    /// gives up (a timeout, a closed connection) cancels it mid-way, for handlers that
    /// must stop with their client. The key then stays in progress until its lease
    /// lapses (a retry meanwhile gets 409), after which a retry runs the handler again;
    /// a panicking handler closes the connection. By default each guarded handler runs
    /// on a task of its own (on a tokio runtime) and ends whatever its client does: its
    /// response is recorded and the client's retry replays it.
    pub fn cancel_with_client(self) -> Self {
        self.with(|c| c.detached = false)
    }

    /// How long a guarded response's body is still read, for its record, once its client
    /// has gone ([`DEFAULT_DRAIN_TIMEOUT`], 30 seconds, by default). The body streams to
    /// the client as the handler produces it; a client that leaves before its end leaves
    /// the rest to the layer, which reads it on: if it ends (or passes
    /// [`max_body_bytes`](Self::max_body_bytes)) within `timeout`, it is recorded as if
    /// the client had read it, and the retry replays it; otherwise it is dropped and the
    /// record says "not stored" (retries get 410; the handler does not run again). With
    /// [`cancel_with_client`](Self::cancel_with_client) it is dropped at once.
    pub fn drain_timeout(self, timeout: Duration) -> Self {
        self.with(|c| c.drain_timeout = timeout)
    }

    /// The methods that are guarded (POST and PATCH by default); others pass through.
    pub fn methods(self, methods: impl IntoIterator<Item = Method>) -> Self {
        let methods = methods.into_iter().collect();
        self.with(|c| c.methods = methods)
    }

    /// Scopes keys by what `scope` finds in the request (the tenant, the account, the
    /// authenticated user): two scopes' keys never meet. A request where it finds
    /// nothing gets 400. A layer needs this or [`global_keys`](Self::global_keys), said
    /// explicitly: with global keys, two clients that send the same key share one
    /// record.
    pub fn scope(
        self,
        scope: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    ) -> IdempotencyLayer<ScopeChosen> {
        self.with(|c| c.scope = Some(Arc::new(scope))).chosen()
    }

    /// Keys are **global**: two clients that send the same key share one record, and
    /// the second gets the first's recorded response (or 422 if its request differs).
    /// Say it only where every client is trusted with every other's responses (one
    /// client per server, or keys that are unguessable and never shared); otherwise
    /// [`scope`](Self::scope) the keys.
    pub fn global_keys(self) -> IdempotencyLayer<ScopeChosen> {
        self.with(|c| c.scope = None).chosen()
    }

    fn chosen(self) -> IdempotencyLayer<ScopeChosen> {
        IdempotencyLayer {
            config: self.config,
            keys: std::marker::PhantomData,
        }
    }

    /// Replaces the fingerprint (by default SHA-256 over method, path, query and body):
    /// a retry whose fingerprint differs from the first request's gets 422.
    pub fn fingerprint(
        self,
        fingerprint: impl Fn(&Parts, &[u8]) -> Vec<u8> + Send + Sync + 'static,
    ) -> Self {
        self.with(|c| c.fingerprint = Arc::new(fingerprint))
    }

    /// The response headers recorded and replayed (`Location` and the representation
    /// headers by default: see [`new`](IdempotencyLayer::new)); the first response keeps
    /// all of its own.
    pub fn record_headers(self, headers: impl IntoIterator<Item = HeaderName>) -> Self {
        let headers = headers.into_iter().collect();
        self.with(|c| c.record_headers = headers)
    }

    /// The largest response body recorded (1 MiB by default). A larger response goes to
    /// the first caller whole, streamed (the copy stops at the limit, the stream does
    /// not); its retries get 410 `response-not-stored`, and the handler does not run
    /// again until the record expires.
    pub fn max_body_bytes(self, max_body_bytes: usize) -> Self {
        self.with(|c| c.max_body_bytes = max_body_bytes)
    }

    /// The largest request body a guarded request may have (1 MiB by default): the body
    /// is read whole, to fingerprint it, before the handler runs. A larger one gets 413
    /// `request-too-large` and the handler does not run.
    pub fn max_request_bytes(self, max_request_bytes: usize) -> Self {
        self.with(|c| c.max_request_bytes = max_request_bytes)
    }

    /// How long a recorded response is replayed ([`DEFAULT_RETENTION`], 24 hours, by
    /// default), counted from when the handler answered: the retention the IETF draft
    /// asks servers to publish for their keys. Past it, the same key runs the handler
    /// again.
    pub fn retention(self, retention: Duration) -> Self {
        self.with(|c| c.retention = retention)
    }

    /// A retry that meets the first request in progress waits up to `wait` for its
    /// response instead of getting 409 at once.
    pub fn wait(self, wait: Duration) -> Self {
        self.with(|c| c.wait = Some(wait))
    }

    /// Runs each guarded call in a transaction of the engine's store, of type `Tx`
    /// (`idem_postgres::PgTransaction`), lent to the handler as a
    /// [`RequestTransaction<Tx>`](crate::RequestTransaction): the handler writes its rows
    /// in it, and the layer records its response in it and commits both together (the
    /// engine's [`run_in_transaction`](idem_core::Call::run_in_transaction)). One request,
    /// one record, one transaction: the rows exist if and only if the recorded response
    /// does, so a retry replays a response whose rows committed, or runs the handler on
    /// a database that has none of them.
    ///
    /// - The client gets the response once it has committed: it is read whole first (up
    ///   to any size; one over [`max_body_bytes`](Self::max_body_bytes) commits as "not
    ///   stored"), not streamed.
    /// - A server error (5xx, unless [`record_server_errors`](Self::record_server_errors)),
    ///   a service error or a panic rolls the handler's writes back and releases the key:
    ///   a retry runs the handler again on a database without them.
    /// - A process that dies mid-handler leaves no rows (the database discards the open
    ///   transaction); its key is free once its lease lapses (when the transaction holds
    ///   the key, `lock_held(true)`: once the database ends the session), and a retry then
    ///   runs the handler once.
    /// - A commit that fails is answered 503 `store-unavailable`, its writes rolled back
    ///   (or, were the commit's answer lost though it went through, the record replays).
    ///
    /// The engine must be built over `Tx`'s store; a call on another store is refused
    /// (503, and the error logged). Requests that pass through unguarded (other methods,
    /// no key on an [`optional`](Self::optional) route) have no transaction.
    pub fn in_transaction<Tx: idem_core::store::Transaction>(self) -> Self {
        self.with(|c| c.transaction = Some(Arc::new(transaction::Of::<Tx>::new())))
    }

    /// Records server errors (5xx) too. By default they are not recorded: the key is
    /// released, so a retry runs the handler again.
    pub fn record_server_errors(self, record: bool) -> Self {
        self.with(|c| c.record_server_errors = record)
    }
}

impl<S> Layer<S> for IdempotencyLayer<ScopeChosen> {
    type Service = Idempotent<S>;

    fn layer(&self, inner: S) -> Idempotent<S> {
        Idempotent {
            inner,
            config: self.config.clone(),
        }
    }
}

/// A service wrapped by [`IdempotencyLayer`].
#[derive(Clone)]
pub struct Idempotent<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Idempotent<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotent")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Idempotent<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqBody: HttpBody<Data = Bytes> + From<Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The service that was polled ready serves this request; its clone the next.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        Box::pin(guard(inner, config, request))
    }
}
