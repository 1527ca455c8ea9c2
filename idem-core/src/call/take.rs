//! Taking the key: the local cache, begin and its bounded retries, and waiting for an
//! attempt in progress. Nothing of the body has run yet.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::destination::{Destination, InStore};
use super::guard::{store_call_within, Guard, Held};
use super::policy::ErrorPolicy;
use super::report::Report;
use crate::context::Context;
use crate::error::Error;
use crate::observe::{self, CallOutcome};
use crate::protocol::{self, BeginAnswer, BEGIN_TRIES};
use crate::step::Journal;
use crate::store::{Attempt, Hold, Record, State, StoreError};
use std::sync::Arc;

/// The first and the longest pause between two polls of `wait`.
const WAIT_FIRST: Duration = Duration::from_millis(50);
const WAIT_MAX: Duration = Duration::from_secs(1);

/// What begin found.
pub(super) enum Found {
    /// This attempt holds the key.
    Held { fence: u64, lease_until_ms: u64 },
    /// A live record of another attempt.
    Live(Arc<Record>),
    /// Another transaction holds the key (the lock-held form) and did not end within
    /// the wait.
    Busy,
}

/// What taking the key led to: the body may run, or the value is already there.
pub(super) enum Taken<T> {
    Held(Held),
    Replayed(Report<T>),
}

impl Guard {
    /// Takes the key, or replays its live record. Nothing of the body has run. When the
    /// destination holds the key itself (the lock-held form), it is opened to take the
    /// key in it, and left in `holding` once it does.
    pub(super) async fn take<T, E, P, D>(
        &mut self,
        errors: &P,
        holding: &mut Option<D>,
    ) -> Result<Taken<T>, E>
    where
        T: DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
        D: Destination,
    {
        if let Some(replayed) = self.cached(errors) {
            return replayed.map(Taken::Replayed);
        }
        let found = self.acquire_in(holding).await.inspect_err(|error| {
            if matches!(error, Error::Store { .. }) {
                observe::call(&self.namespace, CallOutcome::StoreError);
            }
        })?;
        self.taken(found, errors).await
    }

