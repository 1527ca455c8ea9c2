//! The model's state: the [`World`] (time, the store's record, the callers, the
//! messages in flight, the faults left, what an observer saw) and each caller's
//! [`Phase`].

use std::sync::Arc;

use idem_core::protocol;
use idem_core::store::{Begin, Owner, Record, RecordId, Renewal, StepRecord};
use idem_core::Namespace;

use crate::Message;

/// Milliseconds per tick of the model's clocks. Whole seconds, so that a record's
/// expiry (epoch seconds, rounded up) falls exactly on a tick.
pub const TICK_MS: u64 = 1000;

/// The owner of caller `index`'s attempt `generation`: one number per attempt.
pub(crate) fn owner_of(index: usize, generation: u32) -> Owner {
    Owner::from_u128((index as u128) << 32 | u128::from(generation))
}

/// The one key every caller calls with: namespace `model`, a fixed digest.
pub(crate) fn id() -> RecordId {
    RecordId::new(Namespace::fixed("model"), [0; 32])
}

/// The world: real time, the store's record, the callers, the messages in flight, the
/// faults left to inject, and what an observer saw (for the properties).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct World {
    /// Real time, in ticks.
    pub now: u64,
    /// The store's record of the key, as committed.
    pub record: Option<Arc<Record>>,
    /// A completion written in a body's transaction and not yet committed or rolled
    /// back: the record as that transaction sees it, and whose transaction it is
    /// (caller, generation). It holds the record's row lock: every write to the record
    /// waits until it ends; a read sees the committed record. In the lock-held form, the
    /// open transaction that took the key with its hold, from the hold on: the row lock
    /// is its lease.
    pub pending: Option<(usize, u32, Arc<Record>)>,
    /// The lock-held form's fence sequence: the last value drawn. No rollback returns
    /// it.
    pub sequence: u64,
    /// The callers.
    pub callers: Vec<Caller>,
    /// Requests and answers in flight.
    pub net: Vec<Message>,
    /// Faults left to inject.
    pub faults: Faults,
    /// What an observer saw.
    pub seen: Seen,
}

/// Faults left to inject.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Faults {
    pub(crate) crashes: u8,
    pub(crate) pauses: u8,
    pub(crate) losses: u8,
    pub(crate) resends: u8,
    pub(crate) delays: u8,
    pub(crate) kills: u8,
}

/// One caller: an engine in one process, handling one delivery of the event.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Caller {
    /// How far its clock runs ahead of real time, in ticks.
    pub skew: u64,
    /// Its attempt number: a crash or a redelivery starts a new attempt (a new owner).
    pub generation: u32,
    /// Requests sent by this attempt, to tell their answers apart.
    pub sent: u8,
    /// Redeliveries left.
    pub redeliveries: u8,
    /// Paused (a zombie): it takes no step until it resumes.
    pub paused: bool,
    /// One of its requests took longer than the healthy latency, or it paused: the
    /// one-holder property does not cover it.
    pub faulted: bool,
    /// Whether this attempt's body started.
    pub ran: bool,
    /// Whether this attempt was told its lease was lost (a refused heartbeat or
    /// completion).
    pub told_lost: bool,
    /// Where the attempt stands.
    pub phase: Phase,
}

/// Where an attempt stands.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The event arrived; begin not sent yet.
    Idle,
    /// Begin sent (try `tries`, 0-based), waiting for the answer to request `seq`.
    Beginning {
        /// The request sent.
        request: Begin,
        /// Which try.
        tries: usize,
        /// Which request.
        seq: u8,
        /// When, in real ticks.
        sent_at: u64,
    },
    /// The body runs under the lease.
    Running {
        /// The attempt's fence.
        fence: u64,
        /// The end of the lease as the engine knows it (its `Context`), caller's clock.
        lease_until_ms: u64,
        /// When the next heartbeat is due, caller's clock.
        next_beat_ms: u64,
        /// A heartbeat was refused: the lease is lost.
        lost: bool,
        /// The heartbeat in flight: its renewal, request and send time.
        extend: Option<(Renewal, u8, u64)>,
        /// The body ended (`Some(ok)`) while a heartbeat was in flight.
        ended: Option<bool>,
        /// Its steps ([`Bounds::steps`](crate::Bounds::steps)).
        steps: Steps,
    },
    /// Complete sent.
    Completing {
        /// The attempt's fence.
        fence: u64,
        /// Which request.
        seq: u8,
        /// When, in real ticks.
        sent_at: u64,
    },
    /// In a transaction: the completion is written, the commit sent.
    Committing {
        /// The attempt's fence.
        fence: u64,
        /// Which request.
        seq: u8,
        /// When, in real ticks.
        sent_at: u64,
    },
    /// In a transaction: the commit's answer was lost; the record is read (`release`
    /// false), then the key released (`release` true), to learn whether it committed.
    Settling {
        /// The attempt's fence.
        fence: u64,
        /// Whether the release was sent (after the read).
        release: bool,
        /// Which request.
        seq: u8,
        /// When, in real ticks.
        sent_at: u64,
    },
    /// Release sent, after a failed body or a begin that answered too late.
    Releasing {
        /// The attempt's fence.
        fence: u64,
        /// Which request.
        seq: u8,
        /// When, in real ticks.
        sent_at: u64,
    },
    /// The call returned.
    Done(End),
}

