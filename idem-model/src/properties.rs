//! The properties the checker verifies: the invariants checked in every state and the
//! examples some state must reach (`docs/protocol.md` §8).

use idem_core::store::State;
use stateright::Property;

use crate::{End, Phase, Protocol, World};

/// Every property of the model, invariants and examples.
pub(crate) fn properties() -> Vec<Property<Protocol>> {
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
                    .filter(|(index, generation)| world.callers[*index].is_clean_run(*generation))
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
        Property::always(
            "held by the transaction, a crashed holder's key is free once its session ends",
            |_, world: &World| !world.seen.held_past_session,
        ),
        Property::always(
            "held by the transaction, every holder's fence is above every earlier one's",
            |_, world: &World| !world.seen.fence_not_above,
        ),
        Property::sometimes(
            "held by the transaction, a duplicate finds the key busy",
            |_, world: &World| world.seen.busy,
        ),
        Property::sometimes(
            "held by the transaction, a crashed holder's key is taken once its session ends",
            |_, world: &World| world.seen.took_over_after_session_end,
        ),
        Property::sometimes(
            "held by the transaction, a paused holder whose session was ended fails to commit",
            |_, world: &World| world.seen.killed_statement_failed,
        ),
        Property::always(
            "steps, a journaled step never runs again in its record's lifetime (by a holder or a healthy attempt)",
            |_, world: &World| !world.seen.rerun_journaled,
        ),
        Property::always(
            "steps, a journal write is applied only for the attempt holding the record",
            |_, world: &World| !world.seen.stale_journal,
        ),
        Property::always(
            "steps, database steps commit at most one effect per step per record lifetime",
            |protocol: &Protocol, world: &World| {
                !protocol.bounds.transactional || world.seen.step_effects.iter().all(|&n| n <= 1)
            },
        ),
        Property::sometimes(
            "steps, a later attempt replays a journaled step",
            |_, world: &World| world.seen.step_replayed,
        ),
        Property::sometimes(
            "steps, a plain step whose journal write never landed runs again",
            |_, world: &World| world.seen.step_repeated,
        ),
        Property::sometimes(
            "steps, a stale attempt with a fault runs a plain step its successor journaled",
            |_, world: &World| world.seen.stale_step_ran,
        ),
        Property::sometimes(
            "steps, a stale attempt's journal write is refused",
            |_, world: &World| world.seen.stale_journal_refused,
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
