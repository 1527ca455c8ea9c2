//! The tower layer: a request with an `Idempotency-Key` runs its handler at most once
//! per key; a retry gets the recorded response back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderName};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body as HttpBody;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use idem_core::{Call, Engine, Error, Source};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tower_layer::Layer;
use tower_service::Service;

use crate::key::{self, KeyProblem};
use crate::problem::Problem;

/// The error type of bodies: any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the layer gives: the handler's, a replayed one or a
/// problem.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// The header a replayed response carries: `Idempotent-Replayed: true`.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

type ScopeFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;
type FingerprintFn = dyn Fn(&Parts, &[u8]) -> Vec<u8> + Send + Sync;

/// The layer: see the [crate documentation](crate) for what it does.
#[derive(Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct IdempotencyLayer {
    config: Arc<Config>,
}

#[derive(Clone)]
struct Config {
    engine: Engine,
    namespace: String,
    header: HeaderName,
    required: bool,
    methods: Vec<Method>,
    scope: Option<Arc<ScopeFn>>,
    fingerprint: Arc<FingerprintFn>,
    record_headers: Vec<HeaderName>,
    max_body_bytes: usize,
    max_request_bytes: usize,
    wait: Option<Duration>,
    record_server_errors: bool,
    retry_after_s: u64,
}

impl std::fmt::Debug for IdempotencyLayer {
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
            .field("record_server_errors", &c.record_server_errors)
            .finish_non_exhaustive()
    }
}

/// The default fingerprint: SHA-256 over the method, the path, the query and the body.
fn default_fingerprint(parts: &Parts, body: &[u8]) -> Vec<u8> {
    let mut digest = Sha256::new();
    digest.update(parts.method.as_str());
    digest.update([0]);
    digest.update(parts.uri.path());
    digest.update([0]);
    digest.update(parts.uri.query().unwrap_or(""));
    digest.update([0]);
    digest.update(body);
    digest.finalize().to_vec()
}

impl IdempotencyLayer {
    /// A layer over `engine` with the defaults: the `Idempotency-Key` header, required,
    /// on POST and PATCH; keys global (see [`scope`](IdempotencyLayer::scope)); request
    /// bodies up to 1 MiB; the default fingerprint; `Content-Type` and `Location`
    /// recorded with the status and the body up to 1 MiB; server errors not recorded; no
    /// waiting.
    pub fn new(engine: Engine) -> IdempotencyLayer {
        IdempotencyLayer {
            config: Arc::new(Config {
                engine,
                namespace: "http".to_owned(),
                header: HeaderName::from_static("idempotency-key"),
                required: true,
                methods: vec![Method::POST, Method::PATCH],
                scope: None,
                fingerprint: Arc::new(default_fingerprint),
                record_headers: vec![header::CONTENT_TYPE, header::LOCATION],
                max_body_bytes: 1024 * 1024,
                max_request_bytes: 1024 * 1024,
                wait: None,
                record_server_errors: false,
                retry_after_s: 1,
            }),
        }
    }

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

    /// The methods that are guarded (POST and PATCH by default); others pass through.
    pub fn methods(self, methods: impl IntoIterator<Item = Method>) -> Self {
        let methods = methods.into_iter().collect();
        self.with(|c| c.methods = methods)
    }

    /// Scopes keys by what `scope` finds in the request (the tenant, the account, the
    /// authenticated user): two scopes' keys never meet. A request where it finds
    /// nothing gets 400. **Without a scope, keys are global**: two clients that send
    /// the same key share one record (and the second gets 422 if its request differs).
    pub fn scope(self, scope: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        self.with(|c| c.scope = Some(Arc::new(scope)))
    }

    /// Replaces the fingerprint (by default SHA-256 over method, path, query and body):
    /// a retry whose fingerprint differs from the first request's gets 422.
    pub fn fingerprint(
        self,
        fingerprint: impl Fn(&Parts, &[u8]) -> Vec<u8> + Send + Sync + 'static,
    ) -> Self {
        self.with(|c| c.fingerprint = Arc::new(fingerprint))
    }

    /// The response headers recorded and replayed (`Content-Type` and `Location` by
    /// default); the first response keeps all of its own.
    pub fn record_headers(self, headers: impl IntoIterator<Item = HeaderName>) -> Self {
        let headers = headers.into_iter().collect();
        self.with(|c| c.record_headers = headers)
    }

