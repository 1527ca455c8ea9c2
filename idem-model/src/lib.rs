//! The idem protocol, model-checked.
//!
//! A [`stateright`] model of one key, a store and a few callers, explored exhaustively
//! within [`Bounds`]. Every caller is an engine: it sends begin, runs a body under the
//! lease it got, sends heartbeats, and completes or releases. Every request goes to the
//! store as a message that may be applied late, applied twice (a client's resend after
//! a lost response), or lost, and every answer may come late, be lost, or arrive after
//! the caller gave up (its store timeout). Callers crash (the event is redelivered to a
//! new process), pause (a zombie that wakes up later) and have clocks that run ahead
//! of real time by up to `max_skew_ticks`.
//!
//! The model decides with the code that runs: the store applies
//! [`idem_core::protocol`]'s transitions over the real [`Record`], callers compute their
//! requests and heartbeat schedule with [`Terms`], and read every answer with the
//! engine's own `after_*` functions and [`protocol::lease_is_live`]. What the model states
//! itself is the engine's sequencing (one request in flight per attempt, a heartbeat
//! awaited before complete or release, giving up after the store timeout), which
//! `idem-core/src/call/` implements with futures, and the faulty [`Variant`]s, kept to
//! show that the checker finds the defects they reintroduce.
//!
//! With [`Bounds::transactional`], every body runs in a transaction of the store's
//! database (`Call::run_in_transaction`): the completion is written under the record's
//! row lock and committed with the body's effect, and a lost commit answer is settled
//! by the record as the engine does (read, then release).
//!
//! `docs/protocol.md` (§8) lists the properties, the bounds CI checks and what the model
//! leaves out.

use std::fmt;

use idem_core::protocol::{
    self, BeginAnswer, CompleteAnswer, ExtendAnswer, ReleaseAnswer, Terms, BEGIN_TRIES,
};
use idem_core::store::{Attempt, Begin, Completion, Outcome, Record, Renewal, State, Written};
use stateright::{Model, Property};

/// Milliseconds per tick of the model's clocks. Whole seconds, so that a record's
/// expiry (epoch seconds, rounded up) falls exactly on a tick.
pub const TICK_MS: u64 = 1000;

/// The one key every caller calls with.
const ID: &str = "model#key";

/// Switches that put back a defect found by review, to show the checker finds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Variant {
    /// Schedule the first heartbeat a third of a lease after the body *started*, not
    /// after the lease started (the defect fixed in session 2: a slow begin pushed the
    /// first renewal past the margin).
    pub first_beat_from_body_start: bool,
    /// Let extend renew a released lease (held by the attempt, without the
    /// `lease_until_ms > 0` of [`Record::is_renewable_by`]): a heartbeat that lands
    /// after the release revives the lease.
    pub extend_after_release: bool,
    /// Settle a lost commit answer by the read alone (the defect fixed in session 6):
    /// a read that does not show the completion is taken to mean nothing persisted,
    /// whatever the release then finds, although a commit still in flight lands after
    /// the read, and the release, waiting behind its row lock, is refused with it.
    pub settle_by_read_only: bool,
}

impl Variant {
    /// The protocol as the code implements it.
    pub const FIXED: Variant = Variant {
        first_beat_from_body_start: false,
        extend_after_release: false,
        settle_by_read_only: false,
    };

    /// When the first heartbeat is due for a lease ending at `lease_until_ms` and a body
    /// that started at `body_start_ms`: [`Terms::first_beat_ms`], or a third of a lease
    /// after the body's start in the faulty variant.
    pub fn first_beat_ms(&self, terms: &Terms, lease_until_ms: u64, body_start_ms: u64) -> u64 {
        if self.first_beat_from_body_start {
            body_start_ms + terms.beat_every_ms()
        } else {
            terms.first_beat_ms(lease_until_ms)
        }
    }

    /// Extend as the store applies it: [`protocol::extend`], or, in the faulty variant,
    /// on any record held by the attempt, released or not.
    pub fn extend(
        &self,
        record: Option<&mut Record>,
        attempt: &Attempt,
        renewal: &Renewal,
    ) -> Written<()> {
        if !self.extend_after_release {
            return protocol::extend(record, attempt, renewal);
        }
        match record {
            Some(record) if record.is_held_by(attempt) => {
                record.lease_until_ms = renewal.lease_until_ms;
                record.expires_at_s = renewal.expires_at_s;
                Written::Applied(())
            }
            other => Written::Refused(other.cloned()),
        }
    }
}

/// How far the checker explores: the sizes of the world and the faults it may inject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Callers, each one delivery of the same event.
    pub callers: usize,
    /// The lease, in ticks.
    pub lease_ticks: u64,
    /// The TTL, in ticks.
    pub ttl_ticks: u64,
    /// The longest round trip of a healthy request (sent to answered), in ticks. A
    /// caller whose request takes longer is *faulted*.
    pub latency_ticks: u64,
    /// The engine's store timeout, in ticks: the caller gives up on a request then.
    pub timeout_ticks: u64,
    /// How far a caller's clock may run ahead of real time (the first caller's never
    /// does), in ticks.
    pub max_skew_ticks: u64,
    /// Real time stops here, in ticks.
    pub horizon_ticks: u64,
    /// Crashes in all (each one redelivers the event to a new process).
    pub crashes: u8,
    /// Pauses in all (a paused caller is a zombie until it resumes).
    pub pauses: u8,
    /// Messages lost in all.
    pub losses: u8,
    /// Answers that arrive after other steps in all (every other answer is read as soon
    /// as the store applied its request; requests themselves may wait any time).
    pub delays: u8,
    /// Requests applied twice in all (a resend after the first answer was lost).
    pub resends: u8,
    /// Redeliveries per caller after a call that failed (in progress, store error,
    /// lease lost, body error).
    pub redeliveries: u8,
    /// Run every body in a transaction of the store's database (`run_in_transaction`):
    /// its effect and the completion commit together, the completed row is locked
    /// until the commit, and a lost commit answer is settled by the record.
    pub transactional: bool,
}

