//! A request's path through the layer: its key and scope read and checked, its body
//! fingerprinted, the handler run once per key by the guarded call, and the answer
//! (the handler's response, a replayed one, or a problem).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as HttpBody;
use http_body_util::{BodyExt, Full};
use idem_core::{Call, Error, Report};
use tokio::sync::oneshot;
use tower_service::Service;
use tracing::Instrument as _;

use crate::layer::{Body, BoxError, Config};
use crate::problem::{self, Problem, Refused};
use crate::record::Recorded;
use crate::stream::{self, Ended, Tee};
use crate::transaction::{self, InTransaction};
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
    // A replay's Content-Encoding must be one this request accepts.
    let accept_encoding = request
        .headers()
        .get_all(http::header::ACCEPT_ENCODING)
        .iter()
        .cloned()
        .collect();
    // The engine's timers (heartbeats, deadlines) are tokio's: outside a tokio runtime
    // a guarded call would panic at its first wait, after taking the key. Refused
    // before the key is taken: the handler does not run, the key stays free.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::error!(target: "idem", "idem-http guarded a request outside a tokio runtime; it needs one");
        return Ok(boxed(Problem::RuntimeMissing.response(
            "the server runs the idempotency layer outside a tokio runtime, which it needs; \
             the handler did not run and the key is free",
            config.retry_after_s,
        )));
    };
    let (call, request) = match prepare(&config, key, request).await {
        Ok(prepared) => prepared,
        Err(refused) => return Ok(boxed(refused.response(config.retry_after_s))),
    };
    respond(inner, config, runtime, call, request, accept_encoding).await
}

/// The guarded call's answer, on a task of its own when there is a tokio runtime (every
/// axum server has one): a client that gives up drops only this request's future, the
/// waiting, while the handler runs to its end and its response is recorded, so the
/// client's retry replays it instead of meeting the key in progress for the whole lease
/// and then running the handler again. A handler that panics is answered with
/// [`Problem::HandlerPanicked`] (the engine has released the key) instead of a closed
/// connection. With [`cancel_with_client`](crate::IdempotencyLayer::cancel_with_client)
/// the call runs in this future until the handler answers.
///
/// The handler's response is given as soon as it answers, its body streamed to the
/// client as the handler produces it (a [`Tee`] copies it for the record), while the call
/// still holds the key, its lease kept by heartbeats, until the copy of the body is
/// recorded.
async fn respond<S, ReqBody, ResBody>(
    inner: S,
    config: Arc<Config>,
    runtime: tokio::runtime::Handle,
    call: Call,
    request: Request<ReqBody>,
    accept_encoding: Vec<http::HeaderValue>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let (head, mut answered) = oneshot::channel();
    let reading = Reading::Streamed {
        drain: if config.detached {
            config.drain_timeout
        } else {
            Duration::ZERO
        },
    };
    let engine = caught(run(inner, config.clone(), call, request, head, reading));
    let outcome = match runtime {
        runtime if config.detached => {
            // The request's span goes with the handler's task, so its events keep their
            // context.
            let task = runtime.spawn(engine.in_current_span());
            if let Ok(response) = (&mut answered).await {
                return Ok(response);
            }
            match task.await {
                Ok(outcome) => outcome,
                Err(stopped) if stopped.is_panic() => Err(Failed::Panicked),
                Err(_) => Err(Failed::Stopped),
            }
        }
        runtime => {
            // Boxed: the engine's future is large, and moved to a task of its own once
            // the handler answered (only its recording is left then).
            let mut engine = Box::pin(engine);
            tokio::select! {
                biased;
                Ok(response) = &mut answered => {
                    runtime.spawn(engine.in_current_span());
                    return Ok(response);
                }
                outcome = &mut engine => outcome,
            }
        }
    };
    // The handler answered in the poll that ended the call (a server error, released).
    if let Ok(response) = answered.try_recv() {
        return Ok(response);
    }
    answer(outcome, &config, &accept_encoding).map(boxed)
}

