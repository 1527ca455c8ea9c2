//! The callers' side of the transitions: each caller takes the engine's steps (sends
//! its requests and reads their answers with the engine's own functions).

use idem_core::protocol::{
    self, BeginAnswer, CommitFate, CompleteAnswer, ExtendAnswer, JournalAnswer, StepPlan,
    BEGIN_TRIES,
};
use idem_core::store::{Attempt, Codec, Outcome, State, StepRecord, Written};
use idem_core::Encoded;

use crate::state::{id, step_index, step_name};
use crate::{Answer, End, Message, Op, Payload, Phase, Protocol, Stage, Steps, World};

impl Protocol {
    pub(crate) fn send(&self, world: &mut World, index: usize, op: Op) -> (u8, u64) {
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

    pub(crate) fn attempt(world: &World, index: usize, fence: u64) -> Attempt {
        Attempt {
            id: id(),
            owner: world.callers[index].owner(index),
            fence,
        }
    }

    pub(crate) fn send_begin(&self, world: &mut World, index: usize, tries: usize) {
        let caller = &world.callers[index];
        let request =
            self.bounds
                .terms()
                .begin(&id(), caller.owner(index), caller.now_ms(world.now), None);
        // The lock-held form opens the body's transaction and takes the key in it.
        let op = if self.bounds.lock_held {
            Op::Hold(request.clone())
        } else {
            Op::Begin(request.clone())
        };
        let (seq, sent_at) = self.send(world, index, op);
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
    pub(crate) fn finish(&self, world: &mut World, index: usize, fence: u64, ok: bool) {
        if !ok && self.bounds.lock_held {
            // Rolled back: that frees the key, nothing is left to release. The row lock
            // goes when the rollback lands (the database's `Abort` in the model).
            return self.end(world, index, End::Failed);
        }
        if !ok {
            return self.send_release(world, index, fence);
        }
        let attempt = Self::attempt(world, index, fence);
        let completion = self.bounds.terms().completion(
            world.callers[index].now_ms(world.now),
            Outcome::Ok,
            Some(Encoded {
                codec: Codec::Json,
                data: "\"value\"".into(),
            }),
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

    /// A new attempt of the caller: a new owner, healthy again.
    pub(crate) fn new_attempt(world: &mut World, index: usize) {
        let caller = &mut world.callers[index];
        caller.generation += 1;
        caller.sent = 0;
        caller.paused = false;
        caller.faulted = false;
        caller.ran = false;
        caller.told_lost = false;
        caller.phase = Phase::Idle;
    }

    /// The caller reads the answer to the request it waits for, with the engine's own
    /// functions.
    pub(crate) fn receive(&self, world: &mut World, index: usize, answer: Answer) {
        let now = world.now;
        let caller = &world.callers[index];
        let now_ms = caller.now_ms(now);
        let terms = self.bounds.terms();
        match (caller.phase.clone(), answer) {
            (Phase::Beginning { request, tries, .. }, answer) => {
                let meaning = match answer {
                    Answer::Begin(written) => {
                        if matches!(&written, Written::Refused(Some(r)) if r.shows_begin_by(request.owner))
                        {
                            world.seen.reconciled = true;
                        }
                        protocol::after_begin(written, &request)
                    }
                    Answer::Hold(hold) => match protocol::after_hold(hold, &request) {
                        Some(meaning) => meaning,
                        // Another transaction holds the key.
                        None => return self.end(world, index, End::InProgress),
                    },
                    answer => unreachable!("answer {answer:?} to begin"),
                };
                match meaning {
                    BeginAnswer::Held {
                        fence,
                        lease_until_ms,
                    } if protocol::lease_is_live(now_ms, lease_until_ms) => {
                        // A key the transaction holds has no heartbeat.
                        let next_beat_ms = if self.bounds.lock_held {
                            u64::MAX
                        } else {
                            self.variant.first_beat_ms(&terms, lease_until_ms, now_ms)
                        };
                        let generation = world.callers[index].generation;
                        world.seen.runs.push((index, generation));
                        let caller = &mut world.callers[index];
                        caller.ran = true;
                        // An attempt with fence 1 took a key that had no record: it has
                        // no journal to read (the engine skips the read).
                        let known = (self.bounds.steps > 0 && fence == 1).then(Vec::new);
                        caller.phase = Phase::Running {
                            fence,
                            lease_until_ms,
                            next_beat_ms,
                            lost: false,
                            extend: None,
                            ended: None,
                            steps: Steps {
                                known,
                                ..Steps::default()
                            },
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
            (Phase::Running { .. }, Answer::Read(record)) => {
                self.journal_read(world, index, record)
            }
            (Phase::Running { .. }, Answer::Journal(written)) => {
                self.journal_answer(world, index, written)
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
            // The lock-held form: the transaction is gone (its session ended), and with it
            // the body's writes: the engine reports a store error, nothing persisted.
            (Phase::Completing { .. }, Answer::Failed) => self.end(world, index, End::Failed),
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
                match protocol::settle_by_read(record.as_deref(), &attempt) {
                    Some(CommitFate::Committed { .. }) => self.end(world, index, End::Ran),
                    _ => self.settle_by_release(world, index, fence),
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
                let end = match protocol::settle_by_release(written, &attempt) {
                    // The faulty variant trusts the read alone: a release that did not
                    // show the completion there means nothing persisted.
                    _ if self.variant.settle_by_read_only => End::Failed,
                    CommitFate::Committed { .. } => {
                        world.seen.settled_by_release = true;
                        End::Ran
                    }
                    // Released (by this send or an earlier one): nothing persisted.
                    CommitFate::RolledBack => End::Failed,
                    // The record is gone or another attempt's: the call cannot tell.
                    CommitFate::Unknown => End::StoreError,
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
    pub(crate) fn give_up(&self, world: &mut World, index: usize) {
        match world.callers[index].phase.clone() {
            Phase::Beginning { .. } => self.end(world, index, End::StoreError),
            Phase::Running { .. } => self.settled(world, index, None),
            // Held by the transaction: rolled back, which frees the key.
            Phase::Completing { .. } if self.bounds.lock_held => {
                self.end(world, index, End::Failed)
            }
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

    pub(crate) fn is_current(world: &World, message: &Message) -> bool {
        let caller = &world.callers[message.caller];
        caller.generation == message.generation
            && (caller.awaiting().map(|(seq, _)| seq) == Some(message.seq)
                || caller.step_awaiting().map(|(seq, _)| seq) == Some(message.seq))
    }

    /// The body ends with `ok`: the attempt completes or releases, once a heartbeat in
    /// flight settled.
    pub(crate) fn body_ends(&self, world: &mut World, index: usize, ok: bool) {
        match &mut world.callers[index].phase {
            Phase::Running {
                extend: Some(_),
                ended,
                ..
            } => *ended = Some(ok),
            Phase::Running { fence, .. } => {
                let fence = *fence;
                self.finish(world, index, fence, ok)
            }
            phase => unreachable!("the body ends in {phase:?}"),
        }
    }

    /// The running attempt's steps, to change them.
    fn steps_of(world: &mut World, index: usize) -> &mut Steps {
        match &mut world.callers[index].phase {
            Phase::Running { steps, .. } => steps,
            phase => unreachable!("a step in {phase:?}"),
        }
    }

    /// The entry a run of step `done` journals: its value.
    fn entry(done: u8) -> StepRecord {
        StepRecord {
            name: step_name(done),
            outcome: Some(Outcome::Ok),
            data: Some(format!("{done}").into_bytes().into()),
            codec: Codec::Json,
        }
    }

    /// The body's next step, as `idem_core::step` runs it: the journal read once per
    /// attempt before its first step (`protocol::journal_of`), the plan
    /// (`protocol::step_plan`), the engine's lease check (`Context::lease_lost`), then
    /// the step's effect (a plain step) or its transaction (a database step).
    pub(crate) fn step(&self, world: &mut World, index: usize) {
        let now = world.now;
        let caller = &world.callers[index];
        let Phase::Running {
            fence,
            lease_until_ms,
            lost,
            steps,
            ..
        } = caller.phase.clone()
        else {
            unreachable!("a step outside the body")
        };
        let Some(known) = &steps.known else {
            let (seq, sent_at) = self.send(world, index, Op::Read);
            Self::steps_of(world, index).stage = Stage::Reading { seq, sent_at };
            return;
        };
        let name = step_name(steps.done);
        match protocol::step_plan(known.iter().find(|e| e.name == name), false) {
            StepPlan::Replay => {
                world.seen.step_replayed = true;
                Self::steps_of(world, index).done += 1;
            }
            StepPlan::Uncertain => unreachable!("no step of the model is at most once"),
            StepPlan::Run { .. } => {
                if lost || !protocol::lease_is_live(caller.now_ms(now), lease_until_ms) {
                    // The step fails with `LeaseLost` before it runs.
                    return self.body_ends(world, index, false);
                }
                if self.bounds.transactional {
                    let attempt = Self::attempt(world, index, fence);
                    let op = Op::StepTransaction(attempt, Self::entry(steps.done));
                    let (seq, sent_at) = self.send(world, index, op);
                    Self::steps_of(world, index).stage = Stage::Journaling { seq, sent_at };
                } else {
                    let held = world
                        .record
                        .as_ref()
                        .is_some_and(|r| r.is_held_by(&Self::attempt(world, index, fence)));
                    let fenced = held || !world.callers[index].faulted;
                    Self::step_effect(world, steps.done as usize, fenced);
                    Self::steps_of(world, index).stage = Stage::Ran;
                }
            }
        }
    }

    /// A plain step that ran sends its journal write.
    pub(crate) fn send_journal(&self, world: &mut World, index: usize) {
        let Phase::Running { fence, steps, .. } = &world.callers[index].phase else {
            unreachable!("a journal write outside the body")
        };
        let (fence, entry) = (*fence, Self::entry(steps.done));
        let attempt = Self::attempt(world, index, fence);
        let (seq, sent_at) = self.send(world, index, Op::Journal(attempt, entry));
        Self::steps_of(world, index).stage = Stage::Journaling { seq, sent_at };
    }

    /// The step failed (a store error, or a lease lost): the body returns its error.
    pub(crate) fn step_fails(&self, world: &mut World, index: usize, lost: bool) {
        if lost {
            // `Context::mark_lost`: the lease is lost, the engine knows it.
            let caller = &mut world.callers[index];
            caller.told_lost = true;
            if let Phase::Running { lost, .. } = &mut caller.phase {
                *lost = true;
            }
        }
        Self::steps_of(world, index).stage = Stage::Ready;
        self.body_ends(world, index, false);
    }

    /// The journal's read came back: the attempt works from the record's steps while it
    /// holds it ([`protocol::journal_of`]); otherwise its lease is lost.
    fn journal_read(
        &self,
        world: &mut World,
        index: usize,
        record: Option<std::sync::Arc<idem_core::store::Record>>,
    ) {
        let Phase::Running { fence, .. } = &world.callers[index].phase else {
            unreachable!()
        };
        let attempt = Self::attempt(world, index, *fence);
        match protocol::journal_of(record.as_deref(), &attempt) {
            Some(entries) => {
                let steps = Self::steps_of(world, index);
                steps.known = Some(entries.to_vec());
                steps.stage = Stage::Ready;
            }
            None => self.step_fails(world, index, true),
        }
    }

    /// The answer to the step's journal write (or its database transaction), read with
    /// [`protocol::after_journal`].
    fn journal_answer(&self, world: &mut World, index: usize, written: Written<()>) {
        let Phase::Running { fence, steps, .. } = &world.callers[index].phase else {
            unreachable!()
        };
        let entry = Self::entry(steps.done);
        let attempt = Self::attempt(world, index, *fence);
        if matches!(&written, Written::Refused(Some(r)) if r.shows_journal_by(&attempt, &entry)) {
            world.seen.reconciled = true;
        }
        match protocol::after_journal(written, &attempt, &entry) {
            JournalAnswer::Journaled => {
                let steps = Self::steps_of(world, index);
                let known = steps.known.get_or_insert_with(Vec::new);
                debug_assert_eq!(step_index(&entry.name), steps.done as usize);
                known.retain(|e| e.name != entry.name);
                known.push(entry);
                steps.done += 1;
                steps.stage = Stage::Ready;
            }
            JournalAnswer::LeaseLost { .. } => self.step_fails(world, index, true),
        }
    }
}
