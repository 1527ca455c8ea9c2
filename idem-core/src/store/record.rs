//! The record a store keeps per key, and its states.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use super::{Attempt, Owner, Renewal};
use crate::key::RecordId;

/// The record format this build writes. A record with a higher format was written by a
/// newer version of idem and is refused with a decode error, never overwritten.
pub const FORMAT: u32 = 1;

/// How a record's `data` is encoded: the stored `codec` field.
///
/// The engine chooses it per value: a value that serializes as one byte string
/// (`bytes::Bytes`, `serde_bytes::ByteBuf`, a non-empty `Vec<u8>`) is recorded as its raw
/// bytes, everything else as JSON. Recorded errors are always JSON. The names are frozen
/// (`docs/protocol.md`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Codec {
    /// `json`: UTF-8 JSON, as `serde_json` writes it. Every record written before the
    /// bytes codec existed has this codec.
    Json,
    /// `bytes`: the value's bytes as they are (a DynamoDB Binary attribute, a
    /// PostgreSQL `bytea`, a Redis string), never base64.
    Bytes,
    /// A codec this build does not know, as stored: written by a newer idem. Replaying
    /// it answers a decode error; the body never runs because of it.
    Unknown(Box<str>),
}

impl Codec {
    /// The stored name: `json`, `bytes`, or the unknown name as read.
    pub fn as_str(&self) -> &str {
        match self {
            Codec::Json => "json",
            Codec::Bytes => "bytes",
            Codec::Unknown(name) => name,
        }
    }

    /// The codec a stored name stands for ([`Codec::Unknown`] for a name this build does
    /// not know).
    pub fn from_stored(name: &str) -> Codec {
        match name {
            "json" => Codec::Json,
            "bytes" => Codec::Bytes,
            other => Codec::Unknown(other.into()),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a key stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// A call holds (or held) the key's lease and has not recorded an outcome.
    InProgress,
    /// A call recorded its outcome; duplicates replay it until the record expires.
    Completed,
}

impl State {
    /// The stored form: `INPROGRESS` or `COMPLETED`, as AWS Lambda Powertools writes.
    pub fn as_str(self) -> &'static str {
        match self {
            State::InProgress => "INPROGRESS",
            State::Completed => "COMPLETED",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "INPROGRESS" => Ok(State::InProgress),
            "COMPLETED" => Ok(State::Completed),
            other => Err(format!("unknown record state `{other}`")),
        }
    }
}

/// What a completed record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// `data` holds the encoded value the body returned.
    Ok,
    /// `data` holds an encoded error the body returned, recorded under `replay_errors`.
    Err,
    /// The value was too large for the store; duplicates get a result-not-stored error.
    NotStored,
}

impl Outcome {
    /// The stored form: `ok`, `err` or `not_stored`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Err => "err",
            Outcome::NotStored => "not_stored",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ok" => Ok(Outcome::Ok),
            "err" => Ok(Outcome::Err),
            "not_stored" => Ok(Outcome::NotStored),
            other => Err(format!("unknown record outcome `{other}`")),
        }
    }
}

/// One key's record, as a store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    /// The namespace and the key's digest; `{namespace}#{digest}` written out (without
    /// any prefix the store adds).
    pub id: RecordId,
    /// In progress or completed.
    pub state: State,
    /// The attempt that wrote the record: random per attempt, kept on completion.
    pub owner: Owner,
    /// The fencing number: +1 at every successful begin, never reset while the record
    /// exists.
    pub fence: u64,
    /// Epoch milliseconds; the lease is live iff `now_ms < lease_until_ms`.
    pub lease_until_ms: u64,
    /// Epoch seconds (the TTL attribute); a completed record is live iff
    /// `now_ms < expires_at_s * 1000`.
    pub expires_at_s: u64,
    /// The digest of the payload's fingerprint, when the call that began gave one.
    pub fingerprint: Option<String>,
    /// Completed records only: what `data` holds.
    pub outcome: Option<Outcome>,
    /// The encoded value or error, shared: a store that holds the record in memory hands
    /// it out without copying it.
    pub data: Option<Bytes>,
    /// The record format version ([`FORMAT`] for this build).
    pub format: u32,
    /// How `data` is encoded.
    pub codec: Codec,
    /// The journal of the record's current lifetime: the steps its attempts finished
    /// (or, for an at-most-once step, started), in the order they were first written.
    /// Kept across takeovers and releases, emptied by the completion (a replay needs only
    /// the outcome). Empty for a body without steps, and in every record written before
    /// steps existed.
    pub steps: Steps,
}

/// A record's journal: its [`StepRecord`]s in the order they were first written. A
/// slice of them to read; empty, it takes one pointer's room and no allocation (most
/// records have no steps).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
// A box around the vector, so that a record without steps keeps one null pointer (8
// bytes) instead of an empty vector (24) in every record held in memory.
#[allow(clippy::box_collection)]
pub struct Steps(Option<Box<Vec<StepRecord>>>);

impl Steps {
    /// No steps.
    pub const fn new() -> Steps {
        Steps(None)
    }

    /// Writes `step`: in place of the entry of the same name if there is one, appended
    /// otherwise (what [`Store::journal`](super::Store::journal) writes).
    pub fn write(&mut self, step: StepRecord) {
        let entries = self.0.get_or_insert_with(Box::default);
        match entries.iter_mut().find(|entry| entry.name == step.name) {
            Some(entry) => *entry = step,
            None => entries.push(step),
        }
    }

    /// Removes every step.
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

impl std::ops::Deref for Steps {
    type Target = [StepRecord];