/// How the handler's response body reaches its client.
#[derive(Clone, Copy)]
enum Reading {
    /// Streamed as it is produced; once its client is gone, read on for the record for
    /// at most `drain`.
    Streamed { drain: Duration },
    /// Read whole, then given (in a transaction: the response goes out only once it has
    /// committed with the handler's writes).
    Whole,
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

/// How a guarded call ended: its recorded response (the handler's or a replay), or why
/// there is none.
type Outcome<E> = Result<Report<Recorded>, Failed<E>>;

/// Why a guarded request did not end with a recorded response.
pub(crate) enum Failed<E> {
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

impl<E> Failed<E> {
    /// The same failure, its service error (if it is one) replaced by `inner`'s answer.
    fn map_inner<F>(self, inner: impl FnOnce(E) -> Failed<F>) -> Failed<F> {
        match self {
            Failed::Inner(error) => inner(error),
            Failed::Idem(error) => Failed::Idem(error),
            Failed::NotRecorded => Failed::NotRecorded,
            Failed::Panicked => Failed::Panicked,
            Failed::Stopped => Failed::Stopped,
        }
    }
}

impl<E> From<Error> for Failed<E> {
    fn from(error: Error) -> Self {
        Failed::Idem(error)
    }
}

/// Runs the guarded call: the handler runs (unless a retry replays), its response goes
/// to `head` as soon as it answers (whole, every header), and its copy is recorded when
/// the body ends or passes `max_body_bytes`. The key is held, its lease kept by the
/// engine's heartbeats, until then. Gives the call's outcome.
///
/// In a transaction ([`in_transaction`](crate::IdempotencyLayer::in_transaction)), the
/// response is read whole and goes to `head` only once the record has committed with
/// the handler's writes (a server error, not recorded, at once: its writes roll back).
async fn run<S, ReqBody, ResBody>(
    inner: S,
    config: Arc<Config>,
    call: Call,
    request: Request<ReqBody>,
    head: oneshot::Sender<Response<Body>>,
    reading: Reading,
) -> Result<Report<Recorded>, Failed<S::Error>>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    if let Some(transactional) = config.transaction.clone() {
        return in_transaction(&*transactional, inner, config, call, request, head).await;
    }
    let mut sent = false;
    let outcome = in_store(call, inner, &config, request, head, reading, &mut sent).await;
    if let (true, Err(Failed::Idem(error))) = (sent, &outcome) {
        tracing::error!(target: "idem", %error,
            "the handler's response was given to its client, but it could not be recorded");
    }
    outcome
}

/// The engine's call of [`run`], boxed: the engine's future is large (about 10 KB),
/// and this one is moved whole by the task and tower's `Oneshot` before it first runs;
/// a pointer moves cheaply. Boxed in a plain function, not in `run`: an async fn keeps
/// room in its own state for a temporary of the statement that awaits it, which would
/// make `run`, and every future that holds it, as large as the engine's.
fn in_store<'a, S, ReqBody, ResBody>(
    call: Call,
    inner: S,
    config: &'a Config,
    request: Request<ReqBody>,
    head: oneshot::Sender<Response<Body>>,
    reading: Reading,
    sent: &'a mut bool,
) -> Pin<Box<impl Future<Output = Outcome<S::Error>> + 'a>>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + 'a,
    ReqBody: 'a,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    Box::pin(call.run_reported(move |_| handle(inner, config, request, head, reading, sent)))
}

/// [`run`] in the store's transaction: the engine lends it to the handler (in the
/// request's extensions), and the handler's response, read whole meanwhile, goes to
/// `head` once the call has committed it with the handler's writes.
async fn in_transaction<S, ReqBody, ResBody>(
    transactional: &dyn InTransaction,
    inner: S,
    config: Arc<Config>,
    call: Call,
    mut request: Request<ReqBody>,
    head: oneshot::Sender<Response<Body>>,
) -> Result<Report<Recorded>, Failed<S::Error>>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let (held, mut response) = oneshot::channel();
    // The service's error, whose type the transactional call does not name.
    let (failed, mut service_error) = oneshot::channel();
    let handler: transaction::Handler = Box::new(move |lend| {
        Box::pin(async move {
            lend.to(request.extensions_mut());
            let mut sent = false;
            handle(inner, &config, request, held, Reading::Whole, &mut sent)
                .await
                .map_err(|error| {
                    error.map_inner(|error| {
                        let _ = failed.send(error);
                        Failed::Inner(())
                    })
                })
        })
    });
    let outcome = transactional.run(call, handler).await;
    // The handler's response: committed with its writes (or a server error, whose
    // writes rolled back); after a failed commit it is not given.
    if let (Ok(_) | Err(Failed::NotRecorded), Ok(response)) = (&outcome, response.try_recv()) {
        let _ = head.send(response);
    }
    outcome.map_err(|error| {
        error.map_inner(|()| match service_error.try_recv() {
            Ok(error) => Failed::Inner(error),
            Err(_) => Failed::Stopped,
        })
    })
}

