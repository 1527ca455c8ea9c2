//! The store's side of the transitions: it applies a request with
//! `idem_core::protocol`'s own functions, and its database holds or discards a body's
//! transaction.

use std::sync::Arc;

use idem_core::protocol;
use idem_core::store::{Attempt, Hold, State, StepRecord, Written};

use crate::state::step_index;

use crate::{Answer, Op, Phase, Protocol, World, TICK_MS};

impl Protocol {
    /// Whether the transaction of `pending` is still waited for by its caller: it is
    /// current and completing or committing (in the lock-held form also taking the key
    /// or running its body in it). Otherwise the database may discard it: its caller
    /// gave up on it, or crashed and its session ended.
    pub(crate) fn transaction_is_alive(&self, world: &World) -> bool {
        world
            .pending
            .as_ref()
            .is_some_and(|(index, generation, _)| {
                let caller = &world.callers[*index];
                caller.generation == *generation
                    && match caller.phase {
                        Phase::Completing { .. } | Phase::Committing { .. } => true,
                        Phase::Beginning { .. } | Phase::Running { .. } => self.bounds.lock_held,
                        _ => false,
                    }
            })
    }

    /// Whether `op` is applied while a transaction holds the record's row lock rather
    /// than waiting for it: in the lock-held form, a hold (which waits at most its
    /// `lock_timeout`, then is busy; waiting longer is the request staying in flight)
    /// and a completion in the holder's own transaction.
    pub(crate) fn applies_while_locked(&self, op: &Op) -> bool {
        matches!(op, Op::Hold(_))
            || (self.bounds.lock_held && matches!(op, Op::CompleteInTransaction(..)))
    }

    /// The record's lifetime ends when a begin or a hold takes a completed record over
    /// (at `now_ms`): whether that was before its expiry, less the clock skew, is noted.
    fn takes_over(&self, world: &mut World, now_ms: u64) {
        if let Some((_, _, expires_at_s)) = world.seen.completed.take() {
            let margin_ms = self.bounds.max_skew_ticks * TICK_MS;
            if now_ms + margin_ms < expires_at_s * TICK_MS {
                world.seen.overwritten_early = true;
            }
            // The completed record's lifetime ends with it.
            world.seen.runs.clear();
            world.seen.effects = 0;
            Self::steps_lifetime_ends(world);
        }
    }

    /// The record's lifetime ends (deleted, or a completed record taken over): its
    /// steps' effects and journal are counted afresh.
    pub(crate) fn steps_lifetime_ends(world: &mut World) {
        world.seen.step_effects.clear();
        world.seen.journaled = 0;
    }

    /// A step's effect happens (a plain step runs, a database step commits): noted for
    /// the properties. `fenced`: the attempt holds the record, or has no fault (a plain
    /// step's effect is outside the store, and only the journal write is fenced: a
    /// stale attempt with a fault may still run a step its successor journaled, and
    /// then is refused its journal write).
    pub(crate) fn step_effect(world: &mut World, index: usize, fenced: bool) {
        let seen = &mut world.seen;
        if seen.journaled & (1 << index) != 0 {
            if fenced {
                seen.rerun_journaled = true;
            } else {
                seen.stale_step_ran = true;
            }
        }
        if seen.step_effects.len() <= index {
            seen.step_effects.resize(index + 1, 0);
        }
        if seen.step_effects[index] > 0 {
            seen.step_repeated = true;
        }
        seen.step_effects[index] += 1;
    }

    /// The store applies `attempt`'s journal write of `entry` ([`protocol::journal`], or
    /// the faulty variant's): whether the writer held the record is noted, and a
    /// database step's effect commits with it.
    fn journal(
        &self,
        world: &mut World,
        attempt: &Attempt,
        entry: &StepRecord,
        transaction: bool,
    ) -> Answer {
        let held = world.record.as_ref().is_some_and(|r| {
            r.state == State::InProgress && r.owner == attempt.owner && r.fence == attempt.fence
        }) && world.seen.last_begin_owner == Some(attempt.owner);
        let written = self.variant.journal(world.record.as_mut(), attempt, entry);
        match &written {
            Written::Applied(()) => {
                if !held {
                    world.seen.stale_journal = true;
                }
                let index = step_index(&entry.name);
                if transaction {
                    Self::step_effect(world, index, true);
                }
                if entry.is_finished() {
                    world.seen.journaled |= 1 << index;
                }
            }
            Written::Refused(_) => {
                if !held {
                    world.seen.stale_journal_refused = true;
                }
            }
        }
        Answer::Journal(written)
    }

