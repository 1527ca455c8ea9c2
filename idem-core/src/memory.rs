//! The in-memory store: the embedded default.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashTable};

use crate::protocol;
use crate::store::{
    Attempt, Begin, Completion, Limits, Renewal, StepRecord, Store, StoreError, Written,
};
use crate::store::{Record, RecordId};

/// The number of records a [`MemoryStore`] holds by default.
pub const DEFAULT_CAPACITY: usize = 1_000_000;

/// Records kept in this process's memory.
///
/// **Process-local**: it deduplicates calls within one process only. Two Lambda
/// instances, two pods or two consumers each have their own, and a duplicate delivered
/// to the other one runs the body again. Use a shared store (DynamoDB) wherever
/// duplicates can reach more than one process; use this one for tests, for single-process
/// services, and to try idem out.
///
/// The store is bounded: it holds at most `capacity` records (1,000,000 by default). A
/// record that is neither live nor within its TTL (`now >= expires_at`) is reclaimed;
/// a live record is never evicted. When the store is full of records that cannot be
/// reclaimed, begin fails with a transient [`StoreError`] and the body does not run.
///
/// ```
/// use idem_core::{Engine, MemoryStore};
/// let engine = Engine::new(MemoryStore::new());
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The records, found by their own id (no second copy of it as a key). Shared, so a
    /// bucket is one pointer (at the load factor's worst, a map has twice as many
    /// buckets as records) and a refusal hands the record out without copying it.
    records: Records,
    /// New records since the last sweep; a sweep runs once this reaches the map's size,
    /// so sweeping costs O(1) per insert, amortized.
    inserts_since_sweep: usize,
    /// No record expires before this instant (epoch ms): the earliest expiry the last
    /// sweep left, lowered by every write since. A full store sweeps again only once it
    /// is reached, so refusing new keys while every record is live costs O(1), not a
    /// pass over every record under the lock.
    earliest_expiry_ms: u64,
}

/// Records by id.
#[derive(Debug, Default)]
struct Records {
    table: HashTable<Arc<Record>>,
    hasher: DefaultHashBuilder,
}

impl Records {
    fn len(&self) -> usize {
        self.table.len()
    }

    /// The hash a record is found by: the first 8 bytes of its digest (SHA-256 output,
    /// which already tells keys apart; the namespace is compared, not hashed), through
    /// the map's seeded hasher.
    fn hash(&self, id: &RecordId) -> u64 {
        hash_of(&self.hasher, id)
    }

    fn get(&self, id: &RecordId) -> Option<&Arc<Record>> {
        let hash = self.hash(id);
        self.table.find(hash, |record| record.id == *id)
    }

    fn get_mut(&mut self, id: &RecordId) -> Option<&mut Arc<Record>> {
        let hash = self.hash(id);
        self.table.find_mut(hash, |record| record.id == *id)
    }

    /// Puts `record` in place of the one with its id, if any.
    fn insert(&mut self, record: Record) {
        let hash = self.hash(&record.id);
        let hasher = &self.hasher;
        match self.table.entry(
            hash,
            |held| held.id == record.id,
            |held| hash_of(hasher, &held.id),
        ) {
            Entry::Occupied(mut held) => {
                let held = held.get_mut();
                // In place, unless a reader still shares the old record.
                match Arc::get_mut(held) {
                    Some(only) => *only = record,
                    None => *held = Arc::new(record),
                }
            }
            Entry::Vacant(vacant) => {
                vacant.insert(Arc::new(record));
            }
        }
    }

    fn remove(&mut self, id: &RecordId) {
        let hash = self.hash(id);
        if let Ok(held) = self.table.find_entry(hash, |record| record.id == *id) {
            held.remove();
        }
    }

    fn clear(&mut self) {
        self.table.clear();
    }

    fn retain(&mut self, mut keep: impl FnMut(&Record) -> bool) {
        self.table.retain(|record| keep(record));
    }

    fn capacity(&self) -> usize {
        self.table.capacity()
    }

    fn shrink_to(&mut self, capacity: usize) {
        let hasher = &self.hasher;
        self.table
            .shrink_to(capacity, |record| hash_of(hasher, &record.id));
    }
}

/// [`Records::hash`], for the closures that rehash what the map holds.
fn hash_of(hasher: &DefaultHashBuilder, id: &RecordId) -> u64 {
    let digest = id.digest();
    hasher.hash_one(u64::from_le_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ]))
}

impl MemoryStore {
    /// A store holding up to [`DEFAULT_CAPACITY`] records.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }

    /// A store holding up to `capacity` records.
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryStore {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The number of records held now, expired ones not yet reclaimed included.
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Removes every record: for tests that share one store and want a clean slate
    /// between cases. Calls in flight may find their record gone (their completion is
    /// then refused, as after an operator's delete).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.records.clear();
        inner.inserts_since_sweep = 0;
        inner.earliest_expiry_ms = 0;
    }

