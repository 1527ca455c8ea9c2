//! A request's path through the layer: its key and scope read and checked, its body
//! fingerprinted, the handler run once per key by the guarded call, and the answer
//! (the handler's response, a replayed one, or a problem).

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as HttpBody;
use http_body_util::{BodyExt, Full};
use idem_core::{Call, Error, Report, Source};
use tower_service::Service;
use tracing::Instrument as _;

use crate::layer::{Body, BoxError, Config};
use crate::problem::{self, Problem, Refused};
use crate::record::Recorded;
use crate::{fingerprint, key};

/// The layer's answer to one request: a request it does not guard passes through; a
/// guarded one is checked, then runs its handler at most once per key.
pub(crate) async fn guard<S, ReqBody, ResBody>(
    mut inner: S,
    config: Arc<Config>,
    request: Request<ReqBody>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqBody: HttpBody<Data = Bytes> + From<Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    if !config.methods.contains(request.method()) {
        return inner.call(request).await.map(pass_through);
    }
    let key = match key::read(&config, &request) {
        Ok(Some(key)) => key,
        Ok(None) => return inner.call(request).await.map(pass_through),
        Err(refused) => return Ok(boxed(refused.response(config.retry_after_s))),
    };
    let (call, request) = match prepare(&config, key, request).await {
        Ok(prepared) => prepared,
        Err(refused) => return Ok(boxed(refused.response(config.retry_after_s))),
    };
    let (outcome, handled) = detached(inner, config.clone(), call, request).await;
    answer(outcome, handled, &config).map(boxed)
}

/// Runs the guarded call on a task of its own, when there is a tokio runtime (every
/// axum server has one): a client that gives up drops only this request's future, the
/// waiting, while the handler runs to its end and its response is recorded, so the
/// client's retry replays it instead of meeting the key in progress for the whole lease
/// and then running the handler again. A handler that panics is answered with
/// [`Problem::HandlerPanicked`] (the engine has released the key) instead of a closed
/// connection. Without a runtime, or with
/// [`cancel_with_client`](crate::IdempotencyLayer::cancel_with_client), the call runs in
/// this future, as a plain `Service` call would.
async fn detached<S, ReqBody, ResBody>(
    inner: S,
    config: Arc<Config>,
    call: Call,
    request: Request<ReqBody>,
) -> (
    Result<Report<Recorded>, Failed<S::Error>>,
    Option<Response<Bytes>>,
)
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let runtime = match tokio::runtime::Handle::try_current() {
        Ok(runtime) if config.detached => runtime,
        _ => return run(inner, &config, call, request).await,
    };
    // The request's span goes with the handler's task, so its events keep their context.
    let task =
        runtime.spawn(async move { run(inner, &config, call, request).await }.in_current_span());
    match task.await {
        Ok(done) => done,
        Err(stopped) if stopped.is_panic() => (Err(Failed::Panicked), None),
        Err(_) => (Err(Failed::Stopped), None),
    }
}

/// The guarded call for a request with a key: its scope checked, its body read whole
/// and fingerprinted. The request comes back with its body, to hand to the handler.
async fn prepare<B>(
    config: &Config,
    key: String,
    request: Request<B>,
) -> Result<(Call, Request<B>), Refused>
where
    B: HttpBody<Data = Bytes> + From<Bytes>,
    B::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    let scope = key::scope(config, &parts)?;
    let (body, fingerprint) = fingerprint::read(config, &parts, body).await?;
    let call = match scope {
        Some(scope) => Call::new(config.namespace.clone(), &(scope, &key)),
        None => Call::new(config.namespace.clone(), &key),
    };
    let mut call = call
        .engine(&config.engine)
        .fingerprint(&fingerprint)
        .ttl(config.retention);
    if let Some(wait) = config.wait {
        call = call.wait(wait);
    }
    Ok((call, Request::from_parts(parts, B::from(body))))
}