    fn deref(&self) -> &[StepRecord] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl fmt::Debug for Steps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl From<Vec<StepRecord>> for Steps {
    fn from(steps: Vec<StepRecord>) -> Steps {
        if steps.is_empty() {
            Steps(None)
        } else {
            Steps(Some(Box::new(steps)))
        }
    }
}

impl FromIterator<StepRecord> for Steps {
    fn from_iter<I: IntoIterator<Item = StepRecord>>(steps: I) -> Steps {
        steps.into_iter().collect::<Vec<_>>().into()
    }
}

impl<'a> IntoIterator for &'a Steps {
    type Item = &'a StepRecord;
    type IntoIter = std::slice::Iter<'a, StepRecord>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq<Vec<StepRecord>> for Steps {
    fn eq(&self, other: &Vec<StepRecord>) -> bool {
        **self == **other
    }
}

impl PartialEq<[StepRecord]> for Steps {
    fn eq(&self, other: &[StepRecord]) -> bool {
        **self == *other
    }
}

impl<const N: usize> PartialEq<[StepRecord; N]> for Steps {
    fn eq(&self, other: &[StepRecord; N]) -> bool {
        **self == other[..]
    }
}

/// One step of a guarded body, as the record's journal keeps it: what
/// [`Store::journal`](super::Store::journal) writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StepRecord {
    /// The step's name, unique within the body.
    pub name: String,
    /// `None` while an at-most-once step has started and its result is not journaled (a
    /// later attempt that finds it does not run the step again); `Some(Ok)` or
    /// `Some(Err)` once its value or its recorded error is in `data`. Never
    /// [`Outcome::NotStored`]: a step value too large to journal fails the step.
    pub outcome: Option<Outcome>,
    /// The encoded value or error; `None` while started.
    pub data: Option<Bytes>,
    /// How `data` is encoded (JSON while started).
    pub codec: Codec,
}

impl StepRecord {
    /// The entry an at-most-once step writes before it runs.
    pub fn started(name: impl Into<String>) -> StepRecord {
        StepRecord {
            name: name.into(),
            outcome: None,
            data: None,
            codec: Codec::Json,
        }
    }

    /// Whether the step's result is journaled (its value or a recorded error).
    pub fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }

    /// The bytes this entry's data takes (what counts against the store's
    /// [`Limits::max_data_bytes`](super::Limits::max_data_bytes), with the other steps').
    pub fn data_len(&self) -> usize {
        self.data.as_ref().map_or(0, Bytes::len)
    }
}

impl Record {
    /// Whether the lease is live at `now_ms`: [`protocol::lease_is_live`](crate::protocol::lease_is_live).
    pub fn lease_is_live(&self, now_ms: u64) -> bool {
        crate::protocol::lease_is_live(now_ms, self.lease_until_ms)
    }

    /// Whether the record has expired at `now_ms` (its TTL has passed).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_s.saturating_mul(1000)
    }

    /// Whether the record is live at `now_ms`: completed and not expired, or in progress
    /// with a live lease. A record that is not live is *free*: begin may take it.
    pub fn is_live(&self, now_ms: u64) -> bool {
        match self.state {
            State::Completed => !self.is_expired(now_ms),
            State::InProgress => self.lease_is_live(now_ms),
        }
    }

    /// Whether `attempt` holds this record: in progress with the attempt's owner and
    /// fence. The condition of complete, extend and release.
    pub fn is_held_by(&self, attempt: &Attempt) -> bool {
        self.state == State::InProgress
            && self.owner == attempt.owner
            && self.fence == attempt.fence
    }

    /// Whether `attempt` may renew this record's lease: it holds the record and has not
    /// released it (`lease_until_ms > 0`). The condition of extend: a heartbeat that
    /// reaches the store after the release (the engine gave up waiting for it) must not
    /// revive the lease.
    pub fn is_renewable_by(&self, attempt: &Attempt) -> bool {
        self.is_held_by(attempt) && self.lease_until_ms > 0
    }

    // What a write whose response was lost left behind. A refused write that finds one
    // of these states was applied by an earlier send of the same request (the owner is
    // random per attempt, so no other attempt can have produced it): the engine counts
    // it as applied.

    /// Whether this record is what a begin by `owner` writes: in progress, `owner`'s.
    pub fn shows_begin_by(&self, owner: Owner) -> bool {
        self.state == State::InProgress && self.owner == owner
    }

    /// Whether this record is what `attempt`'s complete writes: completed with the
    /// attempt's owner and fence.
    pub fn shows_completion_by(&self, attempt: &Attempt) -> bool {
        self.state == State::Completed && self.owner == attempt.owner && self.fence == attempt.fence
    }

    /// Whether this record is what `attempt`'s extend with `renewal` writes: held by the
    /// attempt, with the renewed lease.
    pub fn shows_renewal_by(&self, attempt: &Attempt, renewal: &Renewal) -> bool {
        self.is_held_by(attempt) && self.lease_until_ms == renewal.lease_until_ms
    }

    /// Whether this record is what `attempt`'s journal of `step` writes: held by the
    /// attempt, with `step` in its journal.
    pub fn shows_journal_by(&self, attempt: &Attempt, step: &StepRecord) -> bool {
        self.is_held_by(attempt) && self.steps.iter().any(|entry| entry == step)
    }

    /// The journal's entry for the step `name`, if there is one.
    pub fn step(&self, name: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|entry| entry.name == name)
    }

    /// Whether this record is what `attempt`'s release writes: held by the attempt, with
    /// the lease released (`lease_until_ms == 0`).
    pub fn shows_release_by(&self, attempt: &Attempt) -> bool {
        self.is_held_by(attempt) && self.lease_until_ms == 0
    }
}

/// Epoch seconds for an epoch-millisecond instant, rounded up: a TTL never ends early.
pub fn ceil_secs(ms: u64) -> u64 {
    ms.div_ceil(1000)
}