    /// The largest response body recorded (1 MiB by default). A larger response goes to
    /// the first caller whole; its retries get 409 `response-not-stored`, and the
    /// handler does not run again until the record expires.
    pub fn max_body_bytes(self, max_body_bytes: usize) -> Self {
        self.with(|c| c.max_body_bytes = max_body_bytes)
    }

    /// The largest request body a guarded request may have (1 MiB by default): the body
    /// is read whole, to fingerprint it, before the handler runs. A larger one gets 413
    /// `request-too-large` and the handler does not run.
    pub fn max_request_bytes(self, max_request_bytes: usize) -> Self {
        self.with(|c| c.max_request_bytes = max_request_bytes)
    }

    /// A retry that meets the first request in progress waits up to `wait` for its
    /// response instead of getting 409 at once.
    pub fn wait(self, wait: Duration) -> Self {
        self.with(|c| c.wait = Some(wait))
    }

    /// Records server errors (5xx) too. By default they are not recorded: the key is
    /// released, so a retry runs the handler again.
    pub fn record_server_errors(self, record: bool) -> Self {
        self.with(|c| c.record_server_errors = record)
    }
}

impl<S> Layer<S> for IdempotencyLayer {
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

/// What is recorded of a response: its status, the allowed headers and the body; or,
/// for a body over the limit, only that it was too large.
#[derive(Debug, Serialize, Deserialize)]
enum Recorded {
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        /// Base64 (standard, padded).
        body: String,
    },
    TooLarge {
        status: u16,
    },
}

impl Recorded {
    fn of(response: &Response<Bytes>, config: &Config) -> Recorded {
        let status = response.status().as_u16();
        if response.body().len() > config.max_body_bytes {
            return Recorded::TooLarge { status };
        }
        let headers =
            config
                .record_headers
                .iter()
                .flat_map(|name| {
                    response.headers().get_all(name).iter().filter_map(|value| {
                        Some((name.to_string(), value.to_str().ok()?.to_owned()))
                    })
                })
                .collect();
        Recorded::Response {
            status,
            headers,
            body: base64::engine::general_purpose::STANDARD.encode(response.body()),
        }
    }

    /// The replayed response, with `Idempotent-Replayed: true`.
    fn replay(self, config: &Config) -> Response<Bytes> {
        let (status, headers, body) = match self {
            Recorded::TooLarge { status } => {
                return Problem::ResponseNotStored.response(
                    &format!(
                        "the request with this key completed with status {status}, but its response \
                         was larger than {} bytes and was not recorded; it will not run again",
                        config.max_body_bytes
                    ),
                    config.retry_after_s,
                );
            }
            Recorded::Response {
                status,
                headers,
                body,
            } => (status, headers, body),
        };
        let decoded = base64::engine::general_purpose::STANDARD.decode(body);
        let (Ok(status), Ok(body)) = (StatusCode::from_u16(status), decoded) else {
            return Problem::RecordUnreadable
                .response("the recorded response is corrupt", config.retry_after_s);
        };
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = status;
        for (name, value) in headers {
            if let (Ok(name), Ok(value)) =
                (HeaderName::try_from(name), HeaderValue::try_from(value))
            {
                response.headers_mut().append(name, value);
            }
        }
        response
            .headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
        response
    }
}

/// Why a guarded request did not end with a recorded response.
enum Failed<E> {
    /// idem's own error (in progress, mismatch, store...).
    Idem(Error),
    /// The handler's service failed: its error goes to the caller, the key is released.
    Inner(E),
    /// A server error, not recorded: the key is released.
    NotRecorded,
    /// The handler's response body could not be read.
    ResponseBody(BoxError),
}

impl<E> From<Error> for Failed<E> {
    fn from(error: Error) -> Self {
        Failed::Idem(error)
    }
}

fn boxed(response: Response<Bytes>) -> Response<Body> {
    response.map(|body| {
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync()
    })
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Idempotent<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
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

fn pass_through<ResBody>(response: Response<ResBody>) -> Response<Body>
where
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    response.map(|body| body.map_err(Into::into).boxed_unsync())
}