/// The handler's part of the guarded call: it runs, its response goes to `head` (as it
/// is produced, or read whole: `reading`), and what the record keeps of it comes back
/// once its body has ended or passed the limit. `sent` tells whether `head` got it.
async fn handle<S, ReqBody, ResBody>(
    mut inner: S,
    config: &Config,
    request: Request<ReqBody>,
    head: oneshot::Sender<Response<Body>>,
    reading: Reading,
    sent: &mut bool,
) -> Result<Recorded, Failed<S::Error>>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let deadline = tokio::time::Instant::now() + config.engine.defaults().max_duration;
    let response = inner.call(request).await.map_err(Failed::Inner)?;
    let (parts, body) = response.into_parts();
    let body = body.map_err(Into::into).boxed_unsync();
    *sent = true;
    if !Recorded::records(parts.status, config) {
        let _ = head.send(Response::from_parts(parts, body));
        return Err(Failed::NotRecorded);
    }
    // What the record keeps of the head; the client gets the head itself.
    let mut recorded = Response::new(());
    *recorded.status_mut() = parts.status;
    *recorded.headers_mut() = parts.headers.clone();
    let (copied, ended) = oneshot::channel();
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|length| length.to_str().ok()?.parse().ok());
    let tee = Tee::new(body, config.max_body_bytes, declared, copied);
    let ended = match reading {
        Reading::Streamed { drain } => {
            // A client already gone drops it: its body hands the rest back.
            let _ = head.send(Response::from_parts(parts, tee.boxed_unsync()));
            // Heartbeats keep the lease for the engine's max_duration: a stream
            // still going then is recorded as not stored (and goes on), before the
            // lease lapses.
            match tokio::time::timeout_at(deadline, ended).await {
                Ok(Ok(Ended::Abandoned(rest))) => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    stream::drain(rest, drain.min(left)).await
                }
                Ok(Ok(ended)) => ended,
                Ok(Err(_)) | Err(_) => Ended::Cut,
            }
        }
        Reading::Whole => {
            let _ = head.send(read_whole(parts, tee, config).await);
            // Read: the copy ended.
            ended.await.unwrap_or(Ended::Cut)
        }
    };
    let status = recorded.status().as_u16();
    match ended {
        Ended::Whole(body) => {
            Recorded::of(&recorded.map(|()| body), config).ok_or(Failed::NotRecorded)
        }
        Ended::TooLarge => Ok(Recorded::TooLarge { status }),
        Ended::Cut | Ended::Abandoned(_) => Ok(Recorded::BodyFailed { status }),
    }
}

/// The handler's response read whole (its copy recorded as it is read); a body that
/// fails is answered with a problem.
async fn read_whole(parts: http::response::Parts, tee: Tee, config: &Config) -> Response<Body> {
    match tee.collect().await {
        Ok(body) => boxed(Response::from_parts(parts, body.to_bytes())),
        // The handler ran (in a transaction, its rows committed with the record, which
        // says "not stored"): the answer a retry gets too, never "did not run".
        Err(_) => boxed(Problem::ResponseNotStored.response(
            "the handler ran, but its response body failed before it was read whole; \
             it will not run again for this key",
            config.retry_after_s,
        )),
    }
}

/// The answer to a guarded request whose handler gave no response: the recorded one (a
/// retry), the handler's service error, or a problem.
fn answer<E>(
    outcome: Result<Report<Recorded>, Failed<E>>,
    config: &Config,
    accept_encoding: &[http::HeaderValue],
) -> Result<Response<Bytes>, E> {
    let retry = config.retry_after_s;
    match outcome {
        Ok(report) => Ok(report.value.replay(config, accept_encoding)),
        Err(Failed::Inner(error)) => Err(error),
        Err(Failed::Panicked) => {
            tracing::error!(target: "idem", "the handler panicked; the key is released");
            Ok(Problem::HandlerPanicked.response(
                "the handler panicked; the key was released, so a retry runs it again",
                retry,
            ))
        }
        // A call that ends NotRecorded gave its handler's response first: neither
        // reaches here with the handler's answer.
        Err(Failed::Stopped | Failed::NotRecorded) => Ok(Problem::HandlerStopped.response(
            "the server stopped the handler before it answered (shutting down); a retry \
             replays its response if it was recorded, or runs it once the key is free",
            retry,
        )),
        Err(Failed::Idem(error)) => Ok(problem::for_idem_error(
            error,
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

/// `call`, a panic in it answered as [`Failed::Panicked`] instead of unwinding into the
/// server (which closes the connection without an answer).
async fn caught<T, E>(
    call: impl std::future::Future<Output = Result<T, Failed<E>>>,
) -> Result<T, Failed<E>> {
    let mut call = std::pin::pin!(call);
    std::future::poll_fn(|cx| {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call.as_mut().poll(cx))) {
            Ok(polled) => polled,
            Err(_) => std::task::Poll::Ready(Err(Failed::Panicked)),
        }
    })
    .await
}