    /// Whether the store holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores `record` as given, bypassing every condition: for tests that need a
    /// record no transition writes (a newer format, a corrupt value).
    #[cfg(feature = "testkit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
    pub fn put_raw(&self, record: Record) {
        self.lock().records.insert(record);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a record half-written (every
        // mutation below is a single assignment), so a poisoned lock is safe to reuse.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one of the fenced transitions of [`protocol`] to the record with
    /// `attempt.id`.
    fn update(
        &self,
        attempt: &Attempt,
        transition: impl FnOnce(Option<&mut Arc<Record>>) -> Written<()>,
    ) -> Result<Written<()>, StoreError> {
        Ok(self.lock().update(attempt, transition))
    }
}

/// A value at most this long is copied into the record it completes, exactly sized; a
/// longer one is shared with the completion.
const COPIED_DATA_BYTES: usize = 256;

/// Makes a completed record hold a small value on its own: a copy, exactly sized, costs
/// less than the shared header (24 bytes) a clone of the completion's bytes would keep
/// alive for the record's lifetime.
fn keep_exact(record: &mut Arc<Record>) {
    if let Some(data) = &record.data {
        if data.len() <= COPIED_DATA_BYTES {
            let copy = Bytes::copy_from_slice(data);
            Arc::make_mut(record).data = Some(copy);
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Inner {
    /// [`Store::begin`] on these records, holding at most `capacity`.
    fn begin(&mut self, capacity: usize, request: &Begin) -> Result<Written<u64>, StoreError> {
        let current = self.records.get(&request.id);
        let record = match protocol::begin(current, request) {
            // A takeover keeps the journal of the record's lifetime.
            Written::Applied(fence) if current.is_some() => {
                protocol::begun(current.map(|r| &**r), request, fence)
            }
            Written::Applied(fence) => {
                // Full: reclaim, but only once some record can have expired.
                if self.records.len() >= capacity && request.now_ms >= self.earliest_expiry_ms {
                    self.sweep(request.now_ms);
                }
                if self.records.len() >= capacity {
                    return Err(StoreError::transient(format!(
                        "the in-memory store is full: all {} records are live or within their ttl; \
                         raise MemoryStore::with_capacity, shorten the ttl, or use a shared store",
                        capacity
                    )));
                }
                self.inserts_since_sweep += 1;
                if self.inserts_since_sweep >= self.records.len().max(1024) {
                    self.sweep(request.now_ms);
                }
                request.record(fence)
            }
            refused @ Written::Refused(_) => return Ok(refused),
        };
        let fence = record.fence;
        let expiry = request.expires_at_s.saturating_mul(1000);
        self.earliest_expiry_ms = self.earliest_expiry_ms.min(expiry);
        self.records.insert(record);
        Ok(Written::Applied(fence))
    }

    /// [`MemoryStore::update`] on these records.
    fn update(
        &mut self,
        attempt: &Attempt,
        transition: impl FnOnce(Option<&mut Arc<Record>>) -> Written<()>,
    ) -> Written<()> {
        let Inner {
            records,
            earliest_expiry_ms,
            ..
        } = self;
        match records.get_mut(&attempt.id) {
            Some(record) => {
                let written = transition(Some(&mut *record));
                if let Written::Applied(()) = written {
                    let expiry = record.expires_at_s.saturating_mul(1000);
                    *earliest_expiry_ms = (*earliest_expiry_ms).min(expiry);
                }
                written
            }
            None => transition(None),
        }
    }

    /// [`Store::complete`] on these records.
    fn complete(&mut self, attempt: &Attempt, completion: &Completion) -> Written<()> {
        self.update(attempt, |mut record| {
            let written = protocol::complete(record.as_deref_mut(), attempt, completion);
            if let (Written::Applied(()), Some(record)) = (&written, record) {
                keep_exact(record);
            }
            written
        })
    }

    /// Removes every record that has expired at `now_ms` (which implies its lease
    /// lapsed at least a TTL ago).
    fn sweep(&mut self, now_ms: u64) {
        let mut earliest = u64::MAX;
        self.records.retain(|record| {
            let keep = !record.is_expired(now_ms);
            if keep {
                earliest = earliest.min(record.expires_at_s.saturating_mul(1000));
            }
            keep
        });
        self.earliest_expiry_ms = earliest;
        self.inserts_since_sweep = 0;
        // A map that held many more records keeps their buckets: give them back.
        let keep = self.records.len().max(1024) * 2;
        if self.records.capacity() > keep * 2 {
            self.records.shrink_to(keep);
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn limits(&self) -> Limits {
        Limits {
            max_id_bytes: 2048,
            max_data_bytes: 4 * 1024 * 1024,
        }
    }

    async fn begin(&self, request: &Begin) -> Result<Written<u64>, StoreError> {
        self.lock().begin(self.capacity, request)
    }

    /// Every begin under one lock.
    async fn begin_batch(&self, requests: &[Begin]) -> Vec<Result<Written<u64>, StoreError>> {
        let mut inner = self.lock();
        requests
            .iter()
            .map(|request| inner.begin(self.capacity, request))
            .collect()
    }

    async fn complete(
        &self,
        attempt: &Attempt,
        completion: &Completion,
    ) -> Result<Written<()>, StoreError> {
        Ok(self.lock().complete(attempt, completion))
    }

    /// Every completion under one lock.
    async fn complete_batch(
        &self,
        completions: &[(Attempt, Completion)],
    ) -> Vec<Result<Written<()>, StoreError>> {
        let mut inner = self.lock();
        completions
            .iter()
            .map(|(attempt, completion)| Ok(inner.complete(attempt, completion)))
            .collect()
    }

    async fn extend(
        &self,
        attempt: &Attempt,
        renewal: &Renewal,
    ) -> Result<Written<()>, StoreError> {
        self.update(attempt, |record| protocol::extend(record, attempt, renewal))
    }

    async fn release(&self, attempt: &Attempt) -> Result<Written<()>, StoreError> {
        self.update(attempt, |record| protocol::release(record, attempt))
    }

    async fn journal(
        &self,
        attempt: &Attempt,
        step: &StepRecord,
    ) -> Result<Written<()>, StoreError> {
        self.update(attempt, |record| protocol::journal(record, attempt, step))
    }

    async fn read(&self, id: &RecordId) -> Result<Option<Arc<Record>>, StoreError> {
        Ok(self.lock().records.get(id).cloned())
    }

    async fn delete(&self, id: &RecordId) -> Result<(), StoreError> {
        self.lock().records.remove(id);
        Ok(())
    }
}
