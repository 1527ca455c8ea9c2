//! One attempt of one call: take the key (or find its live record), run the body under
//! its lease, and record or release what the body ended with.

use std::borrow::Cow;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::task::Poll;
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
use crate::store::{
    Attempt, Begin, Completion, Outcome, Record, State, StoreError, StoreErrorKind, Transaction,
    Written,
};

/// The first and the longest pause between two polls of `wait`.
const WAIT_FIRST: Duration = Duration::from_millis(50);
const WAIT_MAX: Duration = Duration::from_secs(1);

/// One attempt of one call: everything the rules need, resolved.
pub(super) struct Guard {
    pub(super) engine: Engine,
    pub(super) namespace: Cow<'static, str>,
    /// The begin this attempt sends: its record id (`{namespace}#{digest}`), owner and
    /// fingerprint, held once; its times are set again before each send.
    pub(super) request: Begin,
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

/// A key this attempt holds, with the context its body runs under.
struct Held {
    attempt: Attempt,
    context: Context,
    lease_until_ms: u64,
}

/// What taking the key led to: the body may run, or the value is already there.
enum Taken<T> {
    Held(Held),
    Replayed(Report<T>),
}

impl Guard {
    pub(super) async fn run<T, E, B, Fut, P>(&mut self, body: B, errors: &P) -> Result<Report<T>, E>
    where
        B: FnOnce(Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        let held = match self.take(errors).await? {
            Taken::Held(held) => held,
            Taken::Replayed(report) => return Ok(report),
        };
        let Held {
            attempt,
            context,
            lease_until_ms,
        } = &held;
        // The closure is called inside the guard too: a panic before its future exists
        // releases the key like one inside it.
        let for_body = context.clone();
        let body = context
            .clone()
            .scope(AssertUnwindSafe(async move { body(for_body).await }).catch_unwind());
        async {
            let exit = self.drive(attempt, context, *lease_until_ms, body).await;
            self.finish(attempt, exit, errors).await
        }
        .instrument(self.span(attempt))
        .await
    }

    /// [`run`](Guard::run) with the body's writes and the completion in one transaction
    /// of the store's database: see [`Call::run_in_transaction`](super::Call::run_in_transaction).
    pub(super) async fn run_in_transaction<Tx, T, E, B, P>(
        &mut self,
        store: &Tx::Store,
        body: B,
        errors: &P,
    ) -> Result<Report<T>, E>
    where
        Tx: Transaction,
        B: AsyncFnOnce(Context, &mut Tx) -> Result<T, E>,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        let held = match self.take(errors).await? {
            Taken::Held(held) => held,
            Taken::Replayed(report) => return Ok(report),
        };
        let Held {
            attempt,
            context,
            lease_until_ms,
        } = &held;
        async {
            let opened = self.store_call("open", Tx::open(store)).await;
            let mut transaction = match opened {
                Ok(transaction) => transaction,
                Err(error) => {
                    self.release(attempt).await;
                    observe::call(&self.namespace, CallOutcome::StoreError);
                    return Err(self.store_error("open", error).into());
                }
            };
            // Called inside the guard, as in `run`.
            let for_body = context.clone();
            let transaction_ref = &mut transaction;
            let body = context.clone().scope(
                AssertUnwindSafe(async move { body(for_body, transaction_ref).await })
                    .catch_unwind(),
            );
            let exit = self.drive(attempt, context, *lease_until_ms, body).await;
            match exit {
                Ok(Ok(value)) => self.commit_value(attempt, transaction, value).await,
                // The body's writes are rolled back before the key is released or its
                // error recorded, so no retry can see them.
                failed => {
                    self.roll_back(transaction).await;
                    self.finish(attempt, failed, errors).await
                }
            }
        }
        .instrument(self.span(attempt))
        .await
    }