/// A body's steps as its attempt runs them, in order (`Bounds::steps`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Steps {
    /// The steps this attempt has finished (run and journaled, or replayed).
    pub done: u8,
    /// The record's journal as the attempt knows it: `None` until read (an attempt
    /// with fence 1 has none to read), then with the entries it journaled since.
    pub known: Option<Vec<StepRecord>>,
    /// Where the next step stands.
    pub stage: Stage,
}

/// Where an attempt's next step stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Not started.
    #[default]
    Ready,
    /// The journal's read sent (before the attempt's first step), request `seq`.
    Reading {
        /// Which request.
        seq: u8,
        /// When, in real ticks.
        sent_at: u64,
    },
    /// A plain step: its effect happened, its journal write is not sent yet.
    Ran,
    /// The journal write sent (for a database step, the step's transaction with its
    /// journal entry and commit), request `seq`.
    Journaling {
        /// Which request.
        seq: u8,
        /// When, in real ticks.
        sent_at: u64,
    },
}

impl Steps {
    /// The request the step waits for, and when it was sent.
    pub(crate) fn awaiting(&self) -> Option<(u8, u64)> {
        match self.stage {
            Stage::Reading { seq, sent_at } | Stage::Journaling { seq, sent_at } => {
                Some((seq, sent_at))
            }
            _ => None,
        }
    }
}

/// The name of step `index` in the model's bodies.
pub(crate) fn step_name(index: u8) -> String {
    format!("s{index}")
}

/// The index of the step named `name`.
pub(crate) fn step_index(name: &str) -> usize {
    name[1..].parse().expect("a model step's name")
}

/// What a call returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum End {
    /// Ran and recorded (in a transaction: its effect committed with the completion).
    Ran,
    /// Replayed a completed record.
    Replayed,
    /// Another attempt holds the key.
    InProgress,
    /// A store error (or a begin that answered after its lease lapsed).
    StoreError,
    /// The completion was refused.
    LeaseLost,
    /// The completion's answer never came: executed, not recorded.
    NotRecorded,
    /// The body failed and the key was released (in a transaction, and after a
    /// completion or commit that failed: the call says nothing of the body persisted).
    Failed,
}

/// What an observer saw, for the properties.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Seen {
    /// The attempts (caller, generation) that started their body since the current
    /// record's lifetime began.
    pub runs: Vec<(usize, u32)>,
    /// The owner of the last begin the store applied.
    pub last_begin_owner: Option<Owner>,
    /// The completion the store holds: owner, fence and expiry (seconds).
    pub completed: Option<(Owner, u64, u64)>,
    /// A release was applied and no begin since.
    pub released: bool,
    /// Owners of attempts that crashed, with the latest lease they asked for.
    pub dead: Vec<(Owner, u64)>,
    /// A completed record was overwritten before it expired.
    pub overwritten_early: bool,
    /// A completion by an attempt other than the last one begun was applied.
    pub stale_completion: bool,
    /// A begin was refused after a release, before any begin.
    pub refused_after_release: bool,
    /// A begin was refused by a crashed attempt's lease that the attempt had not asked
    /// for before it crashed.
    pub refused_by_dead_lease: bool,
    /// A crashed holder's key was taken over.
    pub took_over_after_crash: bool,
    /// A refused write was counted as applied because the record showed it.
    pub reconciled: bool,
    /// In a transaction: effects (bodies' writes) committed in the current record's
    /// lifetime.
    pub effects: u8,
    /// In a transaction: the attempts (caller, generation) whose effect committed.
    pub committed: Vec<(usize, u32)>,
    /// In a transaction: the attempts told their call ran (`Ok`).
    pub told_ran: Vec<(usize, u32)>,
    /// In a transaction: the attempts told nothing of their body persisted.
    pub told_nothing_persisted: Vec<(usize, u32)>,
    /// In a transaction: a lost commit answer was settled as committed by a release
    /// refused with the completion (the commit landed after the read).
    pub settled_by_release: bool,
    /// Lock-held: the highest fence a hold handed out since the record was last
    /// deleted (fences restart after a deletion, `docs/protocol.md` §1).
    pub last_fence: u64,
    /// Lock-held: a hold took the key with a fence not above one handed out before.
    pub fence_not_above: bool,
    /// Lock-held: owners of crashed attempts whose session the database ended (their
    /// transaction rolled back, its row lock released).
    pub ended: Vec<Owner>,
    /// Lock-held: a hold was answered busy by the transaction of an attempt whose
    /// session had ended, or refused by a live lease of a crashed attempt.
    pub held_past_session: bool,
    /// Lock-held: a hold was answered busy (another transaction held the key).
    pub busy: bool,
    /// Lock-held: a hold took the key after a crashed holder's session ended.
    pub took_over_after_session_end: bool,
    /// Lock-held: the attempt whose session the server ended (a paused holder's).
    pub killed: Option<(usize, u32)>,
    /// Lock-held: a statement of a session the server ended failed (the holder woke
    /// up).
    pub killed_statement_failed: bool,
    /// Steps: per step, its effects in the current record's lifetime (a plain step's
    /// runs, a database step's commits).
    pub step_effects: Vec<u8>,
    /// Steps: the steps (bits) with a finished entry written in the current record's
    /// lifetime.
    pub journaled: u8,
    /// Steps: a step ran (or a database step committed) after its entry was journaled
    /// in the same record lifetime, by an attempt holding the record or with no fault.
    pub rerun_journaled: bool,
    /// Steps: a journal write was applied for an attempt that did not hold the record
    /// (not the last one begun, or not its owner and fence).
    pub stale_journal: bool,
    /// Steps: a stale attempt with a fault ran a plain step its successor had
    /// journaled (the effect is outside the store: only its journal write is fenced).
    pub stale_step_ran: bool,
    /// Steps: a step ran again in a record lifetime (its journal write never landed).
    pub step_repeated: bool,
    /// Steps: an attempt replayed a step an earlier attempt journaled.
    pub step_replayed: bool,
    /// Steps: a refused journal write of a stale attempt.
    pub stale_journal_refused: bool,
}

