//! [`CountingStore`]: a store that counts the calls it forwards, for tests and
//! benchmarks that count round trips.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::store::{
    async_trait, Attempt, Begin, Completion, Limits, Record, RecordId, Renewal, StepRecord, Store,
    StoreError, Written,
};

/// Forwards every call to `inner` (its batch forms to the inner batch forms) and counts
/// the calls: one per single-record operation, one per batch call. For a store whose
/// batch forms are native (one statement, one pipeline, one lock) each call is one
/// round trip; under the trait's default a batch call is one round trip per item, which
/// this count does not see.
#[derive(Debug, Default)]
pub struct CountingStore<S> {
    inner: S,
    calls: Arc<AtomicUsize>,
}

impl<S> CountingStore<S> {
    /// Counts the calls to `inner`.
    pub fn new(inner: S) -> Self {
        CountingStore {
            inner,
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The calls forwarded so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The count, shared: it goes on counting after the store is moved into an
    /// engine.
    pub fn counter(&self) -> Arc<AtomicUsize> {
        self.calls.clone()
    }

    /// The store counted.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl<S: Store> Store for CountingStore<S> {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }
    async fn begin(&self, request: &Begin) -> Result<Written<u64>, StoreError> {
        self.count();
        self.inner.begin(request).await
    }
    async fn begin_batch(&self, requests: &[Begin]) -> Vec<Result<Written<u64>, StoreError>> {
        self.count();
        self.inner.begin_batch(requests).await
    }
    async fn complete(
        &self,
        attempt: &Attempt,
        completion: &Completion,
    ) -> Result<Written<()>, StoreError> {
        self.count();
        self.inner.complete(attempt, completion).await
    }
    async fn complete_batch(
        &self,
        completions: &[(Attempt, Completion)],
    ) -> Vec<Result<Written<()>, StoreError>> {
        self.count();
        self.inner.complete_batch(completions).await
    }
    async fn extend(
        &self,
        attempt: &Attempt,
        renewal: &Renewal,
    ) -> Result<Written<()>, StoreError> {
        self.count();
        self.inner.extend(attempt, renewal).await
    }
    async fn release(&self, attempt: &Attempt) -> Result<Written<()>, StoreError> {
        self.count();
        self.inner.release(attempt).await
    }
    async fn read(&self, id: &RecordId) -> Result<Option<Arc<Record>>, StoreError> {
        self.count();
        self.inner.read(id).await
    }
    async fn delete(&self, id: &RecordId) -> Result<(), StoreError> {
        self.count();
        self.inner.delete(id).await
    }
    async fn journal(
        &self,
        attempt: &Attempt,
        step: &StepRecord,
    ) -> Result<Written<()>, StoreError> {
        self.count();
        self.inner.journal(attempt, step).await
    }
}

/// Forwards the single-record operations to `inner` and nothing else: its batch forms
/// are the trait's defaults, which loop over the single operations. Beside `inner`'s
/// own batch forms it shows what they save; wrapped around a [`CountingStore`], it
/// counts the round trips of the loop.
#[derive(Debug, Default)]
pub struct LoopingStore<S>(pub S);

#[async_trait]
impl<S: Store> Store for LoopingStore<S> {
    fn limits(&self) -> Limits {
        self.0.limits()
    }
    async fn begin(&self, request: &Begin) -> Result<Written<u64>, StoreError> {
        self.0.begin(request).await
    }
    async fn complete(
        &self,
        attempt: &Attempt,
        completion: &Completion,
    ) -> Result<Written<()>, StoreError> {
        self.0.complete(attempt, completion).await
    }
    async fn extend(
        &self,
        attempt: &Attempt,
        renewal: &Renewal,
    ) -> Result<Written<()>, StoreError> {
        self.0.extend(attempt, renewal).await
    }
    async fn release(&self, attempt: &Attempt) -> Result<Written<()>, StoreError> {
        self.0.release(attempt).await
    }
    async fn read(&self, id: &RecordId) -> Result<Option<Arc<Record>>, StoreError> {
        self.0.read(id).await
    }
    async fn delete(&self, id: &RecordId) -> Result<(), StoreError> {
        self.0.delete(id).await
    }
    async fn journal(
        &self,
        attempt: &Attempt,
        step: &StepRecord,
    ) -> Result<Written<()>, StoreError> {
        self.0.journal(attempt, step).await
    }
}
