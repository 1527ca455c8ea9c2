//! The protocol's rules as pure functions: what each of the four writes does to one
//! key's record, and what the engine decides from each answer.
//!
//! These are the functions that run: the in-memory store applies the transitions below,
//! the test kit's reference model compares other stores with them, the engine takes
//! every decision through the `after_*` functions and the heartbeat schedule, and the
//! repository's model checker (`idem-model`) explores them under every interleaving of
//! callers, crashes, pauses, lost and late messages and skewed clocks. A store over a
//! database maps the transitions onto its own conditional writes instead, and the
//! conformance kit checks that it agrees with them. `docs/protocol.md` states them in
//! prose.
//!
//! Like [`store`](crate::store), this module follows the engine and may change in a
//! minor release.

use std::sync::Arc;
use std::time::Duration;

use crate::codec::Encoded;
use crate::store::{
    ceil_secs, Attempt, Begin, Codec, Completion, Hold, Outcome, Owner, Record, RecordId, Renewal,
    State, StepRecord, Written,
};

// The store's side: one conditional write per transition, atomic in the store.

/// Begin on the key's current record: applied with the new fence iff there is no record
/// or it is free at `request.now_ms`; the caller then stores
/// [`begun(current, request, fence)`](begun). Refused with the current record otherwise.
pub fn begin(current: Option<&Arc<Record>>, request: &Begin) -> Written<u64> {
    match current {
        Some(record) if record.is_live(request.now_ms) => Written::Refused(Some(record.clone())),
        Some(record) => Written::Applied(record.fence + 1),
        None => Written::Applied(1),
    }
}

/// The record a begin applied with `fence` writes over `current`:
/// [`Begin::record`], keeping the journal of the record's lifetime (`current`'s steps:
/// an attempt that takes the key over after a crash, a lapsed lease or a release finds
/// the steps its predecessors finished; a completed record has none).
pub fn begun(current: Option<&Record>, request: &Begin, fence: u64) -> Record {
    Record {
        steps: current
            .map(|record| record.steps.clone())
            .unwrap_or_default(),
        ..request.record(fence)
    }
}

/// Complete: applied iff the record is held by `attempt` ([`Record::is_held_by`]), also
/// after its lease lapsed if nobody took over.
///
/// The writes below change the record in place, or a copy of it when someone else still
/// shares it ([`Arc::make_mut`]): a record handed out before is never changed under its
/// reader.
pub fn complete(
    current: Option<&mut Arc<Record>>,
    attempt: &Attempt,
    completion: &Completion,
) -> Written<()> {
    write_if(current, attempt, Record::is_held_by, |record| {
        record.state = State::Completed;
        record.outcome = Some(completion.outcome);
        record.data = completion.data.clone();
        record.codec = completion.codec.clone();
        record.expires_at_s = completion.expires_at_s;
        record.steps.clear();
    })
}

/// Journal: applied iff the record is held by `attempt` ([`Record::is_held_by`], the
/// condition of complete: a stale attempt cannot journal); `step` replaces the entry of
/// the same name, or is appended. Nothing else changes.
pub fn journal(
    current: Option<&mut Arc<Record>>,
    attempt: &Attempt,
    step: &StepRecord,
) -> Written<()> {
    write_if(current, attempt, Record::is_held_by, |record| {
        record.steps.write(step.clone())
    })
}

/// Extend: applied iff the record is held by `attempt` and not released
/// ([`Record::is_renewable_by`]).
pub fn extend(
    current: Option<&mut Arc<Record>>,
    attempt: &Attempt,
    renewal: &Renewal,
) -> Written<()> {
    write_if(current, attempt, Record::is_renewable_by, |record| {
        record.lease_until_ms = renewal.lease_until_ms;
        record.expires_at_s = renewal.expires_at_s;
    })
}

/// Release: applied iff the record is held by `attempt`; the lease ends at once
/// (`lease_until_ms = 0`) and the record stays, so the next fence is higher.
pub fn release(current: Option<&mut Arc<Record>>, attempt: &Attempt) -> Written<()> {
    write_if(current, attempt, Record::is_held_by, |record| {
        record.lease_until_ms = 0
    })
}

