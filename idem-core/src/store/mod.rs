//! For store authors: the [`Store`] trait, the requests it is handed, the [`Record`] it
//! keeps and the errors it answers with.
//!
//! Application code never needs this module; it uses the crate root. A store crate
//! (`idem-dynamo`, or one of your own) implements [`Store`] and depends on `idem-core` at
//! an exact version (`idem-core = "=0.1.0"`): this surface follows the engine and may
//! change in a minor release. The rules it implements are written down in the
//! repository's `docs/protocol.md`.
//!
//! A store maps the four transitions of idem's record onto one conditional write each.
//! It holds no rules of its own: every time it writes was computed by the engine from
//! its clock, and every decision about what a conflict means (replay, in progress,
//! takeover, a lost response) is the engine's. A store is done when the conformance
//! suite (`idem_core::store_conformance!`, feature `testkit`) passes against it.
//!
//! # Writing a store
//! Each write method succeeds only if its condition holds *at the moment it is applied*,
//! atomically with the write; no in-process lock stands in for that, since callers live
//! in many processes. When the condition fails, the method returns
//! [`Written::Refused`] with the record as it is now (from the same round trip where the
//! database can return it, otherwise from one strongly consistent read), or `None` when
//! there is no record. Errors that a retry may cure (throttling, timeouts, a full
//! in-memory store) are [`StoreErrorKind::Transient`]; the rest are permanent. Retry
//! transport errors inside the store's client if it has a retry policy. The engine sends
//! a begin again only when its refusal showed a free record, and a completion or a
//! release again after a transient error: the same request, so a resend whose first
//! send was applied meets the record that send wrote (`Record::shows_*`) and counts as
//! applied.
//!
//! A database that keys records by text writes a [`RecordId`] out with its `Display`
//! (`{namespace}#{digest}`, the digest as 64 lowercase hex digits; put any prefix of
//! your own in front) and an [`Owner`] with its `Display` (32 lowercase hex digits);
//! it reads them back with `RecordId`'s `FromStr` (or keeps the id it was asked for)
//! and [`Owner::from_stored`], which reads any stored text. Conditions compare the
//! stored owner text with the attempt's owner written out the same way.

mod error;
mod owner;
mod record;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

pub use error::{StoreError, StoreErrorKind};
pub use owner::{InvalidOwner, Owner};
pub use record::{ceil_secs, Codec, Outcome, Record, State, StepRecord, Steps, FORMAT};

pub use crate::key::{InvalidRecordId, RecordId};
/// The type of [`Record::data`] and [`Completion::data`], for implementing a store.
pub use bytes::Bytes;

/// The attribute [`Store`] is declared with, for implementing it.
pub use async_trait::async_trait;

/// The result of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Written<T> {
    /// The condition held and the write was applied.
    Applied(T),
    /// The condition failed and nothing was written. Carries the record as it is now,
    /// or `None` when there is no record: shared, so that a store holding it in memory
    /// hands it out without a copy (a store that decodes it from the wire wraps it in
    /// an [`Arc`]).
    Refused(Option<Arc<Record>>),
}

impl<T> Written<T> {
    /// The same answer with the applied value mapped, for a store whose database answers
    /// an applied write with more than the trait returns.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Written<U> {
        match self {
            Written::Applied(value) => Written::Applied(f(value)),
            Written::Refused(current) => Written::Refused(current),
        }
    }
}

/// The isolation level a [`Transaction`] is opened with, before its first statement:
/// see [`Call::isolation`](crate::Call::isolation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Isolation {
    /// Each statement sees what was committed before it began.
    ReadCommitted,
    /// Every statement sees one snapshot, taken at the transaction's first statement.
    RepeatableRead,
    /// As if the transactions had run one after another; the database aborts one of
    /// two that could not (a serialization failure, which a retry may cure).
    Serializable,
}

/// What taking a key inside a transaction found: the answer of [`Transaction::hold`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Hold {
    /// The transaction holds the key, under this fence, until it ends.
    Taken(u64),
    /// A live record refused it (completed, or held by another attempt's clock lease),
    /// or `None` when the record could not be read in the same statement: carries the
    /// record as it is now, as [`Written::Refused`] does.
    Refused(Option<Arc<Record>>),
    /// Another transaction holds the key and did not end within the wait.
    Busy,
    /// The database refused the statement on a serialization failure or a deadlock
    /// (what a waiting transaction meets when the one it waited for commits): a fresh
    /// transaction may take the key or replay its record.
    Conflict,
}

