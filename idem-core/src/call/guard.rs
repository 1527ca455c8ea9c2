//! One attempt of one call: take the key (or find its live record), run the body under
//! its lease, and record or release what the body ended with.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Instrument as _;

use super::policy::ErrorPolicy;
use super::report::{Report, Source};
use crate::context::Context;
use crate::engine::Engine;
use crate::error::Error;
use crate::observe::{self, CallOutcome};
use crate::protocol::{self, BeginAnswer, CompleteAnswer, ReleaseAnswer, Terms, BEGIN_TRIES};
use crate::store::{Attempt, Outcome, Record, State, StoreError, StoreErrorKind};

/// The first and the longest pause between two polls of `wait`.
const WAIT_FIRST: Duration = Duration::from_millis(50);
const WAIT_MAX: Duration = Duration::from_secs(1);

/// One attempt of one call: everything the rules need, resolved.
pub(super) struct Guard {
    pub(super) engine: Engine,
    pub(super) namespace: String,
    pub(super) digest: String,
    pub(super) id: String,
    pub(super) owner: String,
    pub(super) fingerprint: Option<String>,
    pub(super) ttl: Duration,
    pub(super) lease: Duration,
    pub(super) max_duration: Duration,
    pub(super) wait: Option<Duration>,
}

/// What begin found.
enum Found {
    /// This attempt holds the key.
    Held { fence: u64, lease_until_ms: u64 },
    /// A live record of another attempt.
    Live(Record),
}

/// What the body's future ended with.
type BodyExit<T, E> = Result<Result<T, E>, Box<dyn std::any::Any + Send>>;