impl Bounds {
    /// Two callers over 8 ticks, no fault injected (messages still wait, callers still
    /// start and end their bodies at any tick): the base of every [`suite`] scenario.
    pub fn base() -> Self {
        Bounds {
            callers: 2,
            lease_ticks: 6,
            ttl_ticks: 3,
            latency_ticks: 2,
            timeout_ticks: 3,
            max_skew_ticks: 1,
            horizon_ticks: 8,
            crashes: 0,
            pauses: 0,
            losses: 0,
            delays: 0,
            resends: 0,
            redeliveries: 0,
            transactional: false,
        }
    }

    /// These bounds with `changes` applied: `name=value` pairs separated by commas, the
    /// names of the fields (`callers=3,horizon_ticks=12`).
    pub fn with(mut self, changes: &str) -> Result<Self, String> {
        for change in changes.split(',').filter(|c| !c.is_empty()) {
            let (name, value) = change
                .split_once('=')
                .ok_or_else(|| format!("`{change}` is not name=value"))?;
            let number: u64 = value
                .parse()
                .map_err(|_| format!("`{value}` is not a number"))?;
            let small = || u8::try_from(number).map_err(|_| format!("{name} is at most 255"));
            match name {
                "callers" => self.callers = number as usize,
                "lease_ticks" => self.lease_ticks = number,
                "ttl_ticks" => self.ttl_ticks = number,
                "latency_ticks" => self.latency_ticks = number,
                "timeout_ticks" => self.timeout_ticks = number,
                "max_skew_ticks" => self.max_skew_ticks = number,
                "horizon_ticks" => self.horizon_ticks = number,
                "crashes" => self.crashes = small()?,
                "pauses" => self.pauses = small()?,
                "losses" => self.losses = small()?,
                "delays" => self.delays = small()?,
                "resends" => self.resends = small()?,
                "redeliveries" => self.redeliveries = small()?,
                "transactional" => match number {
                    0 | 1 => self.transactional = number == 1,
                    _ => return Err("transactional is 0 or 1".to_owned()),
                },
                other => return Err(format!("unknown bound `{other}`")),
            }
        }
        Ok(self)
    }

    /// The margin of `docs/protocol.md` §1.1, in ticks: `lease - lease / 3 - one round
    /// trip`. Clocks must differ by less than this.
    pub fn margin_ticks(&self) -> u64 {
        self.lease_ticks - self.lease_ticks / 3 - self.latency_ticks
    }

    fn terms(&self) -> Terms {
        Terms {
            lease_ms: self.lease_ticks * TICK_MS,
            ttl_ms: self.ttl_ticks * TICK_MS,
        }
    }
}

/// One bounded exploration.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// What it injects.
    pub name: &'static str,
    /// Its bounds.
    pub bounds: Bounds,
}

/// The scenarios CI explores, one kind of fault each (faults multiply the states, so
/// each kind gets its own exploration); with `deep`, the same with three callers and
/// two more ticks each.
pub fn suite(deep: bool) -> Vec<Scenario> {
    let base = Bounds::base();
    let scenarios = [
        ("no fault, one tick more", "horizon_ticks=9"),
        ("no fault, three callers", "callers=3,horizon_ticks=7"),
        ("a crash", "crashes=1"),
        ("a pause", "pauses=1"),
        (
            "a lost message, the event redelivered",
            "losses=1,redeliveries=1",
        ),
        ("a late answer and a resent request", "delays=1,resends=1"),
        ("in a transaction, no fault", "transactional=1"),
        // A tick less: a crash in a transaction multiplies the states by four.
        (
            "in a transaction, a crash",
            "transactional=1,crashes=1,horizon_ticks=7",
        ),
        (
            "in a transaction, a lost message",
            "transactional=1,losses=1",
        ),
        (
            "in a transaction, a late answer",
            "transactional=1,delays=1",
        ),
    ];
    scenarios
        .into_iter()
        .map(|(name, changes)| {
            let mut bounds = base.clone().with(changes).expect("valid bounds");
            if deep {
                bounds.callers = 3;
                bounds.horizon_ticks += 2;
            }
            Scenario { name, bounds }
        })
        .collect()
}

/// The model: bounds and a variant.
#[derive(Clone, Debug)]
pub struct Protocol {
    /// How far to explore.
    pub bounds: Bounds,
    /// Which rules (the code's, or a faulty variant).
    pub variant: Variant,
}

/// The world: real time, the store's record, the callers, the messages in flight, the
/// faults left to inject, and what an observer saw (for the properties).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct World {
    /// Real time, in ticks.
    pub now: u64,
    /// The store's record of the key, as committed.
    pub record: Option<Record>,
    /// A completion written in a body's transaction and not yet committed or rolled
    /// back: the record as that transaction sees it, and whose transaction it is
    /// (caller, generation). It holds the record's row lock: every write to the record
    /// waits until it ends; a read sees the committed record.
    pub pending: Option<(usize, u32, Record)>,
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
    crashes: u8,
    pauses: u8,
    losses: u8,
    resends: u8,
    delays: u8,
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

/// A request or an answer in flight.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Message {
    /// Which caller sent it (or is answered).
    pub caller: usize,
    /// Which attempt of that caller.
    pub generation: u32,
    /// Which request of that attempt.
    pub seq: u8,
    /// When the request was sent, in real ticks.
    pub sent_at: u64,
    /// What it carries.
    pub body: Payload,
}

/// What a message carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Payload {
    /// A request to the store; `resent` once it was applied and sent again.
    Request(Op, bool),
    /// The store's answer.
    Answer(Answer),
}

