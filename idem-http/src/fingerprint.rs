//! A guarded request's fingerprint: its body read whole (up to the layer's limit), then
//! the layer's fingerprint over the request's head and body. A retry whose fingerprint
//! differs from the first request's is refused (422).

use bytes::Bytes;
use http::request::Parts;
use http_body::Body as HttpBody;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use crate::layer::{BoxError, Config};
use crate::problem::{Problem, Refused};

/// The default fingerprint: SHA-256 over the method, the path, the query and the body.
pub(crate) fn default_fingerprint(parts: &Parts, body: &[u8]) -> Vec<u8> {
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

/// The request's body, read whole, and its fingerprint (hex); refused when the body is
/// over the limit or cannot be read.
pub(crate) async fn read<B>(
    config: &Config,
    parts: &Parts,
    body: B,
) -> Result<(Bytes, String), Refused>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let body = read_body(config, body).await?;
    let fingerprint = hex::encode((config.fingerprint)(parts, &body));
    Ok((body, fingerprint))
}

/// A guarded request's body is read whole (it is fingerprinted), up to the limit.
async fn read_body<B>(config: &Config, body: B) -> Result<Bytes, Refused>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let limit = config.max_request_bytes;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(Refused::new(
            Problem::RequestTooLarge,
            format!("a guarded request's body may have at most {limit} bytes"),
        )),
        Err(error) => Err(Refused::new(
            Problem::BodyUnreadable,
            format!("the request body could not be read: {error}"),
        )),
    }
}
