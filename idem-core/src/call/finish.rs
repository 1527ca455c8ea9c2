//! Finishing an attempt whose body ran: its value or error recorded (completion), or
//! its key released, and what the caller is told.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Recordable;

use super::destination::Destination;
use super::guard::{store_call_within, Guard};
use super::policy::ErrorPolicy;
use super::report::{Report, Source};
use crate::codec::{self, Encoded};
use crate::error::Error;
use crate::observe::{self, CallOutcome};
use crate::protocol::{self, CompleteAnswer, ReleaseAnswer};
use crate::store::{
    Attempt, Completion, Hold, Isolation, Outcome, StoreError, StoreErrorKind, Written,
};

/// The first pause before a completion or a release is sent again, and the longest.
const RESEND_FIRST: Duration = Duration::from_millis(10);
const RESEND_MAX: Duration = Duration::from_millis(200);

/// The value's encoding a completion carried, or the one too large to record
/// (`spilled`): what an [`Error::LeaseLost`] hands back.
pub(super) fn encoded(completion: Completion, spilled: Option<Encoded>) -> Option<Encoded> {
    let Completion { data, codec, .. } = completion;
    data.map(|data| Encoded { codec, data }).or(spilled)
}

/// How a body failed.
pub(super) enum Failure<E> {
    /// It returned an error.
    Returned(E),
    /// It panicked; the panic goes on once the key is released.
    Panicked(Box<dyn Any + Send>),
}

/// How a completion ended.
pub(super) enum Completed {
    /// Recorded, replayed until `expires_at_s`.
    Recorded { expires_at_s: u64 },
    /// The store failed (its error): executed, not recorded.
    NotRecorded(StoreError),
    /// Refused: another attempt holds the key, or the record is gone.
    LeaseLost,
}

impl Guard {
    /// Sends a completion or a release (`send` makes the request), and sends it again
    /// after a transient error, pausing in between, while the engine's store timeout (or
    /// the call's TTL, if shorter), counted from the first send, allows; each resend gets
    /// what is left of it. A resend is safe: the store's answer to it is read by the same
    /// rules, where a refusal that shows this attempt's own write counts as applied (an
    /// earlier send that was applied, its answer lost). The last answer is returned.
    async fn resent<F>(
        &self,
        operation: &'static str,
        send: impl Fn() -> F,
    ) -> Result<Written<()>, StoreError>
    where
        F: Future<Output = Result<Written<()>, StoreError>>,
    {
        let first = Instant::now();
        let answer = self.store_call(operation, send()).await;
        self.resent_after(operation, first, answer, send).await
    }

