//! The other half of exactly once: a request sent from inside a guarded body carries an
//! `Idempotency-Key` derived from the attempt's token, so the downstream API
//! deduplicates a re-run of the body after a crash.

use http::header::HeaderName;
use http::{Extensions, HeaderValue};
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next, Result};
use sha2::{Digest, Sha256};

/// A label that tells apart two downstream requests of one body that would otherwise
/// get the same key (the same method and URL): set it with
/// `client.post(url).with_extension(Label("refund"))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label(pub String);

/// A `reqwest-middleware` middleware: inside a guarded body, each request without an
/// `Idempotency-Key` gets one, the hex SHA-256 of the attempt's token and the request's
/// label ([`Label`], or else its method, path and query: no scheme, host or port, so a
/// provider URL changed between a crash and its re-run keeps the key). Two different
/// requests of one body get different keys; the same requests of a re-run after a
/// crash (same token) get the same keys again. A request that has the header keeps it;
/// outside a body with a key nothing is added. With idem disabled (`IDEM_DISABLED`),
/// a body still has its key's token, and the keys are still sent: a duplicate request
/// never reaches the downstream API without one.
/// Inside a [step](idem_core::Context::step) the token is the step's own, so each step's
/// requests have keys of their own, and a step run again after a crash before its
/// result was journaled sends the keys its first run sent. Give every non-idempotent downstream
/// call a [`Label`]: two calls with the same method and path would share a key.
///
/// ```
/// use idem_http::IdempotencyKeyMiddleware;
///
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(IdempotencyKeyMiddleware::new())
///     .build();
/// # let _ = client;
/// ```
#[derive(Debug, Clone)]
pub struct IdempotencyKeyMiddleware {
    header: HeaderName,
}

impl Default for IdempotencyKeyMiddleware {
    fn default() -> Self {
        IdempotencyKeyMiddleware::new()
    }
}

impl IdempotencyKeyMiddleware {
    /// Sets `Idempotency-Key`.
    pub fn new() -> IdempotencyKeyMiddleware {
        IdempotencyKeyMiddleware {
            header: HeaderName::from_static("idempotency-key"),
        }
    }

    /// Sets `header` instead (for an API that names it otherwise).
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }
}

/// The downstream key of the request labelled `label`, sent by the attempt with
/// `token`.
pub fn downstream_key(token: &str, label: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(token);
    digest.update([0]);
    digest.update(label);
    hex::encode(digest.finalize())
}

/// A request's label when it has no [`Label`]: its method, path and query, without the
/// scheme, host or port, so a provider's URL changed between a crash and its re-run
/// (another host, a new base URL in the configuration) keeps the key.
fn default_label(request: &Request) -> String {
    let url = request.url();
    match url.query() {
        Some(query) => format!("{} {}?{query}", request.method(), url.path()),
        None => format!("{} {}", request.method(), url.path()),
    }
}

#[async_trait::async_trait]
impl Middleware for IdempotencyKeyMiddleware {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> Result<Response> {
        // A body with its key's token: guarded, or run on a disabled engine (no record,
        // but the downstream API must still see the same keys on a duplicate).
        let keyed = idem_core::Context::current().filter(|context| !context.token().is_empty());
        if let Some(context) = keyed {
            if !request.headers().contains_key(&self.header) {
                let label = match extensions.get::<Label>() {
                    Some(Label(label)) => label.clone(),
                    None => default_label(&request),
                };
                let key = downstream_key(context.token(), &label);
                let value = HeaderValue::from_str(&key).expect("hex is a valid header value");
                request.headers_mut().insert(self.header.clone(), value);
            }
        }
        next.run(request, extensions).await
    }
}
