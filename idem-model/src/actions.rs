//! The protocol's messages (requests to the store and its answers) and the steps of the
//! world ([`Action`]), with each step told in words for a trace.

use std::sync::Arc;

use idem_core::store::{Attempt, Begin, Completion, Hold, Record, Renewal, StepRecord, Written};
use stateright::Model;

use crate::{Protocol, World, TICK_MS};

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
    /// The lock-held form: open the body's transaction and take the key in it.
    Hold(Begin),
    /// Journal a step's result (`Store::journal`).
    Journal(Attempt, StepRecord),
    /// A database step's transaction: its journal entry written in it
    /// (`Transaction::journal`) and committed with the step's effect, or rolled back
    /// with it when refused (one request: the entry's row lock is held until the
    /// commit, so nothing else writes the record in between).
    StepTransaction(Attempt, StepRecord),
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
    Read(Option<Arc<Record>>),
    /// To a hold.
    Hold(Hold),
    /// To a journal write (or a database step's transaction: applied means
    /// committed).
    Journal(Written<()>),
    /// A statement of a transaction that no longer exists failed (the lock-held form:
    /// the server ended its session).
    Failed,
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
    /// The body's next step: the journal's read (before the attempt's first step),
    /// or the step's effect (a plain step), or its transaction sent (a database
    /// step).
    Step(usize),
    /// A plain step that ran sends its journal write.
    Journal(usize),
    /// The caller gives up on its step's request (store timeout): the step fails.
    GiveUpStep(usize),
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
    /// gone, its row lock released. In the lock-held form, also a crashed caller's
    /// session ending: its transaction is rolled back.
    Abort,
    /// The lock-held form: the server ends a paused holder's session
    /// (`idle_in_transaction_session_timeout`); its transaction is rolled back.
    Kill(usize),
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
            Action::Step(i) => format!("{} runs its next step", who(*i)),
            Action::Journal(i) => format!("{} sends its step's journal write", who(*i)),
            Action::GiveUpStep(i) => format!("{} gives up waiting for its step", who(*i)),
            Action::Crash(i) => format!("{} crashes", who(*i)),
            Action::Pause(i) => format!("{} pauses", who(*i)),
            Action::Resume(i) => format!("{} resumes", who(*i)),
            Action::Redeliver(i) => format!("the event is delivered to c{i} again"),
            Action::Expire => "the store deletes the expired record".to_owned(),
            Action::Abort => "the database discards an abandoned transaction".to_owned(),
            Action::Kill(i) => format!("the server ends {}'s session", who(*i)),
        };
        let after = self.next_state(world, action.clone());
        let record = match after.as_ref().and_then(|w| w.record.as_ref()) {
            None => "none".to_owned(),
            Some(r) => format!(
                "{} {} fence {} lease until {}s{}",
                r.state,
                r.owner,
                r.fence,
                r.lease_until_ms / TICK_MS,
                if r.steps.is_empty() {
                    String::new()
                } else {
                    let names: Vec<&str> = r.steps.iter().map(|e| e.name.as_str()).collect();
                    format!(" journal [{}]", names.join(", "))
                }
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
        Op::Hold(_) => "hold (in a new transaction)".to_owned(),
        Op::Journal(_, step) => format!("journal of {}", step.name),
        Op::StepTransaction(_, step) => format!("database step {} (journal and commit)", step.name),
    }
}

impl Op {
    /// Whether it writes the record (and so waits for a transaction's row lock).
    pub(crate) fn writes_the_record(&self) -> bool {
        !matches!(self, Op::Commit(_) | Op::Read)
    }

    /// Whether it is a statement of the body's transaction or of its settling.
    pub(crate) fn is_transactional(&self) -> bool {
        matches!(
            self,
            Op::CompleteInTransaction(..)
                | Op::Commit(_)
                | Op::Read
                | Op::Hold(_)
                | Op::StepTransaction(..)
        )
    }
}