impl Guard {
    pub(super) async fn run<T, E, B, Fut, P>(&self, body: B, errors: &P) -> Result<Report<T>, E>
    where
        B: FnOnce(Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        let found = self.acquire().await.inspect_err(|error| {
            if matches!(error, Error::Store { .. }) {
                observe::call(&self.namespace, CallOutcome::StoreError);
            }
        })?;
        let (fence, lease_until_ms) = match found {
            Found::Held {
                fence,
                lease_until_ms,
            } => (fence, lease_until_ms),
            Found::Live(record) => return self.replay(record, errors),
        };
        let attempt = Attempt {
            id: self.id.clone(),
            owner: self.owner.clone(),
            fence,
        };
        if !protocol::lease_is_live(self.clock_now(), lease_until_ms) {
            // Begin answered after the lease it took had already lapsed: another caller
            // may hold the key by now, so the body must not start.
            self.release(&attempt).await;
            observe::call(&self.namespace, CallOutcome::StoreError);
            return Err(self
                .store_error(
                    "begin",
                    StoreError::transient(format!(
                        "the store answered begin after the {:?} lease had lapsed; the body was \
                         not run (the store is too slow for this lease)",
                        self.lease
                    )),
                )
                .into());
        }
        let context = Context::new(
            self.namespace.clone(),
            self.digest.clone(),
            fence,
            lease_until_ms,
            self.engine.clock().clone(),
        );
        // The closure is called inside the guard too: a panic before its future exists
        // releases the key like one inside it.
        let for_body = context.clone();
        let body = context
            .clone()
            .scope(AssertUnwindSafe(async move { body(for_body).await }).catch_unwind());
        // The body's own events carry the attempt: namespace, digest and fence.
        let span = tracing::info_span!(target: "idem", "idem", namespace = %self.namespace,
            digest = %self.digest, fence);
        async {
            let exit = self.drive(&attempt, &context, lease_until_ms, body).await;
            self.finish(&attempt, exit, errors).await
        }
        .instrument(span)
        .await
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
        let timeout = self.engine.defaults().store_timeout;
        let started = observe::Started::now();
        let (result, class) = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(answer)) => (Ok(answer), None),
            Ok(Err(error)) => {
                let class = match error.kind() {
                    StoreErrorKind::Transient => "transient",
                    StoreErrorKind::Permanent => "permanent",
                    StoreErrorKind::Malformed => "malformed",
                };
                (Err(error), Some(class))
            }
            Err(_) => (
                Err(StoreError::transient(format!(
                    "the store did not answer within {timeout:?}"
                ))),
                Some("timeout"),
            ),
        };
        observe::store_call(&self.namespace, operation, started, class);
        result
    }

    /// The event and the metric of a call's outcome, in one field format
    /// (`outcome = ...`): debug level, since there is one per call.
    pub(super) fn outcome(&self, outcome: CallOutcome, message: &'static str) {
        tracing::debug!(target: "idem", namespace = %self.namespace, digest = %self.digest,
            outcome = outcome.as_str(), "{message}");
        observe::call(&self.namespace, outcome);
    }

    pub(super) fn store_error(&self, operation: &'static str, source: StoreError) -> Error {
        if source.kind() == StoreErrorKind::Malformed {
            return self.decode_error(source.to_string());
        }
        Error::Store {
            namespace: self.namespace.clone(),
            operation,
            source,
        }
    }

    /// Begins, or finds the live record of another attempt; with `wait`, polls an
    /// in-progress record until it completes or lapses.
    async fn acquire(&self) -> Result<Found, Error> {
        let clock = &self.engine.clock();
        let wait_until = self
            .wait
            .map(|wait| self.clock_now().saturating_add(wait.as_millis() as u64));
        let mut pause = WAIT_FIRST;
        let mut waiting: Option<Instant> = None;
        loop {
            let record = match self.begin().await? {
                Found::Live(record) => record,
                held => {
                    if let Some(started) = waiting {
                        observe::waited(&self.namespace, started.elapsed());
                    }
                    return Ok(held);
                }
            };
            if let (Some(mine), Some(theirs)) = (&self.fingerprint, &record.fingerprint) {
                if mine != theirs {
                    self.outcome(CallOutcome::PayloadMismatch, "same key, another payload");
                    return Err(Error::PayloadMismatch {
                        namespace: self.namespace.clone(),
                        digest: self.digest.clone(),
                    });
                }
            }
            if record.state == State::Completed {
                if let Some(started) = waiting {
                    observe::waited(&self.namespace, started.elapsed());
                }
                return Ok(Found::Live(record));
            }
            let now = self.clock_now();
            match wait_until {
                Some(until) if now < until => {
                    if waiting.is_none() {
                        tracing::debug!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                            fence = record.fence, "waiting for the attempt in progress");
                        waiting = Some(Instant::now());
                    }
                    let jittered =
                        fastrand::u64(pause.as_millis() as u64 / 2..=pause.as_millis() as u64);
                    clock
                        .sleep(Duration::from_millis(jittered.min(until - now)))
                        .await;
                    pause = (pause * 2).min(WAIT_MAX);
                }
                _ => {
                    if let Some(started) = waiting {
                        observe::waited(&self.namespace, started.elapsed());
                    }
                    self.outcome(CallOutcome::InProgress, "another attempt holds the key");
                    return Err(Error::InProgress {
                        namespace: self.namespace.clone(),
                        digest: self.digest.clone(),
                    });
                }
            }
        }
    }

    /// One begin, tried again (a bounded number of times) only when the refusal showed a
    /// free record.
    async fn begin(&self) -> Result<Found, Error> {
        let store = &self.engine.store();
        for _ in 0..BEGIN_TRIES {
            let request = self.terms().begin(
                &self.id,
                &self.owner,
                self.clock_now(),
                self.fingerprint.clone(),
            );
            let written = self
                .store_call("begin", store.begin(&request))
                .await
                .map_err(|e| self.store_error("begin", e))?;
            match protocol::after_begin(written, &request) {
                BeginAnswer::Held {
                    fence,
                    lease_until_ms,
                } => {
                    if fence > 1 {
                        tracing::debug!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                            fence, "took the key over from an earlier attempt (it lapsed, was released or expired)");
                    }
                    return Ok(Found::Held {
                        fence,
                        lease_until_ms,
                    });
                }
                BeginAnswer::Live(record) => return Ok(Found::Live(record)),
                // Free or gone by the time the store read it: try again.
                BeginAnswer::Again => continue,
            }
        }
        Err(self.store_error(
            "begin",
            StoreError::transient(format!(
                "begin was refused {BEGIN_TRIES} times although the record read back as free; \
                 the store's condition and its read disagree"
            )),
        ))
    }

    async fn finish<T, E, P>(
        &self,
        attempt: &Attempt,
        exit: BodyExit<T, E>,
        errors: &P,
    ) -> Result<Report<T>, E>
    where
        T: Serialize,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        match exit {
            Ok(Ok(value)) => self.complete_value(attempt, value).await,
            Ok(Err(error)) => {
                let limit = self.engine.store().limits().max_data_bytes;
                match errors.record(&error) {
                    Some(Ok(data)) if data.len() <= limit => {
                        self.complete(attempt, Outcome::Err, Some(data)).await;
                    }
                    Some(Ok(data)) => {
                        tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                            bytes = data.len(), limit, "the error is too large to record; releasing the key");
                        self.release(attempt).await;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                            error = %e, "the error cannot be encoded; releasing the key");
                        self.release(attempt).await;
                    }
                    None => self.release(attempt).await,
                }
                let text = errors.describe(&error);
                tracing::debug!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                    fence = attempt.fence, outcome = CallOutcome::Released.as_str(),
                    error = text.as_deref().unwrap_or("(not describable)"), "the body failed");
                observe::call(&self.namespace, CallOutcome::Released);
                Err(error)
            }
            Err(panic) => {
                self.release(attempt).await;
                self.outcome(CallOutcome::Released, "the body panicked");
                std::panic::resume_unwind(panic)
            }
        }
    }

    async fn complete_value<T: Serialize, E: From<Error>>(
        &self,
        attempt: &Attempt,
        value: T,
    ) -> Result<Report<T>, E> {
        let limit = self.engine.store().limits().max_data_bytes;
        let encoded = match serde_json::to_string(&value) {
            Ok(encoded) => Some(encoded),
            Err(error) => {
                tracing::error!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                    %error, "the value cannot be encoded; recording it as not stored");
                None
            }
        };
        let (outcome, data) = match encoded.clone() {
            Some(data) if data.len() <= limit => (Outcome::Ok, Some(data)),
            Some(data) => {
                tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                    bytes = data.len(), limit, "the value is too large to record; duplicates will get a result-not-stored error");
                (Outcome::NotStored, None)
            }
            None => (Outcome::NotStored, None),
        };
        let report = |source, replayed_until_ms| Report {
            value,
            source,
            fence: attempt.fence,
            replayed_until_ms,
        };
        match self.complete(attempt, outcome, data).await {
            Completed::Recorded { expires_at_s } => {
                self.outcome(CallOutcome::Ran, "ran and recorded");
                Ok(report(Source::Ran, Some(expires_at_s.saturating_mul(1000))))
            }
            Completed::NotRecorded => {
                observe::call(&self.namespace, CallOutcome::RanNotRecorded);
                Ok(report(Source::RanNotRecorded, None))
            }
            Completed::LeaseLost => {
                observe::call(&self.namespace, CallOutcome::LeaseLost);
                Err(Error::LeaseLost {
                    namespace: self.namespace.clone(),
                    digest: self.digest.clone(),
                    value: encoded,
                }
                .into())
            }
        }
    }

    async fn complete(
        &self,
        attempt: &Attempt,
        outcome: Outcome,
        data: Option<String>,
    ) -> Completed {
        let completion = self.terms().completion(self.clock_now(), outcome, data);
        let store = &self.engine.store();
        match self
            .store_call("complete", store.complete(attempt, &completion))
            .await
        {
            Ok(written) => match protocol::after_complete(written, attempt) {
                CompleteAnswer::Recorded => Completed::Recorded {
                    expires_at_s: completion.expires_at_s,
                },
                CompleteAnswer::LeaseLost { current_fence } => {
                    tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                        fence = attempt.fence, current_fence,
                        "completion refused: the lease was lost to another attempt or the record is gone");
                    Completed::LeaseLost
                }
            },
            Err(error) => {
                tracing::error!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                    fence = attempt.fence, %error,
                    "executed but not recorded: the store failed at completion; the lease will lapse");
                Completed::NotRecorded
            }
        }
    }

    async fn release(&self, attempt: &Attempt) {
        let store = &self.engine.store();
        match self.store_call("release", store.release(attempt)).await {
            Ok(written) => match protocol::after_release(written, attempt) {
                ReleaseAnswer::Released => {
                    tracing::debug!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                        fence = attempt.fence, "released");
                }
                ReleaseAnswer::AlreadyReleased => {}
                ReleaseAnswer::Lost => {
                    tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                        fence = attempt.fence, "release refused: the lease was already lost");
                }
            },
            Err(error) => {
                tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                    fence = attempt.fence, %error, "release failed; the lease will lapse");
            }
        }
    }
}

/// How a completion ended.
enum Completed {
    /// Recorded, replayed until `expires_at_s`.
    Recorded { expires_at_s: u64 },
    /// The store failed: executed, not recorded.
    NotRecorded,
    /// Refused: another attempt holds the key, or the record is gone.
    LeaseLost,
}
