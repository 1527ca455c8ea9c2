//! A store wrapper that injects faults, for tests of the engine's behaviour when the
//! store misbehaves.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::store::{
    Attempt, Begin, Completion, Limits, Owner, Record, RecordId, Renewal, StepRecord, Store,
    StoreError, Written,
};

/// A store operation, to choose where a fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// [`Store::begin`].
    Begin,
    /// [`Store::complete`].
    Complete,
    /// [`Store::extend`].
    Extend,
    /// [`Store::release`].
    Release,
    /// [`Store::read`].
    Read,
    /// [`Store::delete`].
    Delete,
    /// [`Store::journal`].
    Journal,
}

const OPERATIONS: usize = 7;

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with a transient error; nothing is written.
    Transient,
    /// The call fails with a permanent error; nothing is written.
    Permanent,
    /// The call fails as if the stored record could not be decoded.
    Malformed,
    /// The write is applied, its response is lost, and the client sends it again: the
    /// caller gets the answer to the second request (a refusal carrying its own write).
    Resent,
    /// The write is applied but its response is lost: the caller gets a transient error.
    LostResponse,
    /// The call does not answer until [`FaultyStore::unstall`] (or the engine's timeout).
    Stall,
}

/// Seeded random faults and latency on every operation: for storms.
#[derive(Debug, Clone)]
pub struct Chaos {
    /// The seed of the random choices: the same seed makes the same choices.
    pub seed: u64,
    /// The probability, from 0 to 1, that a call meets a fault.
    pub fault_rate: f64,
    /// The faults a call may meet, chosen uniformly.
    pub faults: Vec<Fault>,
    /// Each call waits a random time up to this before it reaches the store.
    pub max_latency: Duration,
}

/// Wraps a store and injects [`Fault`]s on chosen operations, or at random
/// ([`Chaos`]); counts every call, and every completion the store applied.
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: S,
    faults: Mutex<HashMap<Operation, (Fault, Option<usize>)>>,
    down: AtomicBool,
    calls: [AtomicUsize; OPERATIONS],
    refused_owners: Mutex<HashSet<Owner>>,
    refused_count: watch::Sender<usize>,
    stalled: watch::Sender<bool>,
    limits: Option<Limits>,
    chaos: Mutex<Option<(Chaos, fastrand::Rng)>>,
    applied_completions: Mutex<HashMap<RecordId, usize>>,
}

impl<S: Store> FaultyStore<S> {
    /// Wraps `inner`, with no fault.
    pub fn new(inner: S) -> Self {
        FaultyStore {
            inner,
            faults: Mutex::new(HashMap::new()),
            down: AtomicBool::new(false),
            calls: Default::default(),
            refused_owners: Mutex::new(HashSet::new()),
            refused_count: watch::Sender::new(0),
            stalled: watch::Sender::new(false),
            limits: None,
            chaos: Mutex::new(None),
            applied_completions: Mutex::new(HashMap::new()),
        }
    }

    /// Reports `limits` instead of the inner store's (to test oversized values).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Every later call of `operation` meets `fault`.
    pub fn inject(&self, operation: Operation, fault: Fault) {
        self.lock().insert(operation, (fault, None));
    }

    /// The next `times` calls of `operation` meet `fault`.
    pub fn inject_times(&self, operation: Operation, fault: Fault, times: usize) {
        self.lock().insert(operation, (fault, Some(times)));
    }

    /// Removes the fault on `operation`.
    pub fn clear(&self, operation: Operation) {
        self.lock().remove(&operation);
    }

    /// Turns random faults and latency on (`Some`) or off.
    pub fn set_chaos(&self, chaos: Option<Chaos>) {
        *self.chaos.lock().unwrap_or_else(|e| e.into_inner()) =
            chaos.map(|chaos| (chaos.clone(), fastrand::Rng::with_seed(chaos.seed)));
    }

    /// How many completions of record `id` the inner store applied (whatever the
    /// caller was told).
    pub fn applied_completions(&self, id: &RecordId) -> usize {
        let applied = self
            .applied_completions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        applied.get(id).copied().unwrap_or(0)
    }

    /// Takes the store down (every call fails with a transient error) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Answers every stalled call (they proceed as if the fault had not struck).
    pub fn unstall(&self) {
        self.stalled.send_replace(false);
    }

    /// How many times `operation` was called.
    pub fn calls(&self, operation: Operation) -> usize {
        self.calls[operation as usize].load(Ordering::SeqCst)
    }

    /// Waits until the store has refused begins from at least `n` distinct attempts
    /// (owners), so a test can hold a body until its duplicates have really overlapped.
    pub async fn refused_attempts_reach(&self, n: usize) {
        let mut refused = self.refused_count.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail while we borrow it.
        let _ = refused.wait_for(|count| *count >= n).await;
    }