    /// The lock-held form's hold by `from`: busy while another transaction holds the
    /// row lock, otherwise [`protocol::hold`] on the committed record (or the faulty
    /// variant's), the held record then the transaction's, under its row lock.
    fn hold(
        &self,
        world: &mut World,
        request: &idem_core::store::Begin,
        from: (usize, u32),
    ) -> Answer {
        let now_ms = world.now * TICK_MS;
        if let Some((index, generation, _)) = &world.pending {
            let holder = crate::state::owner_of(*index, *generation);
            if world.seen.ended.contains(&holder) {
                world.seen.held_past_session = true;
            }
            world.seen.busy = true;
            return Answer::Hold(Hold::Busy);
        }
        let drawn = world.sequence + 1;
        match self.variant.hold(world.record.as_ref(), request, drawn) {
            Written::Applied(fence) => {
                world.sequence = drawn;
                if fence <= world.seen.last_fence {
                    world.seen.fence_not_above = true;
                }
                world.seen.last_fence = world.seen.last_fence.max(fence);
                if !world.seen.ended.is_empty() {
                    world.seen.took_over_after_session_end = true;
                }
                self.takes_over(world, now_ms);
                let held = protocol::held_record(request, fence);
                world.pending = Some((from.0, from.1, Arc::new(held)));
                world.seen.last_begin_owner = Some(request.owner);
                Answer::Hold(Hold::Taken(fence))
            }
            Written::Refused(current) => {
                if let Some(record) = &current {
                    let crashed = world.seen.dead.iter().any(|(o, _)| *o == record.owner);
                    if crashed
                        && record.state == State::InProgress
                        && record.is_live(request.now_ms)
                    {
                        world.seen.held_past_session = true;
                    }
                }
                Answer::Hold(Hold::Refused(current))
            }
        }
    }

    /// The store applies `op`, as the transitions of `idem_core::protocol` say (or the
    /// faulty variant of extend), and records what an observer sees.
    pub(crate) fn apply(&self, world: &mut World, op: &Op, from: (usize, u32)) -> Answer {
        let now_ms = world.now * TICK_MS;
        match op {
            Op::Begin(request) => {
                let written = protocol::begin(world.record.as_ref(), request);
                match &written {
                    Written::Applied(fence) => {
                        self.takes_over(world, now_ms);
                        if let Some(previous) = &world.record {
                            if world.seen.dead.iter().any(|(o, _)| *o == previous.owner)
                                && previous.state == State::InProgress
                            {
                                world.seen.took_over_after_crash = true;
                            }
                        }
                        let begun = self.variant.begun(world.record.as_deref(), request, *fence);
                        world.record = Some(Arc::new(begun));
                        world.seen.last_begin_owner = Some(request.owner);
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
            Op::Hold(request) => self.hold(world, request, from),
            // The holder's own transaction holds the row: the completion is written in
            // it, or fails when the transaction is gone (its session ended).
            Op::CompleteInTransaction(attempt, completion) if self.bounds.lock_held => {
                match &mut world.pending {
                    Some((caller, generation, record)) if (*caller, *generation) == from => {
                        Answer::Write(protocol::complete(Some(record), attempt, completion))
                    }
                    _ => {
                        world.seen.killed_statement_failed |= world.seen.killed == Some(from);
                        Answer::Failed
                    }
                }
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
                    if self.bounds.lock_held {
                        world.seen.killed_statement_failed |= world.seen.killed == Some(from);
                    }
                    Answer::Commit(false)
                }
            },
            Op::Read => Answer::Read(world.record.clone()),
            Op::Journal(attempt, entry) => self.journal(world, attempt, entry, false),
            Op::StepTransaction(attempt, entry) => self.journal(world, attempt, entry, true),
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
        if world.seen.last_begin_owner != Some(attempt.owner) {
            world.seen.stale_completion = true;
        }
        world.seen.completed = Some((attempt.owner, attempt.fence, expires_at_s));
    }
}
