//! The layer's own answers, as RFC 9457 problem details (`application/problem+json`),
//! one type per case; and the one mapping from idem's errors to an answer
//! ([`for_idem_error`]).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use idem_core::Error;

/// Each answer the layer gives instead of the handler's, with its problem type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// 400: the route requires a key and the request has none.
    MissingKey,
    /// 400: the key is longer than 255 characters.
    KeyTooLong,
    /// 400: the header's value is not a key (see [`crate::key`]).
    InvalidKey,
    /// 400: the scope extractor found no scope (tenant) in the request.
    MissingScope,
    /// 400: the request's body could not be read.
    BodyUnreadable,
    /// 413: the request's body is over the layer's limit.
    RequestTooLarge,
    /// 422: the key was first used with another request (method, path, query or body).
    Mismatch,
    /// 409 with `Retry-After`: a request with this key is being processed.
    InProgress,
    /// 410: the request with this key ran, but its response was not recorded (too
    /// large, or its body failed after the handler ran); it will not run again until the
    /// record expires. Not 409: a client that follows the IETF draft retries a 409 (a
    /// request in progress) and would retry this one until the record expires; a 410
    /// says the answer is gone for good, and a client should not send the key again
    /// (look the outcome up another way, or use a new key for a new request).
    ResponseNotStored,
    /// 406: the response to this key was recorded with a `Content-Encoding` (gzip, br...)
    /// that this request's `Accept-Encoding` does not accept; the handler does not run
    /// again. The layer does not decode the recorded body: its `ETag` and length belong
    /// to the encoded bytes. A client should retry with an `Accept-Encoding` that allows
    /// the coding (the one its first request sent); a server avoids it by putting
    /// compression outside the layer, so the record is the plain body.
    EncodingNotAcceptable,
    /// 503 with `Retry-After`: the idempotency store failed; the handler did not run.
    StoreUnavailable,
    /// 500: the recorded response cannot be read back (the handler did not run).
    RecordUnreadable,
    /// 500: the handler panicked; the key was released, so a retry runs it again.
    HandlerPanicked,
    /// 503 with `Retry-After`: the server stopped the handler's task before it answered
    /// (its runtime shutting down).
    HandlerStopped,
    /// 500: the server runs the layer outside a tokio runtime, which the engine's timers
    /// (heartbeats, deadlines) need; the handler did not run and the key is free. A
    /// server misconfiguration: a client cannot fix it by retrying.
    RuntimeMissing,
    /// 500: an at-most-once step of the handler started under an earlier attempt and its
    /// result was never journaled ([`Error::StepUncertain`]): it may or may not have
    /// happened, so it was not run again. The server must reconcile it (the handler's
    /// `Step::on_uncertain`, or an operator); a retry alone gets this answer again.
    StepUncertain,
    /// 500: a step of the handler is written so that it cannot be journaled
    /// ([`Error::Step`]: a name used twice, a step inside a step, the lock-held form, a
    /// value too large). A server bug: a client cannot fix it by retrying.
    StepRefused,
}

