//! The function API: one guarded call, built and run.

use std::future::{poll_fn, Future};
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::context::Context;
use crate::engine::{check_timing, Engine};
use crate::error::Error;
use crate::key::{self, KeyError};
use crate::record::{ceil_secs, Outcome, Record, State, CODEC_JSON, FORMAT};
use crate::store::{Attempt, Begin, Completion, Lease, StoreError, StoreErrorKind, Written};

/// How often begin is tried when the store refuses it with a record that is free (it
/// lapsed or was deleted between the write and the read that answered it).
const BEGIN_TRIES: usize = 3;
/// The first and the longest pause between two polls of `wait`.
const WAIT_FIRST: Duration = Duration::from_millis(50);
const WAIT_MAX: Duration = Duration::from_secs(1);

/// Chooses which of the body's errors are recorded and replayed: see
/// [`Call::replay_errors`]. Implemented by [`NoErrorReplay`] and [`ReplayErrors`].
pub trait ErrorPolicy<E> {
    /// `Some(encoded)` when `error` is to be recorded, `None` when the key is released.
    fn record(&self, error: &E) -> Option<Result<String, serde_json::Error>>;
    /// Decodes a recorded error, or `None` when this call has no decoder for it.
    fn decode(&self, data: &str) -> Option<Result<E, serde_json::Error>>;
}

/// The default: no error is recorded; a body's error releases the key so a retry runs
/// it again. (An error recorded by another call is still replayed, as
/// [`Error::RecordedError`].)
#[derive(Debug, Clone, Copy, Default)]
pub struct NoErrorReplay;

impl<E> ErrorPolicy<E> for NoErrorReplay {
    fn record(&self, _: &E) -> Option<Result<String, serde_json::Error>> {
        None
    }
    fn decode(&self, _: &str) -> Option<Result<E, serde_json::Error>> {
        None
    }
}

/// Records the errors a predicate chooses: see [`Call::replay_errors`].
pub struct ReplayErrors<E, F> {
    predicate: F,
    _error: PhantomData<fn(&E)>,
}

impl<E, F> ErrorPolicy<E> for ReplayErrors<E, F>
where
    E: Serialize + DeserializeOwned,
    F: Fn(&E) -> bool,
{
    fn record(&self, error: &E) -> Option<Result<String, serde_json::Error>> {
        (self.predicate)(error).then(|| serde_json::to_string(error))
    }
    fn decode(&self, data: &str) -> Option<Result<E, serde_json::Error>> {
        Some(serde_json::from_str(data))
    }
}

/// One guarded call: the function API, which the `#[idempotent]` macro only fills in.
///
/// The key is encoded when the call is built, so it may borrow what the body later
/// moves. Settings not given here come from the engine's [`Defaults`](crate::Defaults).
///
/// ```
/// use idem_core::{Call, Engine, Error, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// let engine = Engine::new(MemoryStore::new());
/// for _ in 0..2 {
///     let group: String = Call::new("groups::create", "req-42")
///         .engine(&engine)
///         .run(|ctx| async move {
///             // Pass ctx.token() downstream as the cloud API's idempotency key.
///             Ok::<_, Error>(format!("group-for-{}", &ctx.token()[..8]))
///         })
///         .await?;
///     assert!(group.starts_with("group-for-"));
/// }
/// # Ok(()) }
/// ```
#[must_use = "a call does nothing until it is run"]
pub struct Call<P = NoErrorReplay> {
    engine: Option<Engine>,
    namespace: String,
    key: Result<Vec<u8>, KeyError>,
    fingerprint: Option<Result<Vec<u8>, KeyError>>,
    ttl: Option<Duration>,
    lease: Option<Duration>,
    max_duration: Option<Duration>,
    wait: Option<Duration>,
    errors: P,
}

impl Call {
    /// A call in `namespace` (a function's name: `module::function`), keyed on `key`.
    ///
    /// The key is any `Serialize` value; tuples make composite keys. Floats and empty
    /// values (`""`, `null`, `[]`, `{}`) are refused with [`Error::InvalidKey`] when the
    /// call runs, before anything is written.
    pub fn new<K: Serialize + ?Sized>(namespace: impl Into<String>, key: &K) -> Call {
        Call {
            engine: None,
            namespace: namespace.into(),
            key: key::canonical_key(key),
            fingerprint: None,
            ttl: None,
            lease: None,
            max_duration: None,
            wait: None,
            errors: NoErrorReplay,
        }
    }
}

