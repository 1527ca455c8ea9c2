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
//! With [`Bounds::lock_held`] (PostgreSQL's lock-held form), the transaction holds the
//! key itself: it is opened first and takes the key with a hold
//! ([`protocol::hold`] on the committed record, its fence the record's plus a sequence's
//! value that no rollback returns, read back with [`protocol::after_hold`]), and its row
//! lock is the lease until it commits, rolls back, or the database ends its session: a
//! crashed caller's when the database notices, a paused one's when the server's
//! timeout does ([`Bounds::kills`]). A hold that meets the lock is busy or waits.
//!
//! With [`Bounds::steps`], every body runs steps (`Context::step`, §3.7): the journal
//! read once per attempt ([`protocol::journal_of`]), each step planned with
//! [`protocol::step_plan`], a plain step's effect then its journal write as a request
//! the store applies with [`protocol::journal`] (read back with
//! [`protocol::after_journal`]); in a transaction they are database steps, whose
//! effect and journal entry commit together.
//!
//! `docs/protocol.md` (§8) lists the properties, the bounds CI checks and what the model
//! leaves out.

// The names the crate docs link to.
#[cfg(doc)]
use idem_core::{
    protocol::{self, Terms},
    store::Record,
};

mod actions;
mod engine;
mod model;
mod properties;
mod scenarios;
mod state;
mod store;
mod variant;

pub use actions::{Action, Answer, Message, Op, Payload};
pub use model::Protocol;
pub use scenarios::{suite, Bounds, Scenario};
pub use state::{Caller, End, Faults, Phase, Seen, Stage, Steps, World, TICK_MS};
pub use variant::Variant;