/// Hold, the lock-held form's take (`docs/protocol.md` §3.6), on the key's record as
/// last committed, by a transaction that holds the record's row lock: applied iff
/// [`begin`] would be (no record, or a free one), with a fence that is the record's
/// plus `drawn`, the next value of a sequence no rollback returns (`drawn` alone when
/// there is no record). A sequence's values grow, so the fence is higher than every
/// fence held on this record before, rolled-back attempts' included; an increment of
/// the record's own fence would be rolled back with its attempt and handed out again.
/// The transaction then writes [`held_record`]. Refused with the current record
/// otherwise.
pub fn hold(current: Option<&Arc<Record>>, request: &Begin, drawn: u64) -> Written<u64> {
    match begin(current, request) {
        Written::Applied(_) => Written::Applied(
            current
                .map_or(0, |record| record.fence)
                .saturating_add(drawn),
        ),
        refused => refused,
    }
}

/// The record a hold applied with `fence` writes in its transaction: [`Begin::record`],
/// released (`lease_until_ms = 0`). The open transaction's row lock is its lease; were
/// the record ever committed unfinished, it would be free at once.
pub fn held_record(request: &Begin, fence: u64) -> Record {
    Record {
        lease_until_ms: 0,
        ..request.record(fence)
    }
}

fn write_if(
    current: Option<&mut Arc<Record>>,
    attempt: &Attempt,
    condition: fn(&Record, &Attempt) -> bool,
    write: impl FnOnce(&mut Record),
) -> Written<()> {
    match current {
        Some(record) if condition(record, attempt) => {
            write(Arc::make_mut(record));
            Written::Applied(())
        }
        other => Written::Refused(other.map(|record| record.clone())),
    }
}

// The engine's side: what each answer means.

/// How often begin is tried when the store refuses it with a record that is free (it
/// lapsed or was deleted between the write and the read that answered it,
/// [`BeginAnswer::Again`]); then the call fails with a transient store error.
pub const BEGIN_TRIES: usize = 3;

/// What a begin's answer means to the attempt that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginAnswer {
    /// The attempt holds the key with this fence, its lease ending at `lease_until_ms`.
    Held {
        /// The attempt's fencing number.
        fence: u64,
        /// The end of the lease it holds.
        lease_until_ms: u64,
    },
    /// Another attempt's record is live: replay it, or report it in progress.
    Live(Arc<Record>),
    /// Refused, but the record read back free or gone: begin again (a bounded number of
    /// times).
    Again,
}

/// The meaning of `written`, the answer to `request`. A refusal whose record shows this
/// attempt's own begin ([`Record::shows_begin_by`]) was applied by an earlier send of
/// the same request whose response was lost: the attempt holds the key.
pub fn after_begin(written: Written<u64>, request: &Begin) -> BeginAnswer {
    match written {
        Written::Applied(fence) => BeginAnswer::Held {
            fence,
            lease_until_ms: request.lease_until_ms,
        },
        Written::Refused(Some(record)) if record.shows_begin_by(request.owner) => {
            BeginAnswer::Held {
                fence: record.fence,
                lease_until_ms: record.lease_until_ms,
            }
        }
        Written::Refused(Some(record)) if record.is_live(request.now_ms) => {
            BeginAnswer::Live(record)
        }
        Written::Refused(_) => BeginAnswer::Again,
    }
}

/// The meaning of `hold`, the answer to a hold of `request` (the lock-held form,
/// `docs/protocol.md` §3.6); `None` when another transaction holds the key
/// ([`Hold::Busy`]: the call is in progress elsewhere, or waits on). Taken, the attempt
/// holds the key with no lease end (`u64::MAX`): its lease is the open transaction,
/// which no clock ends. Refused, the record is read as a refused begin's
/// ([`after_begin`]); a serialization failure or deadlock ([`Hold::Conflict`]) is
/// taken again, in a fresh transaction that sees what the one it waited for committed.
pub fn after_hold(hold: Hold, request: &Begin) -> Option<BeginAnswer> {
    match hold {
        Hold::Taken(fence) => Some(BeginAnswer::Held {
            fence,
            lease_until_ms: u64::MAX,
        }),
        Hold::Refused(record) => Some(after_begin(Written::Refused(record), request)),
        Hold::Conflict => Some(BeginAnswer::Again),
        Hold::Busy => None,
    }
}

/// Whether an attempt's lease, as the engine knows it (ending at `lease_until_ms`), is
/// live at `now_ms` on the engine's clock. The body starts only on a live lease (a
/// begin that answered after its lease lapsed is released instead: another caller may
/// hold the key by then), and [`Context::lease_lost`](crate::Context::lease_lost) is
/// true once it is not.
pub fn lease_is_live(now_ms: u64, lease_until_ms: u64) -> bool {
    now_ms < lease_until_ms
}

