//! Taking the key: the local cache, begin and its bounded retries, and waiting for an
//! attempt in progress. Nothing of the body has run yet.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::guard::{Guard, Held};
use super::policy::ErrorPolicy;
use super::report::Report;
use crate::context::Context;
use crate::error::Error;
use crate::observe::{self, CallOutcome};
use crate::protocol::{self, BeginAnswer, BEGIN_TRIES};
use crate::store::{Attempt, Record, State, StoreError};
use std::sync::Arc;

/// The first and the longest pause between two polls of `wait`.
const WAIT_FIRST: Duration = Duration::from_millis(50);
const WAIT_MAX: Duration = Duration::from_secs(1);

/// What begin found.
enum Found {
    /// This attempt holds the key.
    Held { fence: u64, lease_until_ms: u64 },
    /// A live record of another attempt.
    Live(Arc<Record>),
}

/// What taking the key led to: the body may run, or the value is already there.
pub(super) enum Taken<T> {
    Held(Held),
    Replayed(Report<T>),
}

impl Guard {
    /// Takes the key, or replays its live record. Nothing of the body has run.
    pub(super) async fn take<T, E, P>(&mut self, errors: &P) -> Result<Taken<T>, E>
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
                        lease_until_ms: Some(record.lease_until_ms),
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
}