/// Why a guarded request did not end with a recorded response.
enum Failed<E> {
    /// idem's own error (in progress, mismatch, store...).
    Idem(Error),
    /// The handler's service failed: its error goes to the caller, the key is released.
    Inner(E),
    /// A server error, not recorded: the key is released.
    NotRecorded,
    /// The handler panicked: the engine released the key.
    Panicked,
    /// The handler's task was stopped before it answered (the runtime shutting down).
    Stopped,
}

impl<E> From<Error> for Failed<E> {
    fn from(error: Error) -> Self {
        Failed::Idem(error)
    }
}

/// Runs the guarded call: the handler runs (unless a retry replays) and its response is
/// recorded. Gives the call's outcome and, if the handler ran, its own response for the
/// first caller (whole, every header).
async fn run<S, ReqBody, ResBody>(
    mut inner: S,
    config: &Config,
    call: Call,
    request: Request<ReqBody>,
) -> (
    Result<Report<Recorded>, Failed<S::Error>>,
    Option<Response<Bytes>>,
)
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let mut handled: Option<Response<Bytes>> = None;
    let slot = &mut handled;
    // Boxed: the engine's future is large, and this one is moved whole into its box
    // (and by tower's `Oneshot`) before it first runs; a pointer moves cheaply.
    let outcome = Box::pin(call.run_reported(|_| async move {
        let response = inner.call(request).await.map_err(Failed::Inner)?;
        let (parts, body) = response.into_parts();
        let body = match body.collect().await {
            Ok(body) => body.to_bytes(),
            Err(error) => {
                // The handler ran: its key is never released for a retry to run it
                // again. The record says its response was not stored.
                let error: BoxError = error.into();
                tracing::error!(target: "idem", %error,
                    "the handler's response body failed after it ran; recorded as not stored");
                *slot = Some(Problem::RecordUnreadable.response(
                    "the handler ran, but its response body failed before it was read whole; \
                     it will not run again for this key",
                    config.retry_after_s,
                ));
                return Ok(Recorded::BodyFailed {
                    status: parts.status.as_u16(),
                });
            }
        };
        let response = Response::from_parts(parts, body);
        let recorded = Recorded::of(&response, config);
        *slot = Some(response);
        recorded.ok_or(Failed::NotRecorded)
    }))
    .await;
    (outcome, handled)
}

/// The answer to a guarded request from its call's outcome: the handler's own response
/// (first run), the recorded one (a retry), the handler's service error, or a problem.
fn answer<E>(
    outcome: Result<Report<Recorded>, Failed<E>>,
    handled: Option<Response<Bytes>>,
    config: &Config,
) -> Result<Response<Bytes>, E> {
    let retry = config.retry_after_s;
    match outcome {
        Ok(report) => match report.source {
            Source::Replayed => Ok(report.value.replay(config)),
            _ => Ok(handled.expect("the handler ran")),
        },
        Err(Failed::Inner(error)) => Err(error),
        Err(Failed::NotRecorded) => Ok(handled.expect("the handler ran")),
        Err(Failed::Panicked) => {
            tracing::error!(target: "idem", "the handler panicked; the key is released");
            Ok(Problem::HandlerPanicked.response(
                "the handler panicked; the key was released, so a retry runs it again",
                retry,
            ))
        }
        Err(Failed::Stopped) => Ok(Problem::HandlerStopped.response(
            "the server stopped the handler before it answered (shutting down); a retry \
             replays its response if it was recorded, or runs it once the key is free",
            retry,
        )),
        Err(Failed::Idem(error)) => Ok(problem::for_idem_error(
            error,
            handled,
            retry,
            config.engine.clock().now_ms(),
        )),
    }
}

/// A response whose body is whole in memory, as the layer's [`Body`].
fn boxed(response: Response<Bytes>) -> Response<Body> {
    response.map(|body| {
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync()
    })
}

/// An unguarded request's response, its body as the handler streams it.
fn pass_through<ResBody>(response: Response<ResBody>) -> Response<Body>
where
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    response.map(|body| body.map_err(Into::into).boxed_unsync())
}