/// A request to take a key: see [`Store::begin`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Begin {
    /// The record id, `{namespace}#{digest}` written out.
    pub id: RecordId,
    /// The attempt's owner.
    pub owner: Owner,
    /// The engine's clock, in epoch milliseconds: the record is free iff it is not live
    /// at this instant.
    pub now_ms: u64,
    /// The end of the new lease, epoch milliseconds.
    pub lease_until_ms: u64,
    /// The new expiry, epoch seconds (`lease_until + ttl`, rounded up).
    pub expires_at_s: u64,
    /// The payload's fingerprint digest; `None` removes any fingerprint stored before.
    pub fingerprint: Option<String>,
}

impl Begin {
    /// The record this begin writes on a key that has no record, applied with `fence`: in
    /// progress, the request's owner, lease, expiry and fingerprint, no outcome or data,
    /// this build's format, codec JSON, no steps. Over an existing (free) record, write
    /// [`protocol::begun`](crate::protocol::begun) instead: it keeps the record's
    /// journal.
    pub fn record(&self, fence: u64) -> Record {
        Record {
            id: self.id.clone(),
            state: State::InProgress,
            owner: self.owner,
            fence,
            lease_until_ms: self.lease_until_ms,
            expires_at_s: self.expires_at_s,
            fingerprint: self.fingerprint.clone(),
            outcome: None,
            data: None,
            format: FORMAT,
            codec: Codec::Json,
            steps: Steps::new(),
        }
    }
}

/// The attempt that holds a key: what complete, extend and release are conditioned on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attempt {
    /// The record id.
    pub id: RecordId,
    /// The attempt's owner, as given to [`Store::begin`].
    pub owner: Owner,
    /// The fencing number [`Store::begin`] returned.
    pub fence: u64,
}

/// What [`Store::complete`] records.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Completion {
    /// The engine's clock when it completed, epoch milliseconds: for a store whose
    /// expiry is relative to the server's clock (Redis), `expires_at_s * 1000 - now_ms`
    /// is how long the record still has.
    pub now_ms: u64,
    /// The new expiry, epoch seconds (`now + ttl`, rounded up: TTL counts from
    /// completion).
    pub expires_at_s: u64,
    /// What `data` holds.
    pub outcome: Outcome,
    /// The encoded value or error; `None` for [`Outcome::NotStored`].
    pub data: Option<Bytes>,
    /// How `data` is encoded.
    pub codec: Codec,
}

/// A lease renewed by a heartbeat: what [`Store::extend`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Renewal {
    /// The engine's clock when it renewed, epoch milliseconds (see
    /// [`Completion::now_ms`]).
    pub now_ms: u64,
    /// The end of the renewed lease, epoch milliseconds.
    pub lease_until_ms: u64,
    /// The new expiry, epoch seconds (`lease_until + ttl`, rounded up).
    pub expires_at_s: u64,
}

/// What a store can hold. The engine checks both before it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest record id, in bytes, the store accepts: the id written out
    /// ([`RecordId::len`]), not counting any prefix the store puts in front of it (leave
    /// room for that prefix within the database's own limit).
    pub max_id_bytes: usize,
    /// The largest encoded value or error, in bytes, the store can record. A larger one
    /// is completed as [`Outcome::NotStored`].
    pub max_data_bytes: usize,
}