impl<P> Call<P> {
    /// Runs on `engine` instead of the installed one.
    pub fn engine(mut self, engine: &Engine) -> Self {
        self.engine = Some(engine.clone());
        self
    }

    /// How long the completed record is replayed, counted from completion.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// How long the lease lasts without a heartbeat; heartbeats renew it every
    /// `lease / 3`.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// How long heartbeats keep the lease alive while the body runs.
    pub fn max_duration(mut self, max_duration: Duration) -> Self {
        self.max_duration = Some(max_duration);
        self
    }

    /// Waits up to `wait` for an in-progress call with the same key, polling (50 ms
    /// doubling to 1 s, jittered) until its outcome can be replayed or its lease lapses
    /// and this call takes over. The pauses are slept on the engine's clock: under a
    /// [`ManualClock`](crate::ManualClock), a waiting call moves on only when the test
    /// moves the clock.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// A payload to check duplicates against: a later call with the same key but a
    /// different fingerprint gets [`Error::PayloadMismatch`] instead of a replay.
    pub fn fingerprint<F: Serialize + ?Sized>(mut self, payload: &F) -> Self {
        self.fingerprint = Some(key::canonical_json(payload));
        self
    }

    /// Records the body's errors for which `predicate` returns `true`, and replays them
    /// to duplicates, as values are. Other errors release the key.
    pub fn replay_errors<E, F>(self, predicate: F) -> Call<ReplayErrors<E, F>>
    where
        E: Serialize + DeserializeOwned,
        F: Fn(&E) -> bool,
    {
        Call {
            engine: self.engine,
            namespace: self.namespace,
            key: self.key,
            fingerprint: self.fingerprint,
            ttl: self.ttl,
            lease: self.lease,
            max_duration: self.max_duration,
            wait: self.wait,
            errors: ReplayErrors {
                predicate,
                _error: PhantomData,
            },
        }
    }

    /// Runs `body` at most once for this key, or replays what its first run recorded.
    ///
    /// The body gets the attempt's [`Context`] (also readable as
    /// [`Context::current`]). Its heartbeats are polled in the same future as the body:
    /// a body that blocks its thread starves them.
    pub async fn run<T, E, B, Fut>(self, body: B) -> Result<T, E>
    where
        B: FnOnce(Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        let Call {
            engine,
            namespace,
            key,
            fingerprint,
            ttl,
            lease,
            max_duration,
            wait,
            errors,
        } = self;
        let engine = match engine {
            Some(engine) => engine,
            None => Engine::global().ok_or(Error::NoEngine)?.clone(),
        };
        let defaults = engine.inner.defaults;
        let ttl = ttl.unwrap_or(defaults.ttl);
        let lease = lease.unwrap_or(defaults.lease);
        check_timing(ttl, lease)?;
        key::check_namespace(&namespace).map_err(Error::Config)?;
        let invalid = |e: KeyError| Error::InvalidKey {
            namespace: namespace.clone(),
            reason: e.to_string(),
        };
        let digest = engine.digest(&namespace, &key.map_err(invalid)?);
        let fingerprint = match fingerprint {
            Some(payload) => Some(engine.digest(&namespace, &payload.map_err(invalid)?)),
            None => None,
        };
        let id = key::record_id(&namespace, &digest);
        let max_id = engine.inner.store.limits().max_id_bytes;
        if id.len() > max_id {
            return Err(Error::InvalidKey {
                reason: format!(
                    "the record id would be {} bytes and the store takes at most {max_id}; use a shorter name",
                    id.len()
                ),
                namespace,
            }
            .into());
        }
        let guard = Guard {
            engine: &engine,
            namespace,
            digest,
            id,
            owner: uuid::Uuid::new_v4().simple().to_string(),
            fingerprint,
            ttl,
            lease,
            max_duration: max_duration.unwrap_or(defaults.max_duration),
            wait: wait.or(defaults.wait),
        };
        guard.run(body, &errors).await
    }
}

/// One attempt of one call: everything the rules need, resolved.
struct Guard<'e> {
    engine: &'e Engine,
    namespace: String,
    digest: String,
    id: String,
    owner: String,
    fingerprint: Option<String>,
    ttl: Duration,
    lease: Duration,
    max_duration: Duration,
    wait: Option<Duration>,
}

/// What begin found.
enum Found {
    /// This attempt holds the key.
    Lease { fence: u64, lease_until_ms: u64 },
    /// A live record of another attempt.
    Live(Record),
}

