//! A local cache of completed records, in front of any store: opt-in, on the engine
//! ([`EngineBuilder::local_cache`](crate::EngineBuilder::local_cache)).
//!
//! A duplicate whose key this process completed, or replayed, a moment ago is answered
//! from memory, with no store request. Only completed records are cached, never one in
//! progress or released: the cache can only answer with what the store already holds
//! for good, a recorded outcome, never decide who runs the body.
//!
//! What a cached replay cannot see: a record deleted or changed in the store by
//! someone else (an operator's delete, a purge, another engine with other settings)
//! until its entry ages out, after [`LocalCache::max_age`] at most. A record that
//! expires (its TTL) leaves the cache when it expires in the store.

use std::sync::Arc;
use std::time::Duration;

use quick_cache::sync::Cache as Entries;
use quick_cache::Weighter;

use crate::error::Error;
use crate::key::RecordId;
use crate::store::{Record, State};

/// The settings of an engine's local cache of completed records: bounded by entries
/// and by bytes, each entry living no longer than its record's TTL nor
/// [`max_age`](LocalCache::max_age).
///
/// ```
/// use std::time::Duration;
/// use idem_core::{Engine, LocalCache, MemoryStore};
///
/// let engine = Engine::builder(MemoryStore::new())
///     .local_cache(
///         LocalCache::new()
///             .max_entries(50_000)
///             .max_bytes(32 << 20)
///             .max_age(Duration::from_secs(30)),
///     )
///     .build()
///     .unwrap();
/// # let _ = engine;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalCache {
    max_entries: usize,
    max_bytes: u64,
    max_age: Duration,
}

impl Default for LocalCache {
    fn default() -> Self {
        LocalCache {
            max_entries: 10_000,
            max_bytes: 16 << 20,
            max_age: Duration::from_secs(60),
        }
    }
}

impl LocalCache {
    /// 10,000 entries, 16 MiB, one minute.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most this many records (at least 1).
    pub fn max_entries(mut self, entries: usize) -> Self {
        self.max_entries = entries;
        self
    }

    /// At most this many bytes: the record itself, its fingerprint and data, and its id
    /// as the entry's key (at least 1).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// How long an entry is trusted at most, counted on the engine's clock from when it
    /// was cached: the longest a record deleted in the store can still be replayed from
    /// here. Shorter than its record's TTL to matter (positive).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    pub(crate) fn build(self) -> Result<Cache, Error> {
        if self.max_entries == 0 || self.max_bytes == 0 || self.max_age.is_zero() {
            return Err(Error::Config(format!(
                "a local cache needs room for at least one entry, one byte and a positive max_age; \
                 got {self:?}"
            )));
        }
        // Every entry weighs at least max_bytes / max_entries, so that a total weight
        // within max_bytes also keeps the count within max_entries.
        let floor = (self.max_bytes / self.max_entries as u64).max(1);
        Ok(Cache {
            entries: Entries::with_weighter(self.max_entries, self.max_bytes, Weight { floor }),
            max_age_ms: u64::try_from(self.max_age.as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// A completed record, trusted until `until_ms`.
#[derive(Debug)]
pub(crate) struct Cached {
    pub(crate) record: Arc<Record>,
    until_ms: u64,
}

/// An entry's weight: its bytes, or the floor that bounds the count.
#[derive(Debug, Clone)]
struct Weight {
    floor: u64,
}

impl Weighter<RecordId, Arc<Cached>> for Weight {
    fn weight(&self, id: &RecordId, cached: &Arc<Cached>) -> u64 {
        let record = &cached.record;
        // The namespace's text: shared by the records of a fixed one, counted as if each
        // entry kept its own copy (a namespace given as a `&str` is copied per call).
        let text = id.namespace().len()
            + record.codec.as_str().len()
            + record.fingerprint.as_ref().map_or(0, String::len)
            + record.data.as_ref().map_or(0, |data| data.len());
        let bytes = (std::mem::size_of::<RecordId>()
            + std::mem::size_of::<Cached>()
            + std::mem::size_of::<Record>()
            + text) as u64;
        bytes.max(self.floor)
    }
}

/// The engine's cache: completed records by id.
pub(crate) struct Cache {
    entries: Entries<RecordId, Arc<Cached>, Weight>,
    max_age_ms: u64,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("entries", &self.entries.len())
            .field("max_age_ms", &self.max_age_ms)
            .finish()
    }
}

impl Cache {
    /// The completed record with `id`, if cached and still trusted at `now_ms`.
    pub(crate) fn get(&self, id: &RecordId, now_ms: u64) -> Option<Arc<Cached>> {
        let cached = self.entries.get(id)?;
        if now_ms < cached.until_ms {
            return Some(cached);
        }
        self.entries.remove(id);
        None
    }

    /// Caches `record` if it is completed and not expired at `now_ms`, until its expiry
    /// or `now + max_age`, whichever comes first.
    pub(crate) fn put(&self, record: Arc<Record>, now_ms: u64) {
        if record.state != State::Completed || record.is_expired(now_ms) {
            return;
        }
        let until_ms = record
            .expires_at_s
            .saturating_mul(1000)
            .min(now_ms.saturating_add(self.max_age_ms));
        let id = record.id.clone();
        self.entries
            .insert(id, Arc::new(Cached { record, until_ms }));
    }

    /// The number of entries held now.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}