    /// Takes the key, or replays its live record. Nothing of the body has run.
    async fn take<T, E, P>(&mut self, errors: &P) -> Result<Taken<T>, E>
    where
        T: DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        if let Some(cached) = self
            .engine
            .cache()
            .and_then(|cache| cache.get(&self.request.id, self.clock_now()))
        {
            self.check_payload(&cached.record)?;
            return self.replay(&cached.record, errors).map(Taken::Replayed);
        }
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
            Found::Live(record) => return self.replay(&record, errors).map(Taken::Replayed),
        };
        let attempt = Attempt {
            id: self.request.id.clone(),
            owner: self.request.owner.clone(),
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
            self.digest().to_owned(),
            fence,
            lease_until_ms,
            self.engine.clock().clone(),
        );
        Ok(Taken::Held(Held {
            attempt,
            context,
            lease_until_ms,
        }))
    }

    /// The key's digest (the attempt's token): the record id after its namespace.
    pub(super) fn digest(&self) -> &str {
        &self.request.id[self.namespace.len() + 1..]
    }

    /// The span of an attempt: the body's own events carry its namespace, digest and
    /// fence.
    fn span(&self, attempt: &Attempt) -> tracing::Span {
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

    /// Refuses a live record of the same key written for another payload.
    fn check_payload(&self, record: &Record) -> Result<(), Error> {
        match (&self.request.fingerprint, &record.fingerprint) {
            (Some(mine), Some(theirs)) if mine != theirs => {
                self.outcome(CallOutcome::PayloadMismatch, "same key, another payload");
                Err(Error::PayloadMismatch {
                    namespace: self.namespace.to_string(),
                    digest: self.digest().to_owned(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Keeps the record `completion` wrote for `attempt` in the engine's local cache,
    /// if it has one: called once the completion is recorded for good (committed).
    fn remember(&self, attempt: &Attempt, completion: &Completion) {
        let Some(cache) = self.engine.cache() else {
            return;
        };
        let mut record = self.request.record(attempt.fence);
        if let Written::Applied(()) = protocol::complete(Some(&mut record), attempt, completion) {
            cache.put(record, self.clock_now());
        }
    }

    /// Begins, or finds the live record of another attempt; with `wait`, polls an
    /// in-progress record until it completes or lapses.
    async fn acquire(&mut self) -> Result<Found, Error> {
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
            self.check_payload(&record)?;
            if record.state == State::Completed {
                if let Some(cache) = self.engine.cache() {
                    cache.put(record.clone(), self.clock_now());
                }
                if let Some(started) = waiting {
                    observe::waited(&self.namespace, started.elapsed());
                }
                return Ok(Found::Live(record));
            }
            let now = self.clock_now();
            match wait_until {
                Some(until) if now < until => {
                    if waiting.is_none() {
                        tracing::debug!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                            fence = record.fence, "waiting for the attempt in progress");
                        waiting = Some(Instant::now());
                    }
                    let jittered =
                        fastrand::u64(pause.as_millis() as u64 / 2..=pause.as_millis() as u64);
                    self.engine
                        .clock()
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
                        namespace: self.namespace.to_string(),
                        digest: self.digest().to_owned(),
                    });
                }
            }
        }
    }

    /// One begin, tried again (a bounded number of times) only when the refusal showed a
    /// free record.
    async fn begin(&mut self) -> Result<Found, Error> {
        for _ in 0..BEGIN_TRIES {
            let now = self.clock_now();
            self.terms().stamp(&mut self.request, now);
            let written = self
                .store_call("begin", self.engine.store().begin(&self.request))
                .await
                .map_err(|e| self.store_error("begin", e))?;
            match protocol::after_begin(written, &self.request) {
                BeginAnswer::Held {
                    fence,
                    lease_until_ms,
                } => {
                    if fence > 1 {
                        tracing::debug!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
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
        let (spilled, completion) = self.value_completion(&value);
        let store = &self.engine.store();
        let answer = self
            .store_call("complete", store.complete(attempt, &completion))
            .await;
        let completed = self.completed(attempt, &completion, answer);
        if let Completed::Recorded { .. } = completed {
            self.remember(attempt, &completion);
        }
        self.reported(attempt, completed, value, completion.data.or(spilled))
    }

    /// [`complete_value`](Guard::complete_value) inside the body's transaction, then the
    /// commit: the body's writes persist iff the completion does.
    async fn commit_value<Tx: Transaction, T: Serialize, E: From<Error>>(
        &self,
        attempt: &Attempt,
        mut transaction: Tx,
        value: T,
    ) -> Result<Report<T>, E> {
        let (spilled, completion) = self.value_completion(&value);
        let answer = self
            .store_call("complete", transaction.complete(attempt, &completion))
            .await;
        let completed = match self.completed(attempt, &completion, answer) {
            Completed::Recorded { expires_at_s } => {
                match self.store_call("commit", transaction.commit()).await {
                    Ok(()) => {
                        self.remember(attempt, &completion);
                        Completed::Recorded { expires_at_s }
                    }
                    Err(error) => return self.settle_commit(attempt, error, value).await,
                }
            }
            // Refused or failed: nothing of the body may persist.
            not_recorded => {
                self.roll_back(transaction).await;
                if let Completed::NotRecorded = not_recorded {
                    self.release(attempt).await;
                    observe::call(&self.namespace, CallOutcome::StoreError);
                    return Err(self
                        .store_error(
                            "complete",
                            StoreError::transient(
                                "the completion could not be written in the body's transaction; \
                                 the body's writes were rolled back and the key released",
                            ),
                        )
                        .into());
                }
                not_recorded
            }
        };
        self.reported(attempt, completed, value, completion.data.or(spilled))
    }

    /// A commit whose answer was an error or never came: it is settled by the record.
    /// A read that shows the completion means the commit went through. Otherwise the key
    /// is released, and the release's answer decides: a commit still in flight is not
    /// visible to the read, but the release (conditional on the record in progress)
    /// meets it, or waits for it behind the completion's row lock, and is refused with
    /// the completed record; applied, it proves nothing of the body persisted.
    async fn settle_commit<T, E: From<Error>>(
        &self,
        attempt: &Attempt,
        error: StoreError,
        value: T,
    ) -> Result<Report<T>, E> {
        let store = &self.engine.store();
        let read = self.store_call("read", store.read(&attempt.id)).await;
        // A read that shows the completion settles it as a release refused with it would.
        let released = match read {
            Ok(Some(record)) if record.shows_completion_by(attempt) => {
                Ok(Written::Refused(Some(record)))
            }
            _ => self.send_release(attempt).await,
        };
        let settled = match released {
            Ok(Written::Refused(Some(record))) if record.shows_completion_by(attempt) => {
                tracing::debug!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                    fence = attempt.fence, %error, "the commit's answer was lost; the record shows it went through");
                self.outcome(CallOutcome::Ran, "ran and recorded");
                return Ok(Report {
                    value,
                    source: Source::Ran,
                    fence: attempt.fence,
                    replayed_until_ms: Some(record.expires_at_s.saturating_mul(1000)),
                });
            }
            Ok(written) => match protocol::after_release(written, attempt) {
                ReleaseAnswer::Released | ReleaseAnswer::AlreadyReleased => {
                    "it did not go through: nothing of the body persisted and the key was released"
                }
                // The record is gone or another attempt's: the completion may have been
                // committed and expired since, so nothing can be said.
                ReleaseAnswer::Lost => {
                    "the record, no longer this attempt's, cannot tell whether it went through; \
                     a retry replays the value if it did and runs the body if it did not"
                }
            },
            Err(_) => {
                "the record could not be settled to tell whether it went through; a retry \
                 replays the value if it did and runs the body if it did not"
            }
        };
        observe::call(&self.namespace, CallOutcome::StoreError);
        Err(self
            .store_error(
                "commit",
                StoreError::transient(format!("the commit failed ({error}); {settled}")),
            )
            .into())
    }

    async fn roll_back<Tx: Transaction>(&self, transaction: Tx) {
        if let Err(error) = self.store_call("rollback", transaction.rollback()).await {
            // The database rolls back what it never saw committed.
            tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                %error, "the rollback failed; the database discards the uncommitted transaction");
        }
    }

    /// The completion that records `value`, and the value's encoding when it is not in
    /// the completion (too large to record): an [`Error::LeaseLost`] carries the
    /// encoding either way.
    fn value_completion<T: Serialize>(&self, value: &T) -> (Option<String>, Completion) {
        let limit = self.engine.store().limits().max_data_bytes;
        let encoded = match serde_json::to_string(value) {
            Ok(encoded) => Some(encoded),
            Err(error) => {
                tracing::error!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                    %error, "the value cannot be encoded; recording it as not stored");
                None
            }
        };
        let (outcome, data, spilled) = match encoded {
            Some(data) if data.len() <= limit => (Outcome::Ok, Some(data), None),
            Some(data) => {
                tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                    bytes = data.len(), limit, "the value is too large to record; duplicates will get a result-not-stored error");
                (Outcome::NotStored, None, Some(data))
            }
            None => (Outcome::NotStored, None, None),
        };
        let completion = self.terms().completion(self.clock_now(), outcome, data);
        (spilled, completion)
    }

    /// What the caller gets once the value's completion ended as `completed`.
    fn reported<T, E: From<Error>>(
        &self,
        attempt: &Attempt,
        completed: Completed,
        value: T,
        encoded: Option<String>,
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
            Completed::NotRecorded => {
                observe::call(&self.namespace, CallOutcome::RanNotRecorded);
                Ok(report(Source::RanNotRecorded, None))
            }
            Completed::LeaseLost => {
                observe::call(&self.namespace, CallOutcome::LeaseLost);
                Err(Error::LeaseLost {
                    namespace: self.namespace.to_string(),
                    digest: self.digest().to_owned(),
                    value: encoded,
                }
                .into())
            }
        }
    }

    /// Completes the attempt with an outcome other than a value (a recorded error).
    async fn complete(&self, attempt: &Attempt, outcome: Outcome, data: Option<String>) {
        let completion = self.terms().completion(self.clock_now(), outcome, data);
        let store = &self.engine.store();
        let answer = self
            .store_call("complete", store.complete(attempt, &completion))
            .await;
        if let Completed::Recorded { .. } = self.completed(attempt, &completion, answer) {
            self.remember(attempt, &completion);
        }
    }

    /// What the answer to `completion` means, logged.
    fn completed(
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
                Completed::NotRecorded
            }
        }
    }

    async fn release(&self, attempt: &Attempt) {
        let _ = self.send_release(attempt).await;
    }

    /// Releases the key, logs how it went, and hands back the store's answer.
    async fn send_release(&self, attempt: &Attempt) -> Result<Written<()>, StoreError> {
        let store = &self.engine.store();
        let answer = self.store_call("release", store.release(attempt)).await;
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

/// How a completion ended.
enum Completed {
    /// Recorded, replayed until `expires_at_s`.
    Recorded { expires_at_s: u64 },
    /// The store failed: executed, not recorded.
    NotRecorded,
    /// Refused: another attempt holds the key, or the record is gone.
    LeaseLost,
}

/// One store call under the engine's timeout, measured: every store call of a call goes
/// through here, guarded or not.
// The namespace as a `Cow`, for `observe`'s labels (free to clone when `&'static`).
#[allow(clippy::ptr_arg)]
pub(super) async fn store_call<R>(
    engine: &Engine,
    namespace: &Cow<'static, str>,
    operation: &'static str,
    call: impl Future<Output = Result<R, StoreError>>,
) -> Result<R, StoreError> {
    let timeout = engine.defaults().store_timeout;
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