async fn guard<S, ReqBody, ResBody>(
    mut inner: S,
    config: Arc<Config>,
    request: Request<ReqBody>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send,
    S::Future: Send,
    ReqBody: HttpBody<Data = Bytes> + From<Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let problem =
        |problem: Problem, detail: &str| Ok(boxed(problem.response(detail, config.retry_after_s)));
    if !config.methods.contains(request.method()) {
        return inner.call(request).await.map(pass_through);
    }
    let key = match request.headers().get(&config.header) {
        None if config.required => {
            let detail = format!(
                "{} {} needs an `{}` header",
                request.method(),
                request.uri().path(),
                config.header
            );
            return problem(Problem::MissingKey, &detail);
        }
        None => return inner.call(request).await.map(pass_through),
        Some(value) => match key::parse(value.as_bytes()) {
            Ok(key) => key,
            Err(KeyProblem::TooLong(chars)) => {
                let detail = format!(
                    "the key has {chars} characters; at most {} are accepted",
                    key::MAX_KEY_CHARS
                );
                return problem(Problem::KeyTooLong, &detail);
            }
            Err(KeyProblem::Invalid(why)) => return problem(Problem::InvalidKey, why),
        },
    };
    let (parts, body) = request.into_parts();
    let scope = match &config.scope {
        None => None,
        Some(scope) => match scope(&parts) {
            Some(scope) => Some(scope),
            None => {
                return problem(
                    Problem::MissingScope,
                    "the key is scoped (by tenant, account or user), and this request has none",
                )
            }
        },
    };
    // A guarded request's body is read whole (it is fingerprinted), up to the limit.
    let limit = config.max_request_bytes;
    let body = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            return problem(
                Problem::RequestTooLarge,
                &format!("a guarded request's body may have at most {limit} bytes"),
            );
        }
        Err(error) => {
            return problem(
                Problem::BodyUnreadable,
                &format!("the request body could not be read: {error}"),
            );
        }
    };
    let fingerprint = hex::encode((config.fingerprint)(&parts, &body));
    let call = match scope {
        Some(scope) => Call::new(config.namespace.clone(), &(scope, &key)),
        None => Call::new(config.namespace.clone(), &key),
    };
    let mut call = call.engine(&config.engine).fingerprint(&fingerprint);
    if let Some(wait) = config.wait {
        call = call.wait(wait);
    }

    // The handler's own response, for the first caller (whole, every header).
    let mut first: Option<Response<Bytes>> = None;
    let slot = &mut first;
    let request = Request::from_parts(parts, ReqBody::from(body));
    let record_server_errors = config.record_server_errors;
    let config_for_body = &config;
    // Boxed: the engine's future is large, and this one is moved whole into its box
    // (and by tower's `Oneshot`) before it first runs; a pointer moves cheaply.
    let outcome = Box::pin(call.run_reported(|_| async move {
        let response = inner.call(request).await.map_err(Failed::Inner)?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| Failed::ResponseBody(e.into()))?
            .to_bytes();
        let response = Response::from_parts(parts, body);
        if response.status().is_server_error() && !record_server_errors {
            *slot = Some(response);
            return Err(Failed::NotRecorded);
        }
        let recorded = Recorded::of(&response, config_for_body);
        *slot = Some(response);
        Ok::<_, Failed<S::Error>>(recorded)
    }))
    .await;
    let retry = config.retry_after_s;
    match outcome {
        Ok(report) => match report.source {
            Source::Replayed => Ok(boxed(report.value.replay(&config))),
            _ => Ok(boxed(first.take().expect("the handler ran"))),
        },
        Err(Failed::Inner(error)) => Err(error),
        Err(Failed::NotRecorded) => Ok(boxed(first.take().expect("the handler ran"))),
        Err(Failed::ResponseBody(error)) => {
            tracing::error!(target: "idem", %error, "the handler's response body failed; the key is released");
            Ok(boxed(Problem::RecordUnreadable.response(
                "the handler's response body could not be read",
                retry,
            )))
        }
        Err(Failed::Idem(error)) => Ok(boxed(match error {
            // The handler ran and answered; its lease was lost, so it was not recorded.
            Error::LeaseLost { .. } if first.is_some() => first.take().expect("checked"),
            Error::InProgress { .. } => Problem::InProgress.response(
                "a request with this key is being processed; retry after it completes",
                retry,
            ),
            Error::PayloadMismatch { .. } => Problem::Mismatch.response(
                "this key was first used with another request (method, path, query or body); \
                 use a new key for a new request",
                retry,
            ),
            Error::InvalidKey { reason, .. } => Problem::InvalidKey.response(&reason, retry),
            Error::ResultNotStored { .. } => Problem::ResponseNotStored.response(
                "the response to this key was not recorded; it will not run again",
                retry,
            ),
            Error::Decode { reason, .. } => Problem::RecordUnreadable.response(&reason, retry),
            error => {
                tracing::warn!(target: "idem", %error, "the idempotency store failed; the handler did not run");
                Problem::StoreUnavailable.response(
                    "the idempotency store failed before the handler ran; retry later",
                    retry,
                )
            }
        })),
    }
}