impl Problem {
    /// Its status code.
    pub fn status(self) -> StatusCode {
        match self {
            Problem::MissingKey
            | Problem::KeyTooLong
            | Problem::InvalidKey
            | Problem::MissingScope
            | Problem::BodyUnreadable => StatusCode::BAD_REQUEST,
            Problem::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Problem::Mismatch => StatusCode::UNPROCESSABLE_ENTITY,
            Problem::InProgress => StatusCode::CONFLICT,
            Problem::ResponseNotStored => StatusCode::GONE,
            Problem::EncodingNotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Problem::StoreUnavailable | Problem::HandlerStopped => StatusCode::SERVICE_UNAVAILABLE,
            Problem::RecordUnreadable
            | Problem::HandlerPanicked
            | Problem::RuntimeMissing
            | Problem::StepUncertain
            | Problem::StepRefused => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Its problem type, a URI naming the case: the case's documentation on docs.rs
    /// (this enum's variant), so a client that follows it reads what happened.
    pub fn type_uri(self) -> &'static str {
        match self {
            Problem::MissingKey => "https://docs.rs/idem-http/latest/idem_http/enum.Problem.html#variant.MissingKey",
            Problem::KeyTooLong => "https://docs.rs/idem-http/latest/idem_http/enum.Problem.html#variant.KeyTooLong",
            Problem::InvalidKey => "https://docs.rs/idem-http/latest/idem_http/enum.Problem.html#variant.InvalidKey",
            Problem::MissingScope => "https://docs.rs/idem-http/latest/idem_http/enum.Problem.html#variant.MissingScope",
            Problem::BodyUnreadable => "https://docs.rs/idem-http/latest/idem_http/enum.Problem.html#variant.BodyUnreadable",
            Problem::RequestTooLarge => "https://docs.rs/idem-http/latest/idem_http/enum.Problem.html#variant.RequestTooLarge",
            Problem::Mismatch => "https://docs.rs/idem-http/latest/idem_http/enum.Problem.html#variant.Mismatch",
            Problem::InProgress => "https://docs.rs/idem-http/latest/idem_http/enum.Problem.html#variant.InProgress",
            Problem::ResponseNotStored => "https://docs.rs/idem-http/latest/idem_http/enum.Problem.html#variant.ResponseNotStored",
            Problem::EncodingNotAcceptable => "https://docs.rs/idem-http/latest/idem_http/enum.Problem.html#variant.EncodingNotAcceptable",
            Problem::StoreUnavailable => "https://docs.rs/idem-http/latest/idem_http/enum.Problem.html#variant.StoreUnavailable",
            Problem::RecordUnreadable => "https://docs.rs/idem-http/latest/idem_http/enum.Problem.html#variant.RecordUnreadable",
            Problem::HandlerPanicked => "https://docs.rs/idem-http/latest/idem_http/enum.Problem.html#variant.HandlerPanicked",
            Problem::HandlerStopped => "https://docs.rs/idem-http/latest/idem_http/enum.Problem.html#variant.HandlerStopped",
            Problem::RuntimeMissing => "https://docs.rs/idem-http/latest/idem_http/enum.Problem.html#variant.RuntimeMissing",
            Problem::StepUncertain => "https://docs.rs/idem-http/latest/idem_http/enum.Problem.html#variant.StepUncertain",
            Problem::StepRefused => "https://docs.rs/idem-http/latest/idem_http/enum.Problem.html#variant.StepRefused",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Problem::MissingKey => "An Idempotency-Key header is required",
            Problem::KeyTooLong => "The idempotency key is too long",
            Problem::InvalidKey => "The idempotency key is malformed",
            Problem::MissingScope => "The request has no scope to key on",
            Problem::BodyUnreadable => "The request body could not be read",
            Problem::RequestTooLarge => "The request body is too large",
            Problem::Mismatch => "The idempotency key was used for another request",
            Problem::InProgress => "A request with this idempotency key is in progress",
            Problem::ResponseNotStored => "The response to this idempotency key was not stored",
            Problem::EncodingNotAcceptable => "The recorded response's encoding is not acceptable",
            Problem::StoreUnavailable => "The idempotency store is unavailable",
            Problem::RecordUnreadable => "The recorded response cannot be read",
            Problem::HandlerPanicked => "The handler panicked",
            Problem::HandlerStopped => "The handler was stopped before it answered",
            Problem::RuntimeMissing => {
                "The server runs the idempotency layer without a tokio runtime"
            }
            Problem::StepUncertain => "A step of this request may or may not have happened",
            Problem::StepRefused => "A step of the handler cannot be journaled",
        }
    }

    /// The response: status, `application/problem+json`, and `Retry-After: retry_after`
    /// seconds where a retry may succeed (in progress, store unavailable).
    pub fn response(self, detail: &str, retry_after: u64) -> Response<Bytes> {
        let body = serde_json::json!({
            "type": self.type_uri(),
            "title": self.title(),
            "status": self.status().as_u16(),
            "detail": detail,
        });
        let mut response = Response::new(Bytes::from(body.to_string()));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if matches!(
            self,
            Problem::InProgress | Problem::StoreUnavailable | Problem::HandlerStopped
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response
    }
}

/// Which problem an idem error is: the one mapping the layer uses, for handlers that
/// run [`Call`](idem_core::Call) themselves ([`error_response`] gives the whole answer).
impl From<&Error> for Problem {
    fn from(error: &Error) -> Problem {
        match error {
            Error::InProgress { .. } => Problem::InProgress,
            Error::PayloadMismatch { .. } => Problem::Mismatch,
            Error::InvalidKey { .. } => Problem::InvalidKey,
            Error::ResultNotStored { .. } => Problem::ResponseNotStored,
            Error::Decode { .. } => Problem::RecordUnreadable,
            Error::StepUncertain { .. } => Problem::StepUncertain,
            Error::Step { .. } => Problem::StepRefused,
            _ => Problem::StoreUnavailable,
        }
    }
}

/// The layer's answer to an idem error (status, `application/problem+json`,
/// `Retry-After`), for a handler that runs [`Call`](idem_core::Call) itself:
///
/// ```
/// use idem_core::Error;
///
/// let busy = Error::InProgress {
///     namespace: "payments".into(),
///     digest: "d1g".into(),
///     lease_until_ms: None,
/// };
/// let response = idem_http::error_response(busy);
/// assert_eq!(response.status(), 409);
/// assert_eq!(response.headers()["retry-after"], "1");
/// ```
pub fn error_response(error: Error) -> Response<Bytes> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    for_idem_error(error, 1, now_ms)
}

/// A guarded request refused before its call runs (no key, a malformed key, no scope, a
/// body too large or unreadable): the problem and its detail.
pub(crate) struct Refused {
    problem: Problem,
    detail: String,
}

impl Refused {
    pub(crate) fn new(problem: Problem, detail: impl Into<String>) -> Refused {
        Refused {
            problem,
            detail: detail.into(),
        }
    }