/// What a completion's answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompleteAnswer {
    /// Recorded (by this send, or by an earlier one whose response was lost).
    Recorded,
    /// Refused: another attempt holds the key, or the record is gone.
    LeaseLost {
        /// The fence of the record as it is now, if there is one (for the log).
        current_fence: Option<u64>,
    },
}

/// The meaning of `written`, the answer to `attempt`'s complete.
pub fn after_complete(written: Written<()>, attempt: &Attempt) -> CompleteAnswer {
    match written {
        Written::Applied(()) => CompleteAnswer::Recorded,
        Written::Refused(Some(record)) if record.shows_completion_by(attempt) => {
            CompleteAnswer::Recorded
        }
        Written::Refused(record) => CompleteAnswer::LeaseLost {
            current_fence: record.map(|r| r.fence),
        },
    }
}

/// What a heartbeat's answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtendAnswer {
    /// The lease now ends at this instant.
    Renewed(u64),
    /// Refused: the lease is lost; heartbeats stop and the body is told.
    Lost {
        /// The fence of the record as it is now, if there is one (for the log).
        current_fence: Option<u64>,
    },
}

/// The meaning of `written`, the answer to `attempt`'s extend with `renewal`.
pub fn after_extend(written: Written<()>, attempt: &Attempt, renewal: &Renewal) -> ExtendAnswer {
    match written {
        Written::Applied(()) => ExtendAnswer::Renewed(renewal.lease_until_ms),
        Written::Refused(Some(record)) if record.shows_renewal_by(attempt, renewal) => {
            ExtendAnswer::Renewed(renewal.lease_until_ms)
        }
        Written::Refused(record) => ExtendAnswer::Lost {
            current_fence: record.map(|r| r.fence),
        },
    }
}

/// What a release's answer means (the engine only reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseAnswer {
    /// Released by this send.
    Released,
    /// Released by an earlier send whose response was lost.
    AlreadyReleased,
    /// Refused: the lease was already lost.
    Lost,
}

/// The meaning of `written`, the answer to `attempt`'s release.
pub fn after_release(written: Written<()>, attempt: &Attempt) -> ReleaseAnswer {
    match written {
        Written::Applied(()) => ReleaseAnswer::Released,
        Written::Refused(Some(record)) if record.shows_release_by(attempt) => {
            ReleaseAnswer::AlreadyReleased
        }
        Written::Refused(_) => ReleaseAnswer::Lost,
    }
}

/// What a journal write's answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalAnswer {
    /// Journaled (by this send, or by an earlier one whose response was lost).
    Journaled,
    /// Refused: another attempt holds the key, or the record is gone. The step's effect
    /// may have happened; its result is not journaled, and the body must not go on.
    LeaseLost {
        /// The fence of the record as it is now, if there is one (for the log).
        current_fence: Option<u64>,
    },
}

/// The meaning of `written`, the answer to `attempt`'s journal of `step`.
pub fn after_journal(written: Written<()>, attempt: &Attempt, step: &StepRecord) -> JournalAnswer {
    match written {
        Written::Applied(()) => JournalAnswer::Journaled,
        Written::Refused(Some(record)) if record.shows_journal_by(attempt, step) => {
            JournalAnswer::Journaled
        }
        Written::Refused(record) => JournalAnswer::LeaseLost {
            current_fence: record.map(|r| r.fence),
        },
    }
}

/// The journal `attempt` works from, read once before its first step: the record's
/// steps while the attempt holds it; `None` when it does not (another attempt took
/// over, or the record is gone): the lease is lost and no step may run. An attempt with
/// fence 1 took a key that had no record, so it has no journal to read (the engine
/// skips the read).
pub fn journal_of<'r>(read: Option<&'r Record>, attempt: &Attempt) -> Option<&'r [StepRecord]> {
    match read {
        Some(record) if record.is_held_by(attempt) => Some(&record.steps),
        _ => None,
    }
}