/// A request to the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Begin.
    Begin(Begin),
    /// Complete.
    Complete(Attempt, Completion),
    /// Extend.
    Extend(Attempt, Renewal),
    /// Release.
    Release(Attempt),
    /// In the body's transaction: complete (on the record as committed, under its row
    /// lock).
    CompleteInTransaction(Attempt, Completion),
    /// Commit the body's transaction.
    Commit(Attempt),
    /// Read the record as committed.
    Read,
}

/// The store's answer to a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Answer {
    /// To begin.
    Begin(Written<u64>),
    /// To complete, extend or release.
    Write(Written<()>),
    /// To a commit: whether it committed.
    Commit(bool),
    /// To a read.
    Read(Option<Record>),
}

/// What an observer saw, for the properties.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Seen {
    /// The attempts (caller, generation) that started their body since the current
    /// record's lifetime began.
    pub runs: Vec<(usize, u32)>,
    /// The owner of the last begin the store applied.
    pub last_begin_owner: Option<String>,
    /// The completion the store holds: owner, fence and expiry (seconds).
    pub completed: Option<(String, u64, u64)>,
    /// A release was applied and no begin since.
    pub released: bool,
    /// Owners of attempts that crashed, with the latest lease they asked for.
    pub dead: Vec<(String, u64)>,
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
}

/// One step of the world.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Real time moves one tick.
    Tick,
    /// The caller sends begin.
    Start(usize),
    /// The store applies a request and its caller reads the answer at once.
    Apply(usize),
    /// The store applies a request; the answer arrives later, or never.
    ApplyAnswerLater(usize),
    /// The store applies a request, the answer is lost and the client sends the request
    /// again.
    ApplyAndResend(usize),
    /// A message is lost.
    Lose(usize),
    /// An answer reaches its caller.
    Receive(usize),
    /// The caller gives up on its request (store timeout).
    GiveUp(usize),
    /// The caller sends a heartbeat.
    Beat(usize),
    /// The body ends, with `Ok` or `Err`.
    BodyEnds(usize, bool),
    /// The caller's process crashes; the event is redelivered to a new one.
    Crash(usize),
    /// The caller pauses.
    Pause(usize),
    /// The caller resumes.
    Resume(usize),
    /// A call that failed is delivered again.
    Redeliver(usize),
    /// The store deletes the expired record (TTL).
    Expire,
    /// The database discards a transaction whose caller no longer waits for it (it
    /// crashed, or gave up on the completion or the commit): the pending completion is
    /// gone, its row lock released.
    Abort,
}

impl Caller {
    fn owner(&self, index: usize) -> String {
        format!("c{index}g{}", self.generation)
    }

    fn now_ms(&self, now: u64) -> u64 {
        (now + self.skew) * TICK_MS
    }

