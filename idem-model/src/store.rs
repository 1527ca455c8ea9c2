//! The store's side of the transitions: it applies a request with
//! `idem_core::protocol`'s own functions, and its database holds or discards a body's
//! transaction.

use std::sync::Arc;

use idem_core::protocol;
use idem_core::store::{Attempt, State, Written};

use crate::{Answer, Op, Phase, Protocol, World, TICK_MS};

impl Protocol {
    /// Whether the transaction of `pending` is still waited for by its caller: it is
    /// current and completing or committing. Otherwise the database may discard it.
    pub(crate) fn transaction_is_alive(world: &World) -> bool {
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

    /// The store applies `op`, as the transitions of `idem_core::protocol` say (or the
    /// faulty variant of extend), and records what an observer sees.
    pub(crate) fn apply(&self, world: &mut World, op: &Op, from: (usize, u32)) -> Answer {
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
                        world.record = Some(Arc::new(request.record(*fence)));
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
}