    /// [`resent`](Guard::resent) once the first send (sent at `first`, a batch's
    /// perhaps) was answered with `answer`.
    pub(super) async fn resent_after<F>(
        &self,
        operation: &'static str,
        first: Instant,
        mut answer: Result<Written<()>, StoreError>,
        send: impl Fn() -> F,
    ) -> Result<Written<()>, StoreError>
    where
        F: Future<Output = Result<Written<()>, StoreError>>,
    {
        // Not past the record's TTL either: a first send applied and then expired would
        // make a resend's refusal look like a lost lease.
        let timeout = self.engine.defaults().store_timeout.min(self.ttl);
        let mut pause = RESEND_FIRST;
        loop {
            let left = timeout.saturating_sub(first.elapsed() + pause);
            match &answer {
                Err(error) if error.kind() == StoreErrorKind::Transient && !left.is_zero() => {
                    tracing::debug!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                        %error, "the {operation} failed; sending it again");
                }
                _ => return answer,
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RESEND_MAX);
            answer = store_call_within(&self.namespace, operation, send(), left).await;
        }
    }

    /// A failed body: its error recorded (as `errors` says) or its key released; the
    /// error goes back to the caller, a panic goes on. `D` is where the attempt's
    /// completion was to be written: when it held the key (the lock-held form), the
    /// error is recorded in a fresh one.
    pub(super) async fn fail<D, T, E, P>(
        &self,
        attempt: &Attempt,
        failure: Failure<E>,
        errors: &P,
    ) -> Result<Report<T>, E>
    where
        D: Destination,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        match failure {
            Failure::Returned(error) => {
                let limit = self.engine.store().limits().max_data_bytes;
                match errors.record(&error) {
                    Some(Ok(data)) if data.len() <= limit => {
                        let data = Some(codec::encode_json(data));
                        if self.holds_key {
                            self.record_after_rollback::<D>(Outcome::Err, data).await;
                        } else {
                            let completion =
                                self.terms()
                                    .completion(self.clock_now(), Outcome::Err, data);
                            self.complete_outcome(attempt, &completion).await;
                        }
                    }
                    Some(Ok(data)) => {
                        tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                            bytes = data.len(), limit, "the error is too large to record; releasing the key");
                        self.release(attempt).await;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                            error = %e, "the error cannot be encoded; releasing the key");
                        self.release(attempt).await;
                    }
                    None => self.release(attempt).await,
                }
                let text = errors.describe(&error);
                tracing::debug!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                    fence = attempt.fence, outcome = CallOutcome::Released.as_str(),
                    error = text.as_deref().unwrap_or("(not describable)"), "the body failed");
                observe::call(&self.namespace, CallOutcome::Released);
                Err(error)
            }
            Failure::Panicked(panic) => {
                self.release(attempt).await;
                self.outcome(CallOutcome::Released, "the body panicked");
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Records `value` in the store: the completion of a plain call.
    pub(super) async fn complete_value<T: Recordable, E: From<Error>>(
        &self,
        attempt: &Attempt,
        value: T,
    ) -> Result<Report<T>, E> {
        let (spilled, completion) = self.value_completion(&value);
        let store = &self.engine.store();
        let answer = self
            .resent("complete", || store.complete(attempt, &completion))
            .await;
        self.value_completed(attempt, value, spilled, completion, answer)
    }

    /// What the caller of a plain call gets once `value`'s `completion` (made by
    /// [`value_completion`](Guard::value_completion), with its `spilled` encoding) was
    /// answered with `answer`, its resends included; remembered in the cache if
    /// recorded.
    pub(super) fn value_completed<T, E: From<Error>>(
        &self,
        attempt: &Attempt,
        value: T,
        spilled: Option<Encoded>,
        completion: Completion,
        answer: Result<Written<()>, StoreError>,
    ) -> Result<Report<T>, E> {
        let completed = self.completed(attempt, &completion, answer);
        if let Completed::Recorded { .. } = completed {
            self.remember(attempt, &completion);
        }
        self.reported(attempt, completed, value, encoded(completion, spilled))
    }

    /// The completion that records `value`, and the value's encoding when it is not in
    /// the completion (too large to record): an [`Error::LeaseLost`] carries the
    /// encoding either way.
    pub(super) fn value_completion<T: Recordable>(
        &self,
        value: &T,
    ) -> (Option<Encoded>, Completion) {
        let limit = self.engine.store().limits().max_data_bytes;
        let encoded = match codec::encode(value) {
            Ok(encoded) => Some(encoded),
            Err(error) => {
                tracing::error!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                    %error, "the value cannot be encoded; recording it as not stored");
                None
            }
        };
        let (outcome, data, spilled) = match encoded {
            Some(data) if data.data.len() <= limit => (Outcome::Ok, Some(data), None),
            Some(data) => {
                tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                    bytes = data.data.len(), limit, "the value is too large to record; duplicates will get a result-not-stored error");
                (Outcome::NotStored, None, Some(data))
            }
            None => (Outcome::NotStored, None, None),
        };
        let completion = self.terms().completion(self.clock_now(), outcome, data);
        (spilled, completion)
    }

    /// What the caller gets once the value's completion ended as `completed`.
    pub(super) fn reported<T, E: From<Error>>(
        &self,
        attempt: &Attempt,
        completed: Completed,
        value: T,
        encoded: Option<Encoded>,
    ) -> Result<Report<T>, E> {
        let report = |source, replayed_until_ms| Report {
            value,
            source,
            fence: attempt.fence,
            replayed_until_ms,
        };
        match completed {
            Completed::Recorded { expires_at_s } => {
                self.outcome(CallOutcome::Ran, "ran and recorded");
                Ok(report(Source::Ran, Some(expires_at_s.saturating_mul(1000))))
            }
            Completed::NotRecorded(_) => {
                observe::call(&self.namespace, CallOutcome::RanNotRecorded);
                Ok(report(Source::RanNotRecorded, None))
            }
            Completed::LeaseLost => {
                observe::call(&self.namespace, CallOutcome::LeaseLost);
                Err(Error::LeaseLost {
                    namespace: self.namespace.to_string(),
                    digest: String::from(self.digest()),
                    value: encoded,
                }
                .into())
            }
        }
    }

    /// Completes the attempt in the store with `completion`, an outcome other than a
    /// value (a recorded error).
    pub(super) async fn complete_outcome(&self, attempt: &Attempt, completion: &Completion) {
        let store = &self.engine.store();
        let answer = self
            .resent("complete", || store.complete(attempt, completion))
            .await;
        if let Completed::Recorded { .. } = self.completed(attempt, completion, answer) {
            self.remember(attempt, completion);
        }
    }

    /// What the answer to `completion` means, logged.
    pub(super) fn completed(
        &self,
        attempt: &Attempt,
        completion: &Completion,
        answer: Result<Written<()>, StoreError>,
    ) -> Completed {
        match answer {
            Ok(written) => match protocol::after_complete(written, attempt) {
                CompleteAnswer::Recorded => Completed::Recorded {
                    expires_at_s: completion.expires_at_s,
                },
                CompleteAnswer::LeaseLost { current_fence } => {
                    tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                        fence = attempt.fence, current_fence,
                        "completion refused: the lease was lost to another attempt or the record is gone");
                    Completed::LeaseLost
                }
            },
            Err(error) => {
                tracing::error!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                    fence = attempt.fence, %error,
                    "executed but not recorded: the store failed at completion; the lease will lapse");
                Completed::NotRecorded(error)
            }
        }
    }

    /// Keeps the record `completion` wrote for `attempt` in the engine's local cache,
    /// if it has one: called once the completion is recorded for good (committed).
    pub(super) fn remember(&self, attempt: &Attempt, completion: &Completion) {
        let Some(cache) = self.engine.cache() else {
            return;
        };
        let mut record = Arc::new(self.request.record(attempt.fence));
        if let Written::Applied(()) = protocol::complete(Some(&mut record), attempt, completion) {
            cache.put(record, self.clock_now());
        }
    }

    /// Releases the key; in the lock-held form the rollback that came before freed it
    /// already, and nothing of the attempt is left in the store to release.
    pub(super) async fn release(&self, attempt: &Attempt) {
        if !self.holds_key {
            let _ = self.send_release(attempt).await;
        }
    }

    /// Records an outcome for a lock-held attempt whose transaction was rolled back
    /// (the body's writes must not persist, its error must), the lock-held way: a fresh
    /// destination `D` takes the key (its hold, not waiting for another holder), the
    /// completion is written in it and committed. Nothing is committed before the
    /// completion, so a crash, a cancelled call or a failed write in between rolls it
    /// all back and leaves the key free: never a record in progress under a lease
    /// nobody renews. If the key is refused or busy (another attempt took it, or
    /// recorded it, after the rollback), nothing is recorded: that attempt decides what
    /// the record holds.
    async fn record_after_rollback<D: Destination>(&self, outcome: Outcome, data: Option<Encoded>) {
        let failed = |what: &str, error: &StoreError| {
            tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                %error, "the error was not recorded: {what} failed");
        };
        let mut request = self.request.clone();
        self.terms().stamp(&mut request, self.clock_now());
        // The body does not run in it: the weakest level, which no serialization
        // failure refuses.
        let opened = D::open(
            &self.engine,
            &self.namespace,
            Some(Isolation::ReadCommitted),
        )
        .await;
        let mut destination = match opened {
            Ok(destination) => destination,
            Err(error) => return failed("opening its transaction", &error),
        };
        let held = self
            .store_call("begin", destination.hold(&request, None))
            .await;
        let fence = match held {
            Ok(Hold::Taken(fence)) => fence,
            Ok(_) => {
                destination.discard(self).await;
                tracing::debug!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                    "the error was not recorded: another attempt took the key after the rollback");
                return;
            }
            Err(error) => {
                destination.discard(self).await;
                return failed("the hold that would record it", &error);
            }
        };
        let attempt = Attempt {
            id: request.id.clone(),
            owner: request.owner,
            fence,
        };
        let completion = self.terms().completion(self.clock_now(), outcome, data);
        destination
            .complete_outcome(self, &attempt, &completion)
            .await;
    }

    /// Releases the key, logs how it went, and hands back the store's answer.
    pub(super) async fn send_release(&self, attempt: &Attempt) -> Result<Written<()>, StoreError> {
        let store = &self.engine.store();
        let answer = self.resent("release", || store.release(attempt)).await;
        match &answer {
            // A refusal is rare: its record is cloned to be read by the engine's rules.
            Ok(written) => match protocol::after_release(written.clone(), attempt) {
                ReleaseAnswer::Released => {
                    tracing::debug!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                        fence = attempt.fence, "released");
                }
                ReleaseAnswer::AlreadyReleased => {}
                ReleaseAnswer::Lost if matches!(written, Written::Refused(Some(record)) if record.shows_completion_by(attempt)) =>
                {
                    tracing::debug!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                        fence = attempt.fence, "release refused: the record holds this attempt's completion");
                }
                ReleaseAnswer::Lost => {
                    tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                        fence = attempt.fence, "release refused: the lease was already lost");
                }
            },
            Err(error) => {
                tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                    fence = attempt.fence, %error, "release failed; the lease will lapse");
            }
        }
        answer
    }
}
