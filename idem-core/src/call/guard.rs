//! One attempt of one call, and what its phases share: the attempt's settings, the
//! timed store call every phase sends through, and its events.
//!
//! The phases sit in the files beside this one, each an `impl Guard` that calls only
//! down into this file or into a phase before it: [`take`](super::take) takes the key,
//! [`heartbeat`](super::heartbeat) keeps it while the body runs,
//! [`finish`](super::finish) records or releases what the body ended with,
//! [`replay`](super::replay) answers a duplicate from a completed record,
//! [`settle`](super::settle) settles a commit whose answer was lost, and
//! [`attempt`](super::attempt) runs them in order.

use crate::key::Namespace;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use crate::context::Context;
use crate::engine::Engine;
use crate::error::Error;
use crate::key::DigestHex;
use crate::observe::{self, CallOutcome};
use crate::protocol::Terms;
use crate::store::{Attempt, Begin, Isolation, StoreError, StoreErrorKind};

/// One attempt of one call: everything the rules need, resolved.
pub(super) struct Guard {
    pub(super) engine: Engine,
    pub(super) namespace: Namespace,
    /// The begin this attempt sends: its record id (`{namespace}#{digest}`), owner and
    /// fingerprint, held once; its times are set again before each send.
    pub(super) request: Begin,
    pub(super) ttl: Duration,
    pub(super) lease: Duration,
    pub(super) max_duration: Duration,
    pub(super) wait: Option<Duration>,
    /// The isolation level of the body's transaction, if it has one.
    pub(super) isolation: Option<Isolation>,
    /// The key is held by the body's open transaction (the lock-held form), not by a
    /// clock lease: there is nothing to renew, and nothing to release once it is rolled
    /// back.
    pub(super) holds_key: bool,
}

/// A key this attempt holds, with the context its body runs under.
pub(super) struct Held {
    pub(super) context: Context,
    pub(super) lease_until_ms: u64,
}

impl Held {
    /// The attempt that holds the key: kept once, in the context's journal (its steps
    /// write under it).
    pub(super) fn attempt(&self) -> &Attempt {
        self.context
            .attempt()
            .expect("a held key's context has its attempt")
    }
}

impl Guard {
    /// The key's digest (the attempt's token), as hex digits.
    pub(super) fn digest(&self) -> DigestHex<'_> {
        self.request.id.digest_hex()
    }

    /// The span of an attempt: the body's own events carry its namespace, digest and
    /// fence.
    pub(super) fn span(&self, attempt: &Attempt) -> tracing::Span {
        tracing::info_span!(target: "idem", "idem", namespace = %self.namespace,
            digest = %self.digest(), fence = attempt.fence)
    }

    pub(super) fn clock_now(&self) -> u64 {
        self.engine.clock().now_ms()
    }

    /// The call's lease and TTL, from which every request's times are computed.
    pub(super) fn terms(&self) -> Terms {
        Terms {
            lease_ms: self.lease.as_millis() as u64,
            ttl_ms: self.ttl.as_millis() as u64,
        }
    }

    /// One store call under the engine's timeout, measured.
    pub(super) async fn store_call<R>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<R, StoreError>>,
    ) -> Result<R, StoreError> {
        store_call(&self.engine, &self.namespace, operation, call).await
    }

    /// The event and the metric of a call's outcome, in one field format
    /// (`outcome = ...`): debug level, since there is one per call.
    pub(super) fn outcome(&self, outcome: CallOutcome, message: &'static str) {
        tracing::debug!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
            outcome = outcome.as_str(), "{message}");
        observe::call(&self.namespace, outcome);
    }

    pub(super) fn store_error(&self, operation: &'static str, source: StoreError) -> Error {
        if source.kind() == StoreErrorKind::Malformed {
            return self.decode_error(source.to_string());
        }
        Error::Store {
            namespace: self.namespace.to_string(),
            operation,
            source,
        }
    }

    pub(super) fn decode_error(&self, reason: impl Into<String>) -> Error {
        Error::Decode {
            namespace: self.namespace.to_string(),
            digest: String::from(self.digest()),
            reason: reason.into(),
        }
    }
}

/// One store call under the engine's timeout, measured: every store call of a call goes
/// through here, guarded or not.
pub(crate) async fn store_call<R>(
    engine: &Engine,
    namespace: &Namespace,
    operation: &'static str,
    call: impl Future<Output = Result<R, StoreError>>,
) -> Result<R, StoreError> {
    store_call_within(namespace, operation, call, engine.defaults().store_timeout).await
}

/// [`store_call`] under `timeout` instead of the engine's: a resend gets what is left
/// of the first send's timeout.
pub(super) async fn store_call_within<R>(
    namespace: &Namespace,
    operation: &'static str,
    call: impl Future<Output = Result<R, StoreError>>,
    timeout: Duration,
) -> Result<R, StoreError> {
    let started = observe::Started::now();
    // The call is polled once per wake-up. A store that answers at once (the
    // in-memory one) arms no timer; the timeout is armed the first time the call is
    // pending, and polled only then and on later wake-ups.
    let mut call = std::pin::pin!(call);
    let mut timer = std::pin::pin!(None::<tokio::time::Sleep>);
    let answer = std::future::poll_fn(|cx| {
        if let Poll::Ready(answer) = call.as_mut().poll(cx) {
            return Poll::Ready(Some(answer));
        }
        if timer.is_none() {
            timer.set(Some(tokio::time::sleep(timeout)));
        }
        match timer.as_mut().as_pin_mut().map(|timer| timer.poll(cx)) {
            Some(Poll::Pending) => Poll::Pending,
            _ => Poll::Ready(None),
        }
    })
    .await;
    let (result, class) = match answer {
        Some(Ok(answer)) => (Ok(answer), None),
        Some(Err(error)) => {
            let class = match error.kind() {
                StoreErrorKind::Transient => "transient",
                StoreErrorKind::Permanent => "permanent",
                StoreErrorKind::Malformed => "malformed",
            };
            (Err(error), Some(class))
        }
        None => (
            Err(StoreError::transient(format!(
                "the store did not answer within {timeout:?}"
            ))),
            Some("timeout"),
        ),
    };
    observe::store_call(namespace, operation, started, class);
    result
}