    /// The inner store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Operation, (Fault, Option<usize>)>> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts the call and takes the fault that strikes it, if any.
    fn strike(&self, operation: Operation) -> Result<Option<Fault>, StoreError> {
        self.calls[operation as usize].fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::transient("the store is down (injected)"));
        }
        let fault = {
            let mut faults = self.lock();
            match faults.get_mut(&operation) {
                Some((fault, remaining)) => {
                    let fault = *fault;
                    if let Some(left) = remaining {
                        *left -= 1;
                        if *left == 0 {
                            faults.remove(&operation);
                        }
                    }
                    fault
                }
                None => match self.random_fault() {
                    Some(fault) => fault,
                    None => return Ok(None),
                },
            }
        };
        match fault {
            Fault::Transient => Err(StoreError::transient("injected transient fault")),
            Fault::Permanent => Err(StoreError::permanent("injected permanent fault")),
            Fault::Malformed => Err(StoreError::malformed(
                "injected: attribute `status` holds `PENDING`, not a record state",
            )),
            other => Ok(Some(other)),
        }
    }

    /// A fault drawn by [`Chaos`], if it is on and the draw says so.
    fn random_fault(&self) -> Option<Fault> {
        let mut chaos = self.chaos.lock().unwrap_or_else(|e| e.into_inner());
        let (chaos, rng) = chaos.as_mut()?;
        if chaos.faults.is_empty() || rng.f64() >= chaos.fault_rate {
            return None;
        }
        Some(chaos.faults[rng.usize(..chaos.faults.len())])
    }

    /// A latency drawn by [`Chaos`], if it is on.
    fn random_latency(&self) -> Option<Duration> {
        let mut chaos = self.chaos.lock().unwrap_or_else(|e| e.into_inner());
        let (chaos, rng) = chaos.as_mut()?;
        let max = chaos.max_latency.as_micros() as u64;
        (max > 0).then(|| Duration::from_micros(rng.u64(..=max)))
    }

    /// Runs `write` under the fault that strikes `operation`.
    async fn write<T, F, Fut>(&self, operation: Operation, write: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        if let Some(latency) = self.random_latency() {
            tokio::time::sleep(latency).await;
        }
        match self.strike(operation)? {
            None => write().await,
            Some(Fault::Stall) => {
                self.stalled.send_replace(true);
                let mut stalled = self.stalled.subscribe();
                let _ = stalled.wait_for(|stalled| !*stalled).await;
                write().await
            }
            Some(Fault::Resent) => {
                write().await?;
                write().await
            }
            Some(Fault::LostResponse) => {
                write().await?;
                Err(StoreError::transient("injected: the response was lost"))
            }
            Some(Fault::Transient | Fault::Permanent | Fault::Malformed) => {
                unreachable!("returned by strike")
            }
        }
    }
}

#[async_trait]
impl<S: Store> Store for FaultyStore<S> {
    fn limits(&self) -> Limits {
        self.limits.unwrap_or_else(|| self.inner.limits())
    }

    async fn begin(&self, request: &Begin) -> Result<Written<u64>, StoreError> {
        let written = self
            .write(Operation::Begin, || self.inner.begin(request))
            .await?;
        if matches!(written, Written::Refused(_)) {
            let mut owners = self
                .refused_owners
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if owners.insert(request.owner) {
                self.refused_count.send_replace(owners.len());
            }
        }
        Ok(written)
    }

    async fn complete(
        &self,
        attempt: &Attempt,
        completion: &Completion,
    ) -> Result<Written<()>, StoreError> {
        self.write(Operation::Complete, || async {
            let written = self.inner.complete(attempt, completion).await;
            if let Ok(Written::Applied(())) = written {
                let mut applied = self
                    .applied_completions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                *applied.entry(attempt.id.clone()).or_default() += 1;
            }
            written
        })
        .await
    }

    async fn extend(
        &self,
        attempt: &Attempt,
        renewal: &Renewal,
    ) -> Result<Written<()>, StoreError> {
        self.write(Operation::Extend, || self.inner.extend(attempt, renewal))
            .await
    }

    async fn release(&self, attempt: &Attempt) -> Result<Written<()>, StoreError> {
        self.write(Operation::Release, || self.inner.release(attempt))
            .await
    }

    async fn journal(
        &self,
        attempt: &Attempt,
        step: &StepRecord,
    ) -> Result<Written<()>, StoreError> {
        self.write(Operation::Journal, || self.inner.journal(attempt, step))
            .await
    }

    async fn read(&self, id: &RecordId) -> Result<Option<Arc<Record>>, StoreError> {
        self.write(Operation::Read, || self.inner.read(id)).await
    }

    async fn delete(&self, id: &RecordId) -> Result<(), StoreError> {
        self.write(Operation::Delete, || self.inner.delete(id))
            .await
    }
}