/// An extend in flight: the lease end it asked for, and the store's answer.
type Heartbeat<'a> = BoxFuture<'a, (u64, Result<Written<()>, StoreError>)>;

/// What the body's future ended with.
type BodyExit<T, E> = Result<Result<T, E>, Box<dyn std::any::Any + Send>>;

impl Guard<'_> {
    async fn run<T, E, B, Fut, P>(&self, body: B, errors: &P) -> Result<T, E>
    where
        B: FnOnce(Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        let (fence, lease_until_ms) = match self.acquire().await? {
            Found::Lease {
                fence,
                lease_until_ms,
            } => (fence, lease_until_ms),
            Found::Live(record) => return self.replay(record, errors),
        };
        let context = Context::new(
            self.namespace.clone(),
            self.digest.clone(),
            fence,
            lease_until_ms,
            self.engine.inner.clock.clone(),
        );
        let attempt = Attempt {
            id: self.id.clone(),
            owner: self.owner.clone(),
            fence,
        };
        // The closure is called inside the guard too: a panic before its future exists
        // releases the key like one inside it.
        let for_body = context.clone();
        let body = context
            .clone()
            .scope(AssertUnwindSafe(async move { body(for_body).await }).catch_unwind());
        let exit = self.drive(&attempt, &context, body).await;
        self.finish(&attempt, exit, errors).await
    }

    fn clock_now(&self) -> u64 {
        self.engine.inner.clock.now_ms()
    }

    fn expires_at(&self, from_ms: u64) -> u64 {
        ceil_secs(from_ms.saturating_add(self.ttl.as_millis() as u64))
    }

    /// One store call under the engine's timeout.
    async fn store_call<R>(
        &self,
        call: impl Future<Output = Result<R, StoreError>>,
    ) -> Result<R, StoreError> {
        let timeout = self.engine.inner.defaults.store_timeout;
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::transient(format!(
                "the store did not answer within {timeout:?}"
            ))),
        }
    }

    fn store_error(&self, operation: &'static str, source: StoreError) -> Error {
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
        let clock = &self.engine.inner.clock;
        let wait_until = self
            .wait
            .map(|wait| self.clock_now().saturating_add(wait.as_millis() as u64));
        let mut pause = WAIT_FIRST;
        loop {
            let record = match self.begin().await? {
                Found::Live(record) => record,
                lease => return Ok(lease),
            };
            if let (Some(mine), Some(theirs)) = (&self.fingerprint, &record.fingerprint) {
                if mine != theirs {
                    tracing::info!(target: "idem", namespace = %self.namespace, digest = %self.digest, "payload mismatch");
                    return Err(Error::PayloadMismatch {
                        namespace: self.namespace.clone(),
                        digest: self.digest.clone(),
                    });
                }
            }
            if record.state == State::Completed {
                return Ok(Found::Live(record));
            }
            let now = self.clock_now();
            match wait_until {
                Some(until) if now < until => {
                    let jittered =
                        fastrand::u64(pause.as_millis() as u64 / 2..=pause.as_millis() as u64);
                    clock
                        .sleep(Duration::from_millis(jittered.min(until - now)))
                        .await;
                    pause = (pause * 2).min(WAIT_MAX);
                }
                _ => {
                    tracing::info!(target: "idem", namespace = %self.namespace, digest = %self.digest, "already in progress");
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
        let store = &self.engine.inner.store;
        for _ in 0..BEGIN_TRIES {
            let now_ms = self.clock_now();
            let lease_until_ms = now_ms.saturating_add(self.lease.as_millis() as u64);
            let request = Begin {
                id: self.id.clone(),
                owner: self.owner.clone(),
                now_ms,
                lease_until_ms,
                expires_at_s: self.expires_at(lease_until_ms),
                fingerprint: self.fingerprint.clone(),
            };
            let written = self
                .store_call(store.begin(&request))
                .await
                .map_err(|e| self.store_error("begin", e))?;
            match written {
                Written::Applied(fence) => {
                    return Ok(Found::Lease {
                        fence,
                        lease_until_ms,
                    })
                }
                // My own begin, applied by a request whose response was lost.
                Written::Refused(Some(record))
                    if record.state == State::InProgress && record.owner == self.owner =>
                {
                    return Ok(Found::Lease {
                        fence: record.fence,
                        lease_until_ms: record.lease_until_ms,
                    })
                }
                Written::Refused(Some(record)) if record.is_live(now_ms) => {
                    return Ok(Found::Live(record))
                }
                // Free or gone by the time the store read it: try again.
                Written::Refused(_) => continue,
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

    fn decode_error(&self, reason: impl Into<String>) -> Error {
        Error::Decode {
            namespace: self.namespace.clone(),
            digest: self.digest.clone(),
            reason: reason.into(),
        }
    }

    /// The outcome a completed record holds, for a duplicate call.
    fn replay<T, E, P>(&self, record: Record, errors: &P) -> Result<T, E>
    where
        T: DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        if record.format > FORMAT {
            return Err(self
                .decode_error(format!(
                    "the record has format {}, written by a newer version of idem (this one reads up to {FORMAT})",
                    record.format
                ))
                .into());
        }
        if record.codec != CODEC_JSON {
            return Err(self
                .decode_error(format!(
                    "the record uses codec `{}`, which this build cannot read",
                    record.codec
                ))
                .into());
        }
        let data = || {
            record
                .data
                .as_deref()
                .ok_or_else(|| self.decode_error("the completed record holds no data"))
        };
        tracing::info!(target: "idem", namespace = %self.namespace, digest = %self.digest, outcome = ?record.outcome, "replayed");
        match record.outcome {
            Some(Outcome::Ok) => serde_json::from_str(data()?).map_err(|e| {
                self.decode_error(format!("the recorded value does not decode: {e}"))
                    .into()
            }),
            Some(Outcome::Err) => {
                let data = data()?;
                match errors.decode(data) {
                    Some(Ok(error)) => Err(error),
                    Some(Err(e)) => Err(self
                        .decode_error(format!("the recorded error does not decode: {e}"))
                        .into()),
                    None => Err(Error::RecordedError {
                        namespace: self.namespace.clone(),
                        digest: self.digest.clone(),
                        data: data.to_owned(),
                    }
                    .into()),
                }
            }
            Some(Outcome::NotStored) => Err(Error::ResultNotStored {
                namespace: self.namespace.clone(),
                digest: self.digest.clone(),
            }
            .into()),
            None => Err(self
                .decode_error("the completed record has no outcome")
                .into()),
        }
    }

    /// Polls the body together with its heartbeats until the body ends; an extend still
    /// in flight then is awaited, so no heartbeat can land after complete or release.
    async fn drive<F: Future>(&self, attempt: &Attempt, context: &Context, body: F) -> F::Output {
        let clock = &self.engine.inner.clock;
        let store = &self.engine.inner.store;
        let lease_ms = self.lease.as_millis() as u64;
        let every = Duration::from_millis(lease_ms / 3);
        let beats_until = self
            .clock_now()
            .saturating_add(self.max_duration.as_millis() as u64);
        let mut body = pin!(body);
        let mut next_beat = self.clock_now().saturating_add(every.as_millis() as u64);
        let mut timer = Some(clock.sleep(every));
        let mut extend: Option<Heartbeat<'_>> = None;

        let output = poll_fn(|cx| {
            if let Poll::Ready(output) = body.as_mut().poll(cx) {
                return Poll::Ready(output);
            }
            loop {
                if let Some(in_flight) = extend.as_mut() {
                    match in_flight.as_mut().poll(cx) {
                        Poll::Ready((lease_until_ms, result)) => {
                            extend = None;
                            self.beat_settled(attempt, context, lease_until_ms, result);
                            if !context.is_marked_lost() {
                                let now = self.clock_now();
                                timer = Some(clock.sleep(Duration::from_millis(
                                    next_beat.saturating_sub(now),
                                )));
                            }
                            continue;
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
                match timer.as_mut().map(|t| t.as_mut().poll(cx)) {
                    Some(Poll::Ready(())) => {
                        timer = None;
                        let now = self.clock_now();
                        if now.saturating_sub(next_beat) > every.as_millis() as u64 / 2 {
                            tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                                late_ms = now - next_beat,
                                "heartbeat is late: the body may be blocking its thread");
                        }
                        if now >= beats_until {
                            tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                                "the body ran past max_duration; heartbeats stop and the lease will lapse");
                            return Poll::Pending;
                        }
                        next_beat = now.saturating_add(every.as_millis() as u64);
                        let lease_until_ms = now.saturating_add(lease_ms);
                        let lease = Lease {
                            lease_until_ms,
                            expires_at_s: self.expires_at(lease_until_ms),
                        };
                        extend = Some(Box::pin(async move {
                            (
                                lease_until_ms,
                                self.store_call(store.extend(attempt, &lease)).await,
                            )
                        }));
                    }
                    _ => return Poll::Pending,
                }
            }
        })
        .await;
        if let Some(in_flight) = extend {
            let (lease_until_ms, result) = in_flight.await;
            self.beat_settled(attempt, context, lease_until_ms, result);
        }
        output
    }

    fn beat_settled(
        &self,
        attempt: &Attempt,
        context: &Context,
        lease_until_ms: u64,
        result: Result<Written<()>, StoreError>,
    ) {
        match result {
            Ok(Written::Applied(())) => context.renewed(lease_until_ms),
            Ok(Written::Refused(Some(record)))
                if record.is_held_by(&attempt.owner, attempt.fence) =>
            {
                // Applied by a request whose response was lost.
                context.renewed(record.lease_until_ms)
            }
            Ok(Written::Refused(record)) => {
                tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                    fence = attempt.fence, current_fence = record.as_ref().map(|r| r.fence),
                    "heartbeat refused: the lease is lost");
                context.mark_lost();
            }
            Err(error) => {
                tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                    %error, "heartbeat failed; the lease may lapse");
            }
        }
    }

    async fn finish<T, E, P>(
        &self,
        attempt: &Attempt,
        exit: BodyExit<T, E>,
        errors: &P,
    ) -> Result<T, E>
    where
        T: Serialize,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        match exit {
            Ok(Ok(value)) => self.complete_value(attempt, value).await,
            Ok(Err(error)) => {
                let limit = self.engine.inner.store.limits().max_data_bytes;
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
                Err(error)
            }
            Err(panic) => {
                self.release(attempt).await;
                std::panic::resume_unwind(panic)
            }
        }
    }

    async fn complete_value<T: Serialize, E: From<Error>>(
        &self,
        attempt: &Attempt,
        value: T,
    ) -> Result<T, E> {
        let limit = self.engine.inner.store.limits().max_data_bytes;
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
        match self.complete(attempt, outcome, data).await {
            Completed::Recorded | Completed::NotRecorded => Ok(value),
            Completed::LeaseLost => Err(Error::LeaseLost {
                namespace: self.namespace.clone(),
                digest: self.digest.clone(),
                value: encoded,
            }
            .into()),
        }
    }

    async fn complete(
        &self,
        attempt: &Attempt,
        outcome: Outcome,
        data: Option<String>,
    ) -> Completed {
        let completion = Completion {
            expires_at_s: self.expires_at(self.clock_now()),
            outcome,
            data,
        };
        let store = &self.engine.inner.store;
        match self.store_call(store.complete(attempt, &completion)).await {
            Ok(Written::Applied(())) => {
                tracing::info!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                    fence = attempt.fence, %outcome, "executed and recorded");
                Completed::Recorded
            }
            Ok(Written::Refused(Some(record)))
                if record.state == State::Completed
                    && record.owner == attempt.owner
                    && record.fence == attempt.fence =>
            {
                // Applied by a request whose response was lost.
                tracing::info!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                    fence = attempt.fence, %outcome, "executed and recorded");
                Completed::Recorded
            }
            Ok(Written::Refused(record)) => {
                tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                    fence = attempt.fence, current_fence = record.as_ref().map(|r| r.fence),
                    "completion refused: the lease was lost to another attempt or the record is gone");
                Completed::LeaseLost
            }
            Err(error) => {
                tracing::error!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                    fence = attempt.fence, %error,
                    "executed but not recorded: the store failed at completion; the lease will lapse");
                Completed::NotRecorded
            }
        }
    }

    async fn release(&self, attempt: &Attempt) {
        let store = &self.engine.inner.store;
        match self.store_call(store.release(attempt)).await {
            Ok(Written::Applied(())) => {
                tracing::info!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                    fence = attempt.fence, "released after the body failed");
            }
            Ok(Written::Refused(Some(record)))
                if record.is_held_by(&attempt.owner, attempt.fence)
                    && record.lease_until_ms == 0 => {}
            Ok(Written::Refused(_)) => {
                tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                    fence = attempt.fence, "release refused: the lease was already lost");
            }
            Err(error) => {
                tracing::warn!(target: "idem", namespace = %self.namespace, digest = %self.digest,
                    fence = attempt.fence, %error, "release failed; the lease will lapse");
            }
        }
    }
}

/// How a completion ended.
enum Completed {
    Recorded,
    /// The store failed: executed, not recorded.
    NotRecorded,
    /// Refused: another attempt holds the key, or the record is gone.
    LeaseLost,
}