    /// The request this attempt waits for, and when it was sent.
    fn awaiting(&self) -> Option<(u8, u64)> {
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

    /// Whether the engine would do something now that time must wait for: a heartbeat
    /// due, or a request it must give up on.
    fn is_due(&self, now: u64, timeout: u64) -> bool {
        if self.paused {
            return false;
        }
        if let Some((_, sent_at)) = self.awaiting() {
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

impl Protocol {
    /// The code's protocol within `bounds`.
    pub fn new(bounds: Bounds) -> Self {
        Protocol {
            bounds,
            variant: Variant::FIXED,
        }
    }

    /// The same bounds with a faulty variant.
    pub fn with_variant(mut self, variant: Variant) -> Self {
        self.variant = variant;
        self
    }

    fn send(&self, world: &mut World, index: usize, op: Op) -> (u8, u64) {
        let caller = &mut world.callers[index];
        caller.sent += 1;
        let seq = caller.sent;
        world.net.push(Message {
            caller: index,
            generation: caller.generation,
            seq,
            sent_at: world.now,
            body: Payload::Request(op, false),
        });
        (seq, world.now)
    }

    fn attempt(world: &World, index: usize, fence: u64) -> Attempt {
        Attempt {
            id: ID.to_owned(),
            owner: world.callers[index].owner(index),
            fence,
        }
    }

    fn send_begin(&self, world: &mut World, index: usize, tries: usize) {
        let caller = &world.callers[index];
        let request =
            self.bounds
                .terms()
                .begin(ID, &caller.owner(index), caller.now_ms(world.now), None);
        let (seq, sent_at) = self.send(world, index, Op::Begin(request.clone()));
        world.callers[index].phase = Phase::Beginning {
            request,
            tries,
            seq,
            sent_at,
        };
    }

    fn send_release(&self, world: &mut World, index: usize, fence: u64) {
        let attempt = Self::attempt(world, index, fence);
        let (seq, sent_at) = self.send(world, index, Op::Release(attempt));
        world.callers[index].phase = Phase::Releasing {
            fence,
            seq,
            sent_at,
        };
    }

    /// The body ended and no heartbeat is in flight: complete or release.
    fn finish(&self, world: &mut World, index: usize, fence: u64, ok: bool) {
        if !ok {
            return self.send_release(world, index, fence);
        }
        let attempt = Self::attempt(world, index, fence);
        let completion = self.bounds.terms().completion(
            world.callers[index].now_ms(world.now),
            Outcome::Ok,
            Some("\"value\"".to_owned()),
        );
        let op = if self.bounds.transactional {
            Op::CompleteInTransaction(attempt, completion)
        } else {
            Op::Complete(attempt, completion)
        };
        let (seq, sent_at) = self.send(world, index, op);
        world.callers[index].phase = Phase::Completing {
            fence,
            seq,
            sent_at,
        };
    }

    /// The call returns `end`; in a transaction, what it tells about the body's effect
    /// is noted for the properties.
    fn end(&self, world: &mut World, index: usize, end: End) {
        let caller = &world.callers[index];
        if self.bounds.transactional {
            let attempt = (index, caller.generation);
            match end {
                End::Ran => world.seen.told_ran.push(attempt),
                End::Failed => world.seen.told_nothing_persisted.push(attempt),
                _ => {}
            }
        }
        world.callers[index].phase = Phase::Done(end);
    }

    /// The commit failed or its answer never came: the record is read to settle it.
    fn settle(&self, world: &mut World, index: usize, fence: u64) {
        let (seq, sent_at) = self.send(world, index, Op::Read);
        world.callers[index].phase = Phase::Settling {
            fence,
            release: false,
            seq,
            sent_at,
        };
    }

    /// Settling, the read did not show the completion (or failed): the key is released,
    /// and the release's answer decides.
    fn settle_by_release(&self, world: &mut World, index: usize, fence: u64) {
        let attempt = Self::attempt(world, index, fence);
        let (seq, sent_at) = self.send(world, index, Op::Release(attempt));
        world.callers[index].phase = Phase::Settling {
            fence,
            release: true,
            seq,
            sent_at,
        };
    }

    /// Whether the transaction of `pending` is still waited for by its caller: it is
    /// current and completing or committing. Otherwise the database may discard it.
    fn transaction_is_alive(world: &World) -> bool {
        world
            .pending
            .as_ref()
            .is_some_and(|(index, generation, _)| {
                let caller = &world.callers[*index];
                caller.generation == *generation
                    && matches!(
                        caller.phase,
                        Phase::Completing { .. } | Phase::Committing { .. }
                    )
            })
    }

    /// A new attempt of the caller: a new owner, healthy again.
    fn new_attempt(world: &mut World, index: usize) {
        let caller = &mut world.callers[index];
        caller.generation += 1;
        caller.sent = 0;
        caller.paused = false;
        caller.faulted = false;
        caller.ran = false;
        caller.told_lost = false;
        caller.phase = Phase::Idle;
    }

    /// The store applies `op`, as the transitions of `idem_core::protocol` say (or the
    /// faulty variant of extend), and records what an observer sees.
    fn apply(&self, world: &mut World, op: &Op, from: (usize, u32)) -> Answer {
        let now_ms = world.now * TICK_MS;
        match op {
            Op::Begin(request) => {
                let written = protocol::begin(world.record.as_ref(), request);
                match &written {
                    Written::Applied(fence) => {
                        if let Some((_, _, expires_at_s)) = world.seen.completed.take() {
                            let margin_ms = self.bounds.max_skew_ticks * TICK_MS;
                            if now_ms + margin_ms < expires_at_s * TICK_MS {
                                world.seen.overwritten_early = true;
                            }
                            // The completed record's lifetime ends with it.
                            world.seen.runs.clear();
                            world.seen.effects = 0;
                        }
                        if let Some(previous) = &world.record {
                            if world.seen.dead.iter().any(|(o, _)| *o == previous.owner)
                                && previous.state == State::InProgress
                            {
                                world.seen.took_over_after_crash = true;
                            }
                        }
                        world.record = Some(request.record(*fence));
                        world.seen.last_begin_owner = Some(request.owner.clone());
                        world.seen.released = false;
                    }
                    Written::Refused(Some(current)) if current.state == State::InProgress => {
                        if world.seen.released {
                            world.seen.refused_after_release = true;
                        }
                        let dead_lease = world
                            .seen
                            .dead
                            .iter()
                            .find(|(owner, _)| *owner == current.owner)
                            .is_some_and(|(_, asked)| current.lease_until_ms > *asked);
                        if dead_lease {
                            world.seen.refused_by_dead_lease = true;
                        }
                    }
                    Written::Refused(_) => {}
                }
                Answer::Begin(written)
            }
            Op::Complete(attempt, completion) => {
                let written = protocol::complete(world.record.as_mut(), attempt, completion);
                if let Written::Applied(()) = written {
                    Self::completed(world, attempt, completion.expires_at_s);
                }
                Answer::Write(written)
            }
            Op::Extend(attempt, renewal) => {
                Answer::Write(self.variant.extend(world.record.as_mut(), attempt, renewal))
            }
            Op::CompleteInTransaction(attempt, completion) => {
                // Under the row lock: the transaction sees its own write, the rest of
                // the world the committed record until the commit.
                let mut record = world.record.clone();
                let written = protocol::complete(record.as_mut(), attempt, completion);
                if let (Written::Applied(()), Some(record)) = (&written, record) {
                    world.pending = Some((from.0, from.1, record));
                }
                Answer::Write(written)
            }
            Op::Commit(attempt) => match world.pending.take() {
                Some((caller, generation, record)) if (caller, generation) == from => {
                    Self::completed(world, attempt, record.expires_at_s);
                    world.record = Some(record);
                    world.seen.effects += 1;
                    world.seen.committed.push(from);
                    Answer::Commit(true)
                }
                other => {
                    world.pending = other;
                    Answer::Commit(false)
                }
            },
            Op::Read => Answer::Read(world.record.clone()),
            Op::Release(attempt) => {
                let written = protocol::release(world.record.as_mut(), attempt);
                if let Written::Applied(()) = written {
                    world.seen.released = true;
                }
                Answer::Write(written)
            }
        }
    }

    /// What an observer sees when `attempt`'s completion becomes visible (applied, or
    /// committed in a transaction): the completion, and whether it was stale.
    fn completed(world: &mut World, attempt: &Attempt, expires_at_s: u64) {
        if world.seen.last_begin_owner.as_deref() != Some(attempt.owner.as_str()) {
            world.seen.stale_completion = true;
        }
        world.seen.completed = Some((attempt.owner.clone(), attempt.fence, expires_at_s));
    }

    /// The caller reads the answer to the request it waits for, with the engine's own
    /// functions.
    fn receive(&self, world: &mut World, index: usize, answer: Answer) {
        let now = world.now;
        let caller = &world.callers[index];
        let now_ms = caller.now_ms(now);
        let terms = self.bounds.terms();
        match (caller.phase.clone(), answer) {
            (Phase::Beginning { request, tries, .. }, Answer::Begin(written)) => {
                if matches!(&written, Written::Refused(Some(r)) if r.shows_begin_by(&request.owner))
                {
                    world.seen.reconciled = true;
                }
                match protocol::after_begin(written, &request) {
                    BeginAnswer::Held {
                        fence,
                        lease_until_ms,
                    } if protocol::lease_is_live(now_ms, lease_until_ms) => {
                        let next_beat_ms =
                            self.variant.first_beat_ms(&terms, lease_until_ms, now_ms);
                        let generation = world.callers[index].generation;
                        world.seen.runs.push((index, generation));
                        let caller = &mut world.callers[index];
                        caller.ran = true;
                        caller.phase = Phase::Running {
                            fence,
                            lease_until_ms,
                            next_beat_ms,
                            lost: false,
                            extend: None,
                            ended: None,
                        };
                    }
                    BeginAnswer::Held { fence, .. } => self.send_release(world, index, fence),
                    BeginAnswer::Live(record) if record.state == State::Completed => {
                        self.end(world, index, End::Replayed)
                    }
                    BeginAnswer::Live(_) => self.end(world, index, End::InProgress),
                    BeginAnswer::Again if tries + 1 < BEGIN_TRIES => {
                        self.send_begin(world, index, tries + 1)
                    }
                    BeginAnswer::Again => self.end(world, index, End::StoreError),
                }
            }
            (
                Phase::Running {
                    fence,
                    extend: Some((renewal, _, _)),
                    ..
                },
                Answer::Write(written),
            ) => {
                let attempt = Self::attempt(world, index, fence);
                if matches!(&written, Written::Refused(Some(r)) if r.shows_renewal_by(&attempt, &renewal))
                {
                    world.seen.reconciled = true;
                }
                let answer = protocol::after_extend(written, &attempt, &renewal);
                self.settled(world, index, Some(answer));
            }
            (Phase::Completing { fence, .. }, Answer::Write(written)) => {
                let attempt = Self::attempt(world, index, fence);
                if matches!(&written, Written::Refused(Some(r)) if r.shows_completion_by(&attempt))
                {
                    world.seen.reconciled = true;
                }
                let end = match protocol::after_complete(written, &attempt) {
                    CompleteAnswer::Recorded if self.bounds.transactional => {
                        let (seq, sent_at) = self.send(world, index, Op::Commit(attempt));
                        world.callers[index].phase = Phase::Committing {
                            fence,
                            seq,
                            sent_at,
                        };
                        return;
                    }
                    CompleteAnswer::Recorded => End::Ran,
                    CompleteAnswer::LeaseLost { .. } => {
                        world.callers[index].told_lost = true;
                        End::LeaseLost
                    }
                };
                self.end(world, index, end);
            }
            (Phase::Committing { .. }, Answer::Commit(true)) => self.end(world, index, End::Ran),
            (Phase::Committing { fence, .. }, Answer::Commit(false)) => {
                self.settle(world, index, fence)
            }
            (
                Phase::Settling {
                    fence,
                    release: false,
                    ..
                },
                Answer::Read(record),
            ) => {
                let attempt = Self::attempt(world, index, fence);
                if record.is_some_and(|r| r.shows_completion_by(&attempt)) {
                    self.end(world, index, End::Ran);
                } else {
                    self.settle_by_release(world, index, fence);
                }
            }
            (
                Phase::Settling {
                    fence,
                    release: true,
                    ..
                },
                Answer::Write(written),
            ) => {
                let attempt = Self::attempt(world, index, fence);
                let committed = matches!(&written, Written::Refused(Some(r)) if r.shows_completion_by(&attempt));
                let end = match protocol::after_release(written, &attempt) {
                    _ if committed && !self.variant.settle_by_read_only => {
                        world.seen.settled_by_release = true;
                        End::Ran
                    }
                    // Released (by this send or an earlier one): nothing persisted.
                    ReleaseAnswer::Released | ReleaseAnswer::AlreadyReleased => End::Failed,
                    // The faulty variant trusts the read alone.
                    ReleaseAnswer::Lost if self.variant.settle_by_read_only => End::Failed,
                    // The record is gone or another attempt's: the call cannot tell.
                    ReleaseAnswer::Lost => End::StoreError,
                };
                self.end(world, index, end);
            }
            (Phase::Releasing { .. }, Answer::Write(_)) => self.released(world, index),
            (phase, answer) => unreachable!("answer {answer:?} in {phase:?}"),
        }
    }

    /// A heartbeat settled (answered with `answer`, or given up on): the body goes on
    /// with the lease renewed or marked lost, or, if it ended meanwhile, the attempt
    /// completes or releases.
    fn settled(&self, world: &mut World, index: usize, answer: Option<ExtendAnswer>) {
        let caller = &mut world.callers[index];
        if let Some(ExtendAnswer::Lost { .. }) = answer {
            caller.told_lost = true;
        }
        let Phase::Running {
            fence,
            lease_until_ms,
            lost,
            extend,
            ended,
            ..
        } = &mut caller.phase
        else {
            unreachable!("a heartbeat settled outside the body")
        };
        match answer {
            Some(ExtendAnswer::Renewed(until)) => *lease_until_ms = until,
            Some(ExtendAnswer::Lost { .. }) => *lost = true,
            None => {}
        }
        *extend = None;
        if let Some(ok) = ended.take() {
            let fence = *fence;
            self.finish(world, index, fence, ok);
        }
    }

    /// The release's answer came or was given up on: the call returns the body's error,
    /// or, for a begin that answered too late, a store error.
    fn released(&self, world: &mut World, index: usize) {
        let end = if world.callers[index].ran {
            End::Failed
        } else {
            End::StoreError
        };
        self.end(world, index, end);
    }

    /// The caller gives up on the request it waits for: the engine's answer to a store
    /// error (or a timeout) at each step.
    fn give_up(&self, world: &mut World, index: usize) {
        match world.callers[index].phase.clone() {
            Phase::Beginning { .. } => self.end(world, index, End::StoreError),
            Phase::Running { .. } => self.settled(world, index, None),
            // In a transaction: rolled back (the database discards it), then released.
            Phase::Completing { fence, .. } if self.bounds.transactional => {
                self.send_release(world, index, fence)
            }
            Phase::Completing { .. } => self.end(world, index, End::NotRecorded),
            Phase::Committing { fence, .. } => self.settle(world, index, fence),
            Phase::Settling {
                fence,
                release: false,
                ..
            } => self.settle_by_release(world, index, fence),
            // Neither the read nor the release settled it: the call says so.
            Phase::Settling { release: true, .. } => self.end(world, index, End::StoreError),
            Phase::Releasing { .. } => self.released(world, index),
            phase => unreachable!("give up in {phase:?}"),
        }
    }

    fn is_current(world: &World, message: &Message) -> bool {
        let caller = &world.callers[message.caller];
        caller.generation == message.generation
            && caller.awaiting().map(|(seq, _)| seq) == Some(message.seq)
    }
}

impl Model for Protocol {
    type State = World;
    type Action = Action;

    fn init_states(&self) -> Vec<World> {
        let b = &self.bounds;
        // Caller 0's clock is real time; every other caller's runs ahead by 0..=max.
        let mut skews: Vec<Vec<u64>> = vec![vec![0]];
        for _ in 1..b.callers {
            skews = skews
                .into_iter()
                .flat_map(|s| {
                    (0..=b.max_skew_ticks).map(move |k| {
                        let mut s = s.clone();
                        s.push(k);
                        s
                    })
                })
                .collect();
        }
        skews
            .into_iter()
            .map(|skews| World {
                now: 0,
                record: None,
                pending: None,
                callers: skews
                    .into_iter()
                    .map(|skew| Caller {
                        skew,
                        generation: 0,
                        sent: 0,
                        redeliveries: b.redeliveries,
                        paused: false,
                        faulted: false,
                        ran: false,
                        told_lost: false,
                        phase: Phase::Idle,
                    })
                    .collect(),
                net: Vec::new(),
                faults: Faults {
                    crashes: b.crashes,
                    pauses: b.pauses,
                    losses: b.losses,
                    resends: b.resends,
                    delays: b.delays,
                },
                seen: Seen::default(),
            })
            .collect()
    }

    fn actions(&self, world: &World, actions: &mut Vec<Action>) {
        let b = &self.bounds;
        if world.now < b.horizon_ticks
            && !world
                .callers
                .iter()
                .any(|c| c.is_due(world.now, b.timeout_ticks))
        {
            actions.push(Action::Tick);
        }
        for (i, message) in world.net.iter().enumerate() {
            match &message.body {
                // A write waits while a transaction holds the record's row lock.
                Payload::Request(op, _) if world.pending.is_some() && op.writes_the_record() => {}
                Payload::Request(op, resent) => {
                    actions.push(Action::Apply(i));
                    if world.faults.delays > 0 {
                        actions.push(Action::ApplyAnswerLater(i));
                    }
                    // A transaction's statements are not resent on another connection.
                    if !resent && world.faults.resends > 0 && !op.is_transactional() {
                        actions.push(Action::ApplyAndResend(i));
                    }
                }
                Payload::Answer(_) => actions.push(Action::Receive(i)),
            }
            if world.faults.losses > 0 {
                actions.push(Action::Lose(i));
            }
        }
        for (i, caller) in world.callers.iter().enumerate() {
            if caller.paused {
                actions.push(Action::Resume(i));
                continue;
            }
            match &caller.phase {
                Phase::Idle => actions.push(Action::Start(i)),
                Phase::Running { ended: None, .. } => {
                    actions.push(Action::BodyEnds(i, true));
                    actions.push(Action::BodyEnds(i, false));
                }
                Phase::Done(end)
                    if caller.redeliveries > 0 && !matches!(end, End::Ran | End::Replayed) =>
                {
                    actions.push(Action::Redeliver(i))
                }
                _ => {}
            }
            if let Some((_, sent_at)) = caller.awaiting() {
                if world.now >= sent_at + b.timeout_ticks {
                    actions.push(Action::GiveUp(i));
                }
            }
            if matches!(&caller.phase, Phase::Running { lost: false, extend: None, ended: None, next_beat_ms, .. }
                if caller.now_ms(world.now) >= *next_beat_ms)
            {
                actions.push(Action::Beat(i));
            }
            let active = !matches!(caller.phase, Phase::Idle | Phase::Done(_));
            if active && world.faults.crashes > 0 {
                actions.push(Action::Crash(i));
            }
            if active && world.faults.pauses > 0 {
                actions.push(Action::Pause(i));
            }
        }
        // The purge skips a locked row.
        if world.pending.is_none()
            && world
                .record
                .as_ref()
                .is_some_and(|r| r.is_expired(world.now * TICK_MS))
        {
            actions.push(Action::Expire);
        }
        if world.pending.is_some() && !Self::transaction_is_alive(world) {
            actions.push(Action::Abort);
        }
    }

    fn next_state(&self, last: &World, action: Action) -> Option<World> {
        let mut world = last.clone();
        let b = &self.bounds;
        match action {
            Action::Tick => {
                world.now += 1;
                for message in &world.net {
                    let caller = &mut world.callers[message.caller];
                    if caller.generation == message.generation
                        && world.now > message.sent_at + b.latency_ticks
                    {
                        caller.faulted = true;
                    }
                }
            }
            Action::Start(i) => self.send_begin(&mut world, i, 0),
            Action::Apply(i) | Action::ApplyAnswerLater(i) | Action::ApplyAndResend(i) => {
                let message = world.net.remove(i);
                let Payload::Request(op, _) = &message.body else {
                    unreachable!()
                };
                let answer = self.apply(&mut world, op, (message.caller, message.generation));
                let index = message.caller;
                if let Action::ApplyAndResend(_) = action {
                    // The first answer was lost: a fault of its caller, as with Lose.
                    world.faults.resends -= 1;
                    if world.callers[index].generation == message.generation {
                        world.callers[index].faulted = true;
                    }
                    world.net.push(Message {
                        body: Payload::Request(op.clone(), true),
                        ..message
                    });
                } else if !Self::is_current(&world, &message) {
                    // An answer to a request its caller gave up on, or to a crashed
                    // attempt, would be dropped on arrival: it is dropped here.
                } else if matches!(action, Action::Apply(_)) && !world.callers[index].paused {
                    // The answer arrives at once: the other orders are ApplyAnswerLater.
                    if world.now > message.sent_at + b.latency_ticks {
                        world.callers[index].faulted = true;
                    }
                    self.receive(&mut world, index, answer);
                } else {
                    if let Action::ApplyAnswerLater(_) = action {
                        world.faults.delays -= 1;
                    }
                    world.net.push(Message {
                        body: Payload::Answer(answer),
                        ..message
                    });
                }
            }
            Action::Lose(i) => {
                world.faults.losses -= 1;
                let message = world.net.remove(i);
                let caller = &mut world.callers[message.caller];
                if caller.generation == message.generation {
                    caller.faulted = true;
                }
            }
            Action::Receive(i) => {
                let message = world.net.remove(i);
                let caller = &world.callers[message.caller];
                if Self::is_current(&world, &message) && !caller.paused {
                    if world.now > message.sent_at + b.latency_ticks {
                        world.callers[message.caller].faulted = true;
                    }
                    let Payload::Answer(answer) = message.body else {
                        unreachable!()
                    };
                    self.receive(&mut world, message.caller, answer);
                } else if Self::is_current(&world, &message) {
                    // A paused caller reads it when it resumes: keep it in flight.
                    world.net.push(message);
                    return None;
                }
            }
            Action::GiveUp(i) => {
                world.callers[i].faulted = true;
                self.give_up(&mut world, i)
            }
            Action::Beat(i) => {
                let caller = &world.callers[i];
                let now_ms = caller.now_ms(world.now);
                let Phase::Running {
                    fence,
                    lease_until_ms,
                    lost,
                    ..
                } = caller.phase.clone()
                else {
                    unreachable!()
                };
                let terms = b.terms();
                let renewal = terms.renewal(now_ms);
                let attempt = Self::attempt(&world, i, fence);
                let (seq, sent_at) = self.send(&mut world, i, Op::Extend(attempt, renewal));
                world.callers[i].phase = Phase::Running {
                    fence,
                    lease_until_ms,
                    next_beat_ms: terms.next_beat_ms(now_ms),
                    lost,
                    extend: Some((renewal, seq, sent_at)),
                    ended: None,
                };
            }
            Action::BodyEnds(i, ok) => match &mut world.callers[i].phase {
                Phase::Running {
                    extend: Some(_),
                    ended,
                    ..
                } => *ended = Some(ok),
                Phase::Running { fence, .. } => {
                    let fence = *fence;
                    self.finish(&mut world, i, fence, ok)
                }
                _ => unreachable!(),
            },
            Action::Crash(i) => {
                world.faults.crashes -= 1;
                let caller = &world.callers[i];
                let owner = caller.owner(i);
                let asked = world
                    .net
                    .iter()
                    .filter(|m| m.caller == i && m.generation == caller.generation)
                    .filter_map(|m| match &m.body {
                        Payload::Request(Op::Begin(r), _) => Some(r.lease_until_ms),
                        Payload::Request(Op::Extend(_, r), _) => Some(r.lease_until_ms),
                        _ => None,
                    })
                    .chain(
                        world
                            .record
                            .iter()
                            .filter(|r| r.owner == owner)
                            .map(|r| r.lease_until_ms),
                    )
                    .max()
                    .unwrap_or(0);
                world.seen.dead.push((owner, asked));
                Self::new_attempt(&mut world, i);
            }
            Action::Pause(i) => {
                world.faults.pauses -= 1;
                world.callers[i].paused = true;
                world.callers[i].faulted = true;
            }
            Action::Resume(i) => world.callers[i].paused = false,
            Action::Redeliver(i) => {
                world.callers[i].redeliveries -= 1;
                Self::new_attempt(&mut world, i);
            }
            Action::Expire => {
                world.record = None;
                if world.seen.completed.take().is_some() {
                    world.seen.runs.clear();
                    world.seen.effects = 0;
                }
            }
            Action::Abort => world.pending = None,
        }
        // Messages in one canonical order, so that two worlds differing only in the
        // order messages were sent are one state.
        world.net.sort_by_key(|m| {
            (
                m.caller,
                m.generation,
                m.seq,
                matches!(m.body, Payload::Answer(_)),
            )
        });
        Some(world)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("one holder", |_, world: &World| {
                world
                    .callers
                    .iter()
                    .filter(|c| !c.faulted && c.believes_it_holds(world.now))
                    .count()
                    <= 1
            }),
            Property::always(
                "a completed record stays until it expires",
                |_, world: &World| {
                    !world.seen.overwritten_early
                        && match (&world.seen.completed, &world.record) {
                            (None, _) => true,
                            (Some((owner, fence, _)), Some(record)) => {
                                record.state == State::Completed
                                    && record.owner == *owner
                                    && record.fence == *fence
                            }
                            (Some(_), None) => false,
                        }
                },
            ),
            Property::always("a healthy holder keeps its lease", |_, world: &World| {
                world.callers.iter().all(|c| c.faulted || !c.told_lost)
            }),
            Property::always("a stale completion is refused", |_, world: &World| {
                !world.seen.stale_completion
            }),
            Property::always(
                "runs at most one plus the attempts that crashed, failed or lost their lease",
                |_, world: &World| {
                    world
                        .seen
                        .runs
                        .iter()
                        .filter(|(index, generation)| {
                            world.callers[*index].is_clean_run(*generation)
                        })
                        .count()
                        <= 1
                },
            ),
            Property::always("a released key can be begun at once", |_, world: &World| {
                !world.seen.refused_after_release
            }),
            Property::always(
                "a crashed holder's key is free once its last lease lapses",
                |_, world: &World| !world.seen.refused_by_dead_lease,
            ),
            Property::sometimes(
                "a crashed holder's key is taken over",
                |_, world: &World| world.seen.took_over_after_crash,
            ),
            Property::always(
                "in a transaction, at most one effect commits per record lifetime",
                |_, world: &World| world.seen.effects <= 1,
            ),
            Property::always(
                "in a transaction, a call told it ran has its effect committed",
                |_, world: &World| {
                    world
                        .seen
                        .told_ran
                        .iter()
                        .all(|attempt| world.seen.committed.contains(attempt))
                },
            ),
            Property::always(
                "in a transaction, a call told nothing persisted has nothing committed",
                |_, world: &World| {
                    world
                        .seen
                        .told_nothing_persisted
                        .iter()
                        .all(|attempt| !world.seen.committed.contains(attempt))
                },
            ),
            Property::sometimes(
                "in a transaction, a commit landing after the settling read is settled by the release",
                |_, world: &World| world.seen.settled_by_release,
            ),
            Property::sometimes("a lost answer is reconciled", |_, world: &World| {
                world.seen.reconciled
            }),
            Property::sometimes("a duplicate replays", |_, world: &World| {
                world
                    .callers
                    .iter()
                    .any(|c| c.phase == Phase::Done(End::Replayed))
            }),
            Property::sometimes(
                "a stale attempt is told its lease was lost",
                |_, world: &World| {
                    world
                        .callers
                        .iter()
                        .any(|c| c.phase == Phase::Done(End::LeaseLost))
                },
            ),
        ]
    }
}

impl Protocol {
    /// One step of a trace in words: the time, the step, and the record after it.
    pub fn describe(&self, world: &World, action: &Action) -> String {
        let who = |i: usize| world.callers[i].owner(i);
        let clock = |i: usize| world.callers[i].now_ms(world.now) / TICK_MS;
        let step = match action {
            Action::Tick => "time passes".to_owned(),
            Action::Start(i) => format!("{} sends begin at its {}s", who(*i), clock(*i)),
            Action::Apply(m) | Action::ApplyAnswerLater(m) | Action::ApplyAndResend(m) => {
                let message = &world.net[*m];
                let owner = format!("c{}g{}", message.caller, message.generation);
                let how = match action {
                    Action::Apply(_) => "answered at once",
                    Action::ApplyAnswerLater(_) => "answer delayed",
                    _ => "answer lost, request resent",
                };
                match &message.body {
                    Payload::Request(op, _) => {
                        format!("store applies {owner}'s {} ({how})", describe_op(op))
                    }
                    Payload::Answer(_) => unreachable!(),
                }
            }
            Action::Lose(m) => format!("a message of c{} is lost", world.net[*m].caller),
            Action::Receive(m) => format!("c{} reads a late answer", world.net[*m].caller),
            Action::GiveUp(i) => format!("{} gives up waiting (store timeout)", who(*i)),
            Action::Beat(i) => format!("{} sends a heartbeat at its {}s", who(*i), clock(*i)),
            Action::BodyEnds(i, ok) => {
                format!(
                    "{}'s body returns {}",
                    who(*i),
                    if *ok { "Ok" } else { "Err" }
                )
            }
            Action::Crash(i) => format!("{} crashes", who(*i)),
            Action::Pause(i) => format!("{} pauses", who(*i)),
            Action::Resume(i) => format!("{} resumes", who(*i)),
            Action::Redeliver(i) => format!("the event is delivered to c{i} again"),
            Action::Expire => "the store deletes the expired record".to_owned(),
            Action::Abort => "the database discards an abandoned transaction".to_owned(),
        };
        let after = self.next_state(world, action.clone());
        let record = match after.as_ref().and_then(|w| w.record.as_ref()) {
            None => "none".to_owned(),
            Some(r) => format!(
                "{} {} fence {} lease until {}s",
                r.state,
                r.owner,
                r.fence,
                r.lease_until_ms / TICK_MS
            ),
        };
        format!("t={} {step}; record: {record}", world.now)
    }
}

fn describe_op(op: &Op) -> String {
    match op {
        Op::Begin(r) => format!("begin (lease until {}s)", r.lease_until_ms / TICK_MS),
        Op::Complete(..) => "complete".to_owned(),
        Op::Extend(_, r) => format!("extend (lease until {}s)", r.lease_until_ms / TICK_MS),
        Op::Release(_) => "release".to_owned(),
        Op::CompleteInTransaction(..) => "complete in the body's transaction".to_owned(),
        Op::Commit(_) => "commit".to_owned(),
        Op::Read => "read".to_owned(),
    }
}

impl Op {
    /// Whether it writes the record (and so waits for a transaction's row lock).
    fn writes_the_record(&self) -> bool {
        !matches!(self, Op::Commit(_) | Op::Read)
    }

    /// Whether it is a statement of the body's transaction or of its settling.
    fn is_transactional(&self) -> bool {
        matches!(
            self,
            Op::CompleteInTransaction(..) | Op::Commit(_) | Op::Read
        )
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults: Vec<&str> = [
            (
                self.first_beat_from_body_start,
                "first heartbeat from the body's start",
            ),
            (self.extend_after_release, "extend renews a released lease"),
            (
                self.settle_by_read_only,
                "a lost commit settled by the read only",
            ),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if faults.is_empty() {
            f.write_str("the code's protocol")
        } else {
            f.write_str(&faults.join(", "))
        }
    }
}