    /// What begin's `found` leads to: the body may run under a live lease, or the
    /// value is replayed.
    pub(super) async fn taken<T, E, P>(&self, found: Found, errors: &P) -> Result<Taken<T>, E>
    where
        T: DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        let (fence, lease_until_ms) = match found {
            Found::Held {
                fence,
                lease_until_ms,
            } => (fence, lease_until_ms),
            Found::Live(record) => return self.replay(&record, errors).map(Taken::Replayed),
            Found::Busy => unreachable!("acquire answers a busy key as in progress"),
        };
        let attempt = Attempt {
            id: self.request.id.clone(),
            owner: self.request.owner,
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
            String::from(self.digest()),
            fence,
            lease_until_ms,
            self.engine.clone(),
            Some(Journal::new(
                self.engine.clone(),
                self.namespace.clone(),
                attempt,
                self.holds_key,
            )),
        );
        Ok(Taken::Held(Held {
            context,
            lease_until_ms,
        }))
    }

    /// The replay of the key's record in the engine's local cache, if it holds one.
    pub(super) fn cached<T, E, P>(&self, errors: &P) -> Option<Result<Report<T>, E>>
    where
        T: DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        let cached = self
            .engine
            .cache()?
            .get(&self.request.id, self.clock_now())?;
        Some(match self.check_payload(&cached.record) {
            Ok(()) => self.replay(&cached.record, errors),
            Err(error) => Err(error.into()),
        })
    }

    /// Refuses a live record of the same key written for another payload.
    fn check_payload(&self, record: &Record) -> Result<(), Error> {
        match (&self.request.fingerprint, &record.fingerprint) {
            (Some(mine), Some(theirs)) if mine != theirs => {
                self.outcome(CallOutcome::PayloadMismatch, "same key, another payload");
                Err(Error::PayloadMismatch {
                    namespace: self.namespace.to_string(),
                    digest: String::from(self.digest()),
                })
            }
            _ => Ok(()),
        }
    }

    /// Begins, or finds the live record of another attempt; with `wait`, polls an
    /// in-progress record until it completes or lapses.
    pub(super) async fn acquire(&mut self) -> Result<Found, Error> {
        self.acquire_in(&mut None::<InStore>).await
    }

    /// [`acquire`](Guard::acquire), the key taken in the destination when it holds the
    /// key itself (the lock-held form), and left in `holding` once it does.
    async fn acquire_in<D: Destination>(
        &mut self,
        holding: &mut Option<D>,
    ) -> Result<Found, Error> {
        let wait_until = self
            .wait
            .map(|wait| self.clock_now().saturating_add(wait.as_millis() as u64));
        let mut pause = WAIT_FIRST;
        let mut waiting: Option<Instant> = None;
        loop {
            let wait_left = wait_until
                .map(|until| Duration::from_millis(until.saturating_sub(self.clock_now())))
                .filter(|left| !left.is_zero());
            // `None`: another transaction holds the key's row locked (the lock-held
            // form), a holder with no lease clock.
            let record = match self.begin(wait_left, holding).await? {
                Found::Live(record) => Some(record),
                Found::Busy => None,
                held => {
                    if let Some(started) = waiting {
                        observe::waited(&self.namespace, started.elapsed());
                    }
                    return Ok(held);
                }
            };
            let completed = match &record {
                Some(record) => self.completed_record(record.clone())?,
                None => None,
            };
            if let Some(completed) = completed {
                if let Some(started) = waiting {
                    observe::waited(&self.namespace, started.elapsed());
                }
                return Ok(completed);
            }
            let now = self.clock_now();
            match wait_until {
                Some(until) if now < until => {
                    if waiting.is_none() {
                        tracing::debug!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                            fence = record.as_ref().map(|r| r.fence), "waiting for the attempt in progress");
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
                    return Err(self.in_progress_until(record.map(|r| r.lease_until_ms)));
                }
            }
        }
    }

    /// What `answer`, the meaning of this attempt's begin or hold by the protocol's
    /// rules, found; `None` when the refusal showed a free record (begin again).
    pub(super) fn found(&self, answer: BeginAnswer) -> Option<Found> {
        match answer {
            BeginAnswer::Held {
                fence,
                lease_until_ms,
            } => {
                if fence > 1 {
                    tracing::debug!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                        fence, "took the key over from an earlier attempt (it lapsed, was released or expired)");
                }
                Some(Found::Held {
                    fence,
                    lease_until_ms,
                })
            }
            BeginAnswer::Live(record) => Some(Found::Live(record)),
            BeginAnswer::Again => None,
        }
    }

    /// Another attempt's live `record`, found by begin: refused if it was written for
    /// another payload; `Some` to replay when it is completed (kept in the engine's
    /// cache), `None` while it is in progress.
    pub(super) fn completed_record(&self, record: Arc<Record>) -> Result<Option<Found>, Error> {
        self.check_payload(&record)?;
        if record.state != State::Completed {
            return Ok(None);
        }
        if let Some(cache) = self.engine.cache() {
            cache.put(record.clone(), self.clock_now());
        }
        Ok(Some(Found::Live(record)))
    }

    /// The error of a call that found another attempt's `record` in progress (and
    /// waits no longer), with its event.
    pub(super) fn in_progress(&self, record: &Record) -> Error {
        self.in_progress_until(Some(record.lease_until_ms))
    }

    /// [`in_progress`](Guard::in_progress) of a holder whose lease ends at
    /// `lease_until_ms`, or that has no lease end (`None`: a transaction that holds the
    /// key, the lock-held form).
    fn in_progress_until(&self, lease_until_ms: Option<u64>) -> Error {
        self.outcome(CallOutcome::InProgress, "another attempt holds the key");
        Error::InProgress {
            namespace: self.namespace.to_string(),
            digest: String::from(self.digest()),
            lease_until_ms,
        }
    }

    /// One begin, tried again (a bounded number of times) only when the refusal showed a
    /// free record (or, in the lock-held form, the database met a serialization
    /// conflict: a fresh transaction sees what the one it waited for committed).
    async fn begin<D: Destination>(
        &mut self,
        wait: Option<Duration>,
        holding: &mut Option<D>,
    ) -> Result<Found, Error> {
        for _ in 0..BEGIN_TRIES {
            let now = self.clock_now();
            self.terms().stamp(&mut self.request, now);
            let answer = if self.holds_key {
                let hold = self.hold_once(wait, holding).await?;
                match protocol::after_hold(hold, &self.request) {
                    Some(answer) => answer,
                    None => return Ok(Found::Busy),
                }
            } else {
                let written = self
                    .store_call("begin", self.engine.store().begin(&self.request))
                    .await
                    .map_err(|e| self.store_error("begin", e))?;
                protocol::after_begin(written, &self.request)
            };
            // Free or gone by the time the store read it (`None`): try again.
            if let Some(found) = self.found(answer) {
                return Ok(found);
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

    /// One try of the lock-held form: a fresh destination opened and the key taken in
    /// it, waiting up to `wait` for a transaction that holds it. The destination is
    /// kept in `holding` only when it took the key; otherwise it is rolled back at once,
    /// so no connection is held while the call waits between tries.
    async fn hold_once<D: Destination>(
        &self,
        wait: Option<Duration>,
        holding: &mut Option<D>,
    ) -> Result<Hold, Error> {
        let mut destination = D::open(&self.engine, &self.namespace, self.isolation)
            .await
            .map_err(|e| self.store_error("open", e))?;
        // The statement may wait on the holder's row lock for `wait` on top of its own
        // time.
        let timeout = self.engine.defaults().store_timeout + wait.unwrap_or_default();
        let hold = destination.hold(&self.request, wait);
        let hold = match store_call_within(&self.namespace, "begin", hold, timeout).await {
            Ok(Hold::Taken(fence)) => {
                *holding = Some(destination);
                return Ok(Hold::Taken(fence));
            }
            Ok(hold) => Ok(hold),
            Err(error) => Err(self.store_error("begin", error)),
        };
        destination.discard(self).await;
        hold
    }
}
