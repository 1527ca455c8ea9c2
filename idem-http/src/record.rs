//! What is recorded of the handler's response, and the response a retry gets back.

use base64::Engine as _;
use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderValue, Response, StatusCode};
use serde::de::{self, Visitor};
use serde::ser;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::encoding;
use crate::layer::Config;
use crate::problem::Problem;

/// The header a replayed response carries: `Idempotent-Replayed: true`.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// What is recorded of a response: its status, the allowed headers and the body; or,
/// for a body over the limit, only that it was too large; or, for a body that failed
/// after the handler ran, only that it failed.
///
/// Stored as raw bytes (the engine's bytes codec, never base64): a four-byte big-endian
/// length, the [`Head`] as JSON, then the body as it was sent. Records of the earlier
/// JSON form ([`Legacy`], the body base64) still replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Recorded {
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    TooLarge {
        status: u16,
    },
    /// The handler ran, but its response body failed before it was read whole.
    BodyFailed {
        status: u16,
    },
}

/// Everything recorded of a response but its body.
#[derive(Serialize, Deserialize)]
enum Head {
    Response {
        status: u16,
        headers: Vec<(String, String)>,
    },
    TooLarge {
        status: u16,
    },
    BodyFailed {
        status: u16,
    },
}

/// The form recorded before the bytes codec: JSON, the body base64 (standard, padded).
#[derive(Deserialize)]
enum Legacy {
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    TooLarge {
        status: u16,
    },
    BodyFailed {
        status: u16,
    },
}

impl Serialize for Recorded {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (head, body) = match self {
            Recorded::Response {
                status,
                headers,
                body,
            } => (
                Head::Response {
                    status: *status,
                    headers: headers.clone(),
                },
                &body[..],
            ),
            Recorded::TooLarge { status } => (Head::TooLarge { status: *status }, &[][..]),
            Recorded::BodyFailed { status } => (Head::BodyFailed { status: *status }, &[][..]),
        };
        let head = serde_json::to_vec(&head).map_err(ser::Error::custom)?;
        let length = u32::try_from(head.len()).map_err(ser::Error::custom)?;
        let mut frame = Vec::with_capacity(4 + head.len() + body.len());
        frame.extend_from_slice(&length.to_be_bytes());
        frame.extend_from_slice(&head);
        frame.extend_from_slice(body);
        serializer.serialize_bytes(&frame)
    }
}

impl<'de> Deserialize<'de> for Recorded {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RecordedVisitor)
    }
}

struct RecordedVisitor;

impl<'de> Visitor<'de> for RecordedVisitor {
    type Value = Recorded;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a recorded response")
    }

    /// The bytes form: length, head, body.
    fn visit_bytes<E: de::Error>(self, frame: &[u8]) -> Result<Recorded, E> {
        let corrupt = || E::custom("the recorded response is shorter than its head");
        let (length, rest) = frame.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let length = u32::from_be_bytes(*length) as usize;
        let (head, body) = rest.split_at_checked(length).ok_or_else(corrupt)?;
        Ok(match serde_json::from_slice(head).map_err(E::custom)? {
            Head::Response { status, headers } => Recorded::Response {
                status,
                headers,
                // A replay shares the body with the record (no copy of it); a frame
                // read from anywhere else is copied.
                body: idem_core::replayed_bytes(body)
                    .unwrap_or_else(|| Bytes::copy_from_slice(body)),
            },
            Head::TooLarge { status } => Recorded::TooLarge { status },
            Head::BodyFailed { status } => Recorded::BodyFailed { status },
        })
    }

    /// The JSON form of earlier versions.
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Recorded, A::Error> {
        Ok(
            match Legacy::deserialize(de::value::MapAccessDeserializer::new(map))? {
                Legacy::Response {
                    status,
                    headers,
                    body,
                } => Recorded::Response {
                    status,
                    headers,
                    body: base64::engine::general_purpose::STANDARD
                        .decode(body)
                        .map_err(de::Error::custom)?
                        .into(),
                },
                Legacy::TooLarge { status } => Recorded::TooLarge { status },
                Legacy::BodyFailed { status } => Recorded::BodyFailed { status },
            },
        )
    }
}

impl Recorded {
    /// What is recorded of the handler's response; `None` for a server error (5xx) when
    /// the layer does not record them (the key is released).
    pub(crate) fn of(response: &Response<Bytes>, config: &Config) -> Option<Recorded> {
        if !Recorded::records(response.status(), config) {
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
                    // A value is opaque bytes: UTF-8 beyond ASCII (a `Location` with
                    // a non-ASCII path) is kept too; only a value that is not UTF-8,
                    // which the JSON head cannot hold, is left out (logged).
                    response.headers().get_all(name).iter().filter_map(move |value| {
                        match std::str::from_utf8(value.as_bytes()) {
                            Ok(text) => Some((name.to_string(), text.to_owned())),
                            Err(_) => {
                                tracing::warn!(target: "idem", header = %name,
                                    "a recorded header's value is not UTF-8: left out of the record");
                                None
                            }
                        }
                    })
                })
                .collect();
        Some(Recorded::Response {
            status,
            headers,
            body: response.body().clone(),
        })
    }

    /// Whether a response of this status is recorded: not a server error (5xx), unless
    /// the layer records them.
    pub(crate) fn records(status: StatusCode, config: &Config) -> bool {
        !status.is_server_error() || config.record_server_errors
    }

    /// The replayed response, with `Idempotent-Replayed: true`; 406
    /// [`EncodingNotAcceptable`](Problem::EncodingNotAcceptable) instead if its
    /// `Content-Encoding` is not one the request's `Accept-Encoding` field lines
    /// (`accept_encoding`) allow.
    pub(crate) fn replay(
        self,
        config: &Config,
        accept_encoding: &[HeaderValue],
    ) -> Response<Bytes> {
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
        let Ok(status) = StatusCode::from_u16(status) else {
            return Problem::RecordUnreadable
                .response("the recorded response is corrupt", config.retry_after_s);
        };
        let coding = headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("content-encoding"))
            .map(|(_, value)| value.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if !encoding::acceptable(accept_encoding, &coding) {
            return Problem::EncodingNotAcceptable.response(
                &format!(
                    "the response to this key was recorded with Content-Encoding {coding}, \
                     which this request's Accept-Encoding does not accept; send an \
                     Accept-Encoding that allows it (the handler does not run again)"
                ),
                config.retry_after_s,
            );
        }
        let mut response = Response::new(body);
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