impl Caller {
    /// The owner of the caller's current attempt: its index and generation, as a
    /// number (`0x{index}_{generation:08x}`), distinct per attempt.
    pub(crate) fn owner(&self, index: usize) -> Owner {
        owner_of(index, self.generation)
    }

    pub(crate) fn now_ms(&self, now: u64) -> u64 {
        (now + self.skew) * TICK_MS
    }

    /// The request this attempt waits for, and when it was sent.
    pub(crate) fn awaiting(&self) -> Option<(u8, u64)> {
        match &self.phase {
            Phase::Beginning { seq, sent_at, .. }
            | Phase::Completing { seq, sent_at, .. }
            | Phase::Committing { seq, sent_at, .. }
            | Phase::Settling { seq, sent_at, .. }
            | Phase::Releasing { seq, sent_at, .. } => Some((*seq, *sent_at)),
            Phase::Running {
                extend: Some((_, seq, sent_at)),
                ..
            } => Some((*seq, *sent_at)),
            _ => None,
        }
    }

    /// The request the body's current step waits for (beside a heartbeat, which runs
    /// on its own), and when it was sent.
    pub(crate) fn step_awaiting(&self) -> Option<(u8, u64)> {
        match &self.phase {
            Phase::Running { steps, .. } => steps.awaiting(),
            _ => None,
        }
    }

    /// Whether the engine would do something now that time must wait for: a heartbeat
    /// due, or a request it must give up on.
    pub(crate) fn is_due(&self, now: u64, timeout: u64) -> bool {
        if self.paused {
            return false;
        }
        if let Some((_, sent_at)) = self.awaiting() {
            if now >= sent_at + timeout {
                return true;
            }
        }
        if let Some((_, sent_at)) = self.step_awaiting() {
            if now >= sent_at + timeout {
                return true;
            }
        }
        matches!(&self.phase, Phase::Running { lost: false, extend: None, ended: None, next_beat_ms, .. }
            if self.now_ms(now) >= *next_beat_ms)
    }

    /// Whether `generation` is this caller's attempt, its body ran, and nothing excuses
    /// a second run of the key: it did not crash or get redelivered (a new generation),
    /// its body did not fail, no request of it was lost or late, and it was not told its
    /// lease was lost.
    pub fn is_clean_run(&self, generation: u32) -> bool {
        self.generation == generation
            && self.ran
            && !self.faulted
            && !self.told_lost
            && matches!(
                self.phase,
                Phase::Running {
                    lost: false,
                    ended: None | Some(true),
                    ..
                } | Phase::Completing { .. }
                    | Phase::Committing { .. }
                    | Phase::Done(End::Ran)
            )
    }

    /// Whether the body runs and the engine believes its lease live: not told it was
    /// lost, and its clock before the lease's end (`Context::lease_lost` is false).
    pub fn believes_it_holds(&self, now: u64) -> bool {
        matches!(&self.phase, Phase::Running { lost: false, ended: None, lease_until_ms, .. }
            if protocol::lease_is_live(self.now_ms(now), *lease_until_ms))
    }
}