/// What an attempt does with one step of its body, given the step's journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepPlan {
    /// An earlier attempt of this record finished the step: its journaled result is
    /// the step's result, and the step does not run.
    Replay,
    /// Run the step, then journal its result; an at-most-once step journals that it
    /// started first (`mark_started`).
    Run {
        /// Whether to journal [`StepRecord::started`] before the step runs.
        mark_started: bool,
    },
    /// An at-most-once step started under an earlier attempt and its result was never
    /// journaled: it may or may not have had its effect, so it is not run again
    /// ([`Error::StepUncertain`](crate::Error::StepUncertain)) unless the caller
    /// reconciles it.
    Uncertain,
}

/// The plan for a step whose journal entry is `entry`, run at most once or not.
pub fn step_plan(entry: Option<&StepRecord>, at_most_once: bool) -> StepPlan {
    match entry {
        Some(entry) if entry.is_finished() => StepPlan::Replay,
        Some(_) if at_most_once => StepPlan::Uncertain,
        _ => StepPlan::Run {
            mark_started: at_most_once,
        },
    }
}

/// What a commit whose answer was lost (an error, or none within the store timeout) came
/// to, as the record tells: the transactional form's settling (`docs/protocol.md` §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitFate {
    /// The record shows the attempt's completion: the commit went through, and the
    /// record replays it until `expires_at_s`.
    Committed {
        /// The completed record's expiry, in epoch seconds.
        expires_at_s: u64,
    },
    /// The key was released (by this send or an earlier one): the commit did not go
    /// through, and nothing of the body persisted.
    RolledBack,
    /// The record is gone or another attempt's: the completion may have been committed
    /// and have expired since, so nothing can be told.
    Unknown,
}

/// The settling read, first: the commit went through if the record shows the attempt's
/// completion. `None` when it does not: a commit still in flight is not visible to the
/// read, so the key is then released and the release's answer settles it
/// ([`settle_by_release`]). A read that failed settles nothing either (`None`).
pub fn settle_by_read(read: Option<&Record>, attempt: &Attempt) -> Option<CommitFate> {
    match read {
        Some(record) if record.shows_completion_by(attempt) => Some(CommitFate::Committed {
            expires_at_s: record.expires_at_s,
        }),
        _ => None,
    }
}

/// The settling release's answer, when the read did not settle the commit. The release
/// is conditional on the record in progress, so it meets a commit that landed after the
/// read, or waits for it behind the completion's row lock, and is refused with the
/// completed record: [`Committed`](CommitFate::Committed). Applied, it proves nothing of
/// the body persisted. Refused by a record that is gone or another attempt's:
/// [`Unknown`](CommitFate::Unknown).
pub fn settle_by_release(written: Written<()>, attempt: &Attempt) -> CommitFate {
    match written {
        Written::Refused(Some(record)) if record.shows_completion_by(attempt) => {
            CommitFate::Committed {
                expires_at_s: record.expires_at_s,
            }
        }
        written => match after_release(written, attempt) {
            ReleaseAnswer::Released | ReleaseAnswer::AlreadyReleased => CommitFate::RolledBack,
            ReleaseAnswer::Lost => CommitFate::Unknown,
        },
    }
}

/// The shortest TTL a call may have: records expire on whole seconds.
pub const MIN_TTL: Duration = Duration::from_secs(1);

/// The shortest lease a call may have: heartbeats renew it every `lease / 3`.
pub const MIN_LEASE: Duration = Duration::from_millis(30);

/// Why `ttl` cannot be a call's TTL ([`MIN_TTL`]), or `None`. A `const fn`, so that
/// `#[idempotent]` refuses a literal at compile time with the engine's own rule.
pub const fn ttl_refusal(ttl: Duration) -> Option<&'static str> {
    if ttl.as_nanos() < MIN_TTL.as_nanos() {
        Some("ttl must be at least 1s (records expire on whole seconds)")
    } else {
        None
    }
}

/// Why `lease` cannot be a call's lease ([`MIN_LEASE`]), or `None`; a `const fn`, as
/// [`ttl_refusal`] is.
pub const fn lease_refusal(lease: Duration) -> Option<&'static str> {
    if lease.as_nanos() < MIN_LEASE.as_nanos() {
        Some("lease must be at least 30ms (heartbeats renew it every lease / 3)")
    } else {
        None
    }
}