    /// The problem's response (see [`Problem::response`]).
    pub(crate) fn response(self, retry_after: u64) -> Response<Bytes> {
        self.problem.response(&self.detail, retry_after)
    }
}

/// The answer to a guarded call that ended in idem's own error: the only place an
/// [`idem_core::Error`] becomes a status, a problem type and headers. A handler that
/// answered has given its response already (a lease lost while its body streamed is
/// told in the log, not to the client).
///
/// An in-progress key's `Retry-After` is the time left on its holder's lease (whole
/// seconds, rounded up, at least 1) when the store has one, at `now_ms` on the engine's
/// clock; `retry_after` otherwise.
pub(crate) fn for_idem_error(error: Error, retry_after: u64, now_ms: u64) -> Response<Bytes> {
    let problem = Problem::from(&error);
    match error {
        Error::InProgress { lease_until_ms, .. } => problem.response(
            "a request with this key is being processed; retry after it completes",
            lease_until_ms.map_or(retry_after, |until| {
                until.saturating_sub(now_ms).div_ceil(1000).max(1)
            }),
        ),
        Error::PayloadMismatch { .. } => problem.response(
            "this key was first used with another request (method, path, query or body); \
             use a new key for a new request",
            retry_after,
        ),
        Error::InvalidKey { reason, .. } | Error::Decode { reason, .. } => {
            problem.response(&reason, retry_after)
        }
        Error::ResultNotStored { .. } => problem.response(
            "the response to this key was not recorded; it will not run again",
            retry_after,
        ),
        error => {
            tracing::warn!(target: "idem", %error, "the idempotency store failed; the handler did not run");
            problem.response(
                "the idempotency store failed before the handler ran; retry later",
                retry_after,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{error_response, Problem};
    use idem_core::Error;

    /// Each idem error a handler can meet maps to its problem, and the public answer
    /// has that problem's status: the one mapping, used by the layer and by handlers.
    #[test]
    fn each_idem_error_has_its_problem_and_status() {
        let (namespace, digest) = (|| "payments".to_owned(), || "d1g".to_owned());
        let cases = [
            (
                Error::InProgress {
                    namespace: namespace(),
                    digest: digest(),
                    lease_until_ms: None,
                },
                Problem::InProgress,
            ),
            (
                Error::PayloadMismatch {
                    namespace: namespace(),
                    digest: digest(),
                },
                Problem::Mismatch,
            ),
            (
                Error::InvalidKey {
                    namespace: namespace(),
                    reason: "empty".into(),
                },
                Problem::InvalidKey,
            ),
            (
                Error::ResultNotStored {
                    namespace: namespace(),
                    digest: digest(),
                },
                Problem::ResponseNotStored,
            ),
            (
                Error::StepUncertain {
                    namespace: namespace(),
                    digest: digest(),
                    step: "charge".into(),
                    step_key: "k".into(),
                },
                Problem::StepUncertain,
            ),
            (
                Error::Step {
                    namespace: namespace(),
                    step: "charge".into(),
                    reason: "twice".into(),
                },
                Problem::StepRefused,
            ),
            (
                Error::Decode {
                    namespace: namespace(),
                    digest: digest(),
                    reason: "bad".into(),
                },
                Problem::RecordUnreadable,
            ),
            (Error::NoEngine, Problem::StoreUnavailable),
        ];
        for (error, problem) in cases {
            assert_eq!(Problem::from(&error), problem, "{error}");
            assert_eq!(
                error_response(error).status(),
                problem.status(),
                "{problem:?}"
            );
        }
        assert_eq!(
            Problem::ResponseNotStored.status(),
            410,
            "not retried by clients"
        );
    }

    /// Every type URI points at its own variant's anchor in this enum's documentation
    /// (rustdoc writes `id="variant.Name"`), so none is a dead link once published.
    #[test]
    fn each_problem_type_is_its_variants_documentation() {
        let all = [
            Problem::MissingKey,
            Problem::KeyTooLong,
            Problem::InvalidKey,
            Problem::MissingScope,
            Problem::BodyUnreadable,
            Problem::RequestTooLarge,
            Problem::Mismatch,
            Problem::InProgress,
            Problem::ResponseNotStored,
            Problem::EncodingNotAcceptable,
            Problem::StoreUnavailable,
            Problem::RecordUnreadable,
            Problem::HandlerPanicked,
            Problem::HandlerStopped,
            Problem::RuntimeMissing,
        ];
        for problem in all {
            assert_eq!(
                problem.type_uri(),
                format!("https://docs.rs/idem-http/latest/idem_http/enum.Problem.html#variant.{problem:?}")
            );
        }
    }
}