/// Where records live. Object safe: the engine holds an `Arc<dyn Store>` (and finds the
/// concrete store back through [`Any`] for a [`Transaction`]).
///
/// A record is *live* iff it is completed and `now_ms < expires_at_s * 1000`, or it is in
/// progress and `now_ms < lease_until_ms`; otherwise it is *free*
/// ([`Record::is_live`]). Each write below is one conditional write, atomic in the
/// database; on a failed condition it returns [`Written::Refused`] with the current
/// record, and writes nothing.
#[async_trait]
pub trait Store: Any + Send + Sync + 'static {
    /// What this store can hold.
    fn limits(&self) -> Limits;

    /// Takes the key for a new attempt.
    ///
    /// **Succeeds iff** there is no record with `request.id`, or the record is free at
    /// `request.now_ms`.
    ///
    /// **Writes**: state `InProgress`, `owner`, `fence` = the old fence + 1 (1 when there
    /// was no record), `lease_until_ms`, `expires_at_s`, `fingerprint` (removed when
    /// `None`), `format` and `codec` of this build; removes `outcome` and `data`; keeps
    /// `steps` (the journal of the record's lifetime: empty after a completion).
    ///
    /// **Returns** `Applied(new fence)`, or `Refused(current record)`.
    async fn begin(&self, request: &Begin) -> Result<Written<u64>, StoreError>;

    /// Records the attempt's outcome.
    ///
    /// **Succeeds iff** the record is `InProgress` and its owner and fence are the
    /// attempt's ([`Record::is_held_by`]), also after the lease lapsed if nobody took
    /// over.
    ///
    /// **Writes**: state `Completed`, `outcome`, `data` (removed when `None`), `codec`,
    /// `expires_at_s`; empties `steps` (a replay needs only the outcome); keeps owner,
    /// fence, lease and fingerprint.
    ///
    /// **Returns** `Applied(())`, or `Refused(current record or None)`.
    async fn complete(
        &self,
        attempt: &Attempt,
        completion: &Completion,
    ) -> Result<Written<()>, StoreError>;

    /// Renews the attempt's lease (a heartbeat).
    ///
    /// **Succeeds iff** the same condition as [`complete`](Store::complete) holds and the
    /// lease was not released (`lease_until_ms > 0`, [`Record::is_renewable_by`]): a
    /// heartbeat the engine stopped waiting for may reach the store after the release,
    /// and must not revive the lease.
    ///
    /// **Writes**: `lease_until_ms` and `expires_at_s` from `renewal`.
    ///
    /// **Returns** `Applied(())`, or `Refused(current record or None)`.
    async fn extend(&self, attempt: &Attempt, renewal: &Renewal)
        -> Result<Written<()>, StoreError>;

    /// Writes one step of the attempt's body into the record's journal
    /// ([`Record::steps`]): the step's result once it finished, or, for an at-most-once
    /// step, that it started.
    ///
    /// **Succeeds iff** the same condition as [`complete`](Store::complete) holds
    /// ([`Record::is_held_by`]): only the attempt that holds the key journals, a stale one
    /// is refused as its completion would be.
    ///
    /// **Writes**: `step` into `steps`, replacing the entry of the same name if there is
    /// one, appended otherwise; nothing else. [`begin`](Store::begin),
    /// [`extend`](Store::extend) and [`release`](Store::release) keep `steps` (a later
    /// attempt of the same record finds them); [`complete`](Store::complete) empties it.
    /// Where the store cannot hold the journal with the record (its size limit), an error
    /// that says so.
    ///
    /// **Returns** `Applied(())`, or `Refused(current record or None)`.
    ///
    /// Every store implements it: the conformance kit checks it, and a body with steps
    /// needs it. The default refuses with a permanent error, so that a store written
    /// before steps existed says so instead of dropping a journal.
    async fn journal(
        &self,
        attempt: &Attempt,
        step: &StepRecord,
    ) -> Result<Written<()>, StoreError> {
        let _ = (attempt, step);
        Err(StoreError::permanent(
            "this store keeps no journal of steps (Store::journal is not implemented)",
        ))
    }

    /// Frees the key at once, so a retry can run the body again.
    ///
    /// **Succeeds iff** the same condition as [`complete`](Store::complete) holds.
    ///
    /// **Writes**: `lease_until_ms = 0`. The record stays, so the next begin gets a
    /// higher fence.
    ///
    /// **Returns** `Applied(())`, or `Refused(current record or None)`.
    async fn release(&self, attempt: &Attempt) -> Result<Written<()>, StoreError>;

    /// [`begin`](Store::begin) for each of `requests`, whose ids are distinct: the
    /// answers in the requests' order, each exactly what `begin` would have answered
    /// for that request alone. A batch is N independent keys: nothing is atomic across
    /// them, an answer may be an error while the others are applied, and one that
    /// fails as a whole fails every item.
    ///
    /// The default sends the single begins concurrently (one round trip each). A store
    /// whose database can take many keys at once overrides it with one round trip; it
    /// must take the keys in a fixed order (by id) wherever it locks them, so that two
    /// batches sharing keys cannot deadlock.
    async fn begin_batch(&self, requests: &[Begin]) -> Vec<Result<Written<u64>, StoreError>> {
        futures_util::future::join_all(requests.iter().map(|request| self.begin(request))).await
    }

    /// [`complete`](Store::complete) for each of `completions` (attempts on distinct
    /// ids): the answers in their order, each exactly what `complete` would have
    /// answered alone; as [`begin_batch`](Store::begin_batch), nothing is atomic across
    /// items. The default sends the single completions concurrently.
    async fn complete_batch(
        &self,
        completions: &[(Attempt, Completion)],
    ) -> Vec<Result<Written<()>, StoreError>> {
        futures_util::future::join_all(
            completions
                .iter()
                .map(|(attempt, completion)| self.complete(attempt, completion)),
        )
        .await
    }

    /// Reads the record with `id`, strongly consistent.
    async fn read(&self, id: &RecordId) -> Result<Option<Arc<Record>>, StoreError>;

    /// Deletes the record with `id`, unconditionally. For operators: it resets fencing,
    /// so an attempt that still runs may see its fence number reused.
    async fn delete(&self, id: &RecordId) -> Result<(), StoreError>;
}