/// Checks the times every call runs with, whether they come from the engine or the
/// call: [`ttl_refusal`], [`lease_refusal`], and the lease against the store timeout.
/// The lease must outlast its first heartbeat's round trip: the beat is due at
/// `lease / 3` and may take up to `store_timeout` to answer, so `lease / 3 +
/// store_timeout` must stay below `lease`.
pub fn check_times(ttl: Duration, lease: Duration, store_timeout: Duration) -> Result<(), String> {
    if let Some(refusal) = ttl_refusal(ttl) {
        return Err(format!("{refusal}, got {ttl:?}"));
    }
    if let Some(refusal) = lease_refusal(lease) {
        return Err(format!("{refusal}, got {lease:?}"));
    }
    if lease / 3 + store_timeout >= lease {
        return Err(format!(
            "a {lease:?} lease is too short for the {store_timeout:?} store timeout: the first \
             heartbeat is sent at lease / 3 and may take the whole timeout to answer, so the lease \
             must be longer than 1.5 x the store timeout ({:?}); lengthen the lease or shorten \
             EngineBuilder::store_timeout",
            store_timeout * 3 / 2
        ));
    }
    Ok(())
}

/// The times of one call: its lease and its TTL. Every request the engine sends, and
/// its heartbeat schedule, are computed from these and the engine's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Terms {
    /// How long a lease lasts, in milliseconds.
    pub lease_ms: u64,
    /// How long a record is kept past its last lease or its completion, in milliseconds.
    pub ttl_ms: u64,
}

impl Terms {
    /// The begin `owner` sends at `now_ms`: a lease until `now + lease`, the record kept
    /// until `lease_until + ttl` (rounded up to seconds).
    pub fn begin(
        &self,
        id: &RecordId,
        owner: Owner,
        now_ms: u64,
        fingerprint: Option<String>,
    ) -> Begin {
        let mut request = Begin {
            id: id.clone(),
            owner,
            now_ms,
            lease_until_ms: 0,
            expires_at_s: 0,
            fingerprint,
        };
        self.stamp(&mut request, now_ms);
        request
    }

    /// Sets `request`'s times for a begin sent at `now_ms`, as [`begin`](Terms::begin)
    /// does: for a caller that keeps one request and sends it again.
    pub fn stamp(&self, request: &mut Begin, now_ms: u64) {
        let lease_until_ms = now_ms.saturating_add(self.lease_ms);
        request.now_ms = now_ms;
        request.lease_until_ms = lease_until_ms;
        request.expires_at_s = self.expires_at_s(lease_until_ms);
    }

    /// The completion sent at `now_ms`: the TTL counts from completion. `data` is the
    /// encoded value or error (`None` for [`Outcome::NotStored`]).
    pub fn completion(&self, now_ms: u64, outcome: Outcome, data: Option<Encoded>) -> Completion {
        let (data, codec) = match data {
            Some(Encoded { codec, data }) => (Some(data), codec),
            None => (None, Codec::Json),
        };
        Completion {
            now_ms,
            expires_at_s: self.expires_at_s(now_ms),
            outcome,
            data,
            codec,
        }
    }

    /// The renewal a heartbeat sent at `now_ms` asks for: a lease until `now + lease`.
    pub fn renewal(&self, now_ms: u64) -> Renewal {
        let lease_until_ms = now_ms.saturating_add(self.lease_ms);
        Renewal {
            now_ms,
            lease_until_ms,
            expires_at_s: self.expires_at_s(lease_until_ms),
        }
    }

    /// `from_ms + ttl` in epoch seconds, rounded up: a TTL never ends early.
    pub fn expires_at_s(&self, from_ms: u64) -> u64 {
        ceil_secs(from_ms.saturating_add(self.ttl_ms))
    }

    /// The time between two heartbeats: a third of the lease.
    pub fn beat_every_ms(&self) -> u64 {
        self.lease_ms / 3
    }

    /// When the first heartbeat is due for a lease ending at `lease_until_ms`: a third
    /// into that lease, whose start is the clock reading taken before begin was sent,
    /// not when the body started. A slow begin therefore cannot push the first renewal
    /// past the margin.
    pub fn first_beat_ms(&self, lease_until_ms: u64) -> u64 {
        lease_until_ms
            .saturating_sub(self.lease_ms)
            .saturating_add(self.beat_every_ms())
    }

    /// When the heartbeat after one sent at `sent_ms` is due: a third into the lease
    /// that beat asked for (which starts at `sent_ms`).
    pub fn next_beat_ms(&self, sent_ms: u64) -> u64 {
        sent_ms.saturating_add(self.beat_every_ms())
    }
}
