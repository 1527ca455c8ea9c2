//! What is recorded of the handler's response, and the response a retry gets back.

use base64::Engine as _;
use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderValue, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::layer::Config;
use crate::problem::Problem;

/// The header a replayed response carries: `Idempotent-Replayed: true`.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// What is recorded of a response: its status, the allowed headers and the body; or,
/// for a body over the limit, only that it was too large; or, for a body that failed
/// after the handler ran, only that it failed.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Recorded {
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        /// Base64 (standard, padded).
        body: String,
    },
    TooLarge {
        status: u16,
    },
    /// The handler ran, but its response body failed before it was read whole.
    BodyFailed {
        status: u16,
    },
}

impl Recorded {
    /// What is recorded of the handler's response; `None` for a server error (5xx) when
    /// the layer does not record them (the key is released).
    pub(crate) fn of(response: &Response<Bytes>, config: &Config) -> Option<Recorded> {
        if response.status().is_server_error() && !config.record_server_errors {
            return None;
        }
        let status = response.status().as_u16();
        if response.body().len() > config.max_body_bytes {
            return Some(Recorded::TooLarge { status });
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
        Some(Recorded::Response {
            status,
            headers,
            body: base64::engine::general_purpose::STANDARD.encode(response.body()),
        })
    }

    /// The replayed response, with `Idempotent-Replayed: true`.
    pub(crate) fn replay(self, config: &Config) -> Response<Bytes> {
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
            Recorded::BodyFailed { status } => {
                return Problem::ResponseNotStored.response(
                    &format!(
                        "the request with this key ran (status {status}), but its response body \
                         failed before it was recorded; it will not run again"
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