/// A transaction of a store's database, shared by a body's own writes and its
/// completion, so that both commit or neither does: what
/// [`Call::run_in_transaction`](crate::Call::run_in_transaction) hands the body.
///
/// It holds the key in one of two ways:
/// - **by a clock lease** (the default of the trait): the engine takes the key with
///   [`Store::begin`] (the lease is committed first, so duplicates see the call in
///   progress), opens the transaction, keeps the lease alive with heartbeats through the
///   [`Store`] on other connections while the body writes in it, then writes the
///   completion in it with [`complete`](Transaction::complete) and commits;
/// - **by the transaction itself** (when [`holds_key`](Transaction::holds_key) says
///   so): the engine opens the transaction first and takes the key inside it with
///   [`hold`](Transaction::hold); the record's row stays locked by the open transaction,
///   which is the lease: no clock, no heartbeat, and it ends when the transaction
///   commits, rolls back, or its session ends.
///
/// A refused completion, a failed body and a panic roll it back.
#[async_trait]
pub trait Transaction: Send + Sized + 'static {
    /// The store whose records the completion is written to: the engine's store must be
    /// this type.
    type Store: Store;

    /// Opens a transaction on `store`'s database, on a connection that the store's own
    /// calls do not use, at `isolation` (the database's default when `None`).
    async fn open(store: &Self::Store, isolation: Option<Isolation>) -> Result<Self, StoreError>;

    /// Whether this transaction holds the key itself ([`hold`](Transaction::hold)),
    /// instead of a clock lease taken before it is opened. `false` unless the store
    /// implements it.
    fn holds_key(store: &Self::Store) -> bool {
        let _ = store;
        false
    }

    /// Takes the key inside this transaction, before the body writes in it, in one
    /// statement: succeeds iff [`Store::begin`] would (no record, or a free one), with a
    /// fence higher than that of every attempt that took the key before it, rolled back
    /// or not (drawn once the key is held, not before a wait for another holder); a
    /// record live as last committed refuses it without being locked or waited for, so
    /// that duplicates of a completed record never wait for one another; the written record
    /// is in progress and released (`lease_until_ms = 0`: should the transaction ever
    /// commit it unfinished, it is free). A row locked by another transaction is waited
    /// for up to `wait` (`None`: not at all), then [`Hold::Busy`]. Called only when
    /// [`holds_key`](Transaction::holds_key) is `true`.
    async fn hold(&mut self, request: &Begin, wait: Option<Duration>) -> Result<Hold, StoreError> {
        let _ = (request, wait);
        Err(StoreError::permanent(
            "this transaction does not hold keys itself (holds_key is false)",
        ))
    }

    /// [`Store::complete`] inside this transaction: the same condition and writes, seen
    /// by others only once committed. Every other write that meets the record meanwhile
    /// (a begin, an extend, a release) waits for the commit or the rollback, then
    /// applies to the completed or the held record; a read sees the record as last
    /// committed. The engine relies on a release's wait to settle a commit whose answer
    /// was lost.
    async fn complete(
        &mut self,
        attempt: &Attempt,
        completion: &Completion,
    ) -> Result<Written<()>, StoreError>;

    /// [`Store::journal`] inside this transaction: the same condition and write, seen by
    /// others only once committed, so that a database step's own writes and its journal
    /// entry commit together or not at all (`docs/protocol.md`, steps). The default
    /// refuses with a permanent error: the store has no database steps.
    async fn journal(
        &mut self,
        attempt: &Attempt,
        step: &StepRecord,
    ) -> Result<Written<()>, StoreError> {
        let _ = (attempt, step);
        Err(StoreError::permanent(
            "this store's transactions keep no journal of steps (Transaction::journal is not \
             implemented)",
        ))
    }

    /// Commits the body's writes and the completion together.
    async fn commit(self) -> Result<(), StoreError>;

    /// Rolls everything back. Dropping a transaction that was neither committed nor
    /// rolled back must roll it back too (a panic, a cancelled call).
    async fn rollback(self) -> Result<(), StoreError>;
}
