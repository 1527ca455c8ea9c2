//! The model itself: [`Protocol`], its initial worlds, the steps each world enables
//! and the world each step leads to.

use stateright::{Model, Property};

use crate::{
    Action, Bounds, Caller, End, Faults, Message, Op, Payload, Phase, Seen, Stage, Variant, World,
    TICK_MS,
};

/// The model: bounds and a variant.
#[derive(Clone, Debug)]
pub struct Protocol {
    /// How far to explore.
    pub bounds: Bounds,
    /// Which rules (the code's, or a faulty variant).
    pub variant: Variant,
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
                sequence: 0,
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
                    kills: b.kills,
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
                Payload::Request(op, _)
                    if world.pending.is_some()
                        && op.writes_the_record()
                        && !self.applies_while_locked(op) => {}
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
                Phase::Running {
                    ended: None, steps, ..
                } => match steps.stage {
                    // The body ends between two steps: with `Ok` once all ran.
                    Stage::Ready => {
                        if steps.done < b.steps {
                            actions.push(Action::Step(i));
                        } else {
                            actions.push(Action::BodyEnds(i, true));
                        }
                        actions.push(Action::BodyEnds(i, false));
                    }
                    Stage::Ran => actions.push(Action::Journal(i)),
                    Stage::Reading { .. } | Stage::Journaling { .. } => {}
                },
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
            if let Some((_, sent_at)) = caller.step_awaiting() {
                if world.now >= sent_at + b.timeout_ticks {
                    actions.push(Action::GiveUpStep(i));
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
        if world.pending.is_some() && !self.transaction_is_alive(world) {
            actions.push(Action::Abort);
        }
        // The server ends a paused holder's session (the lock-held form).
        if let Some((index, generation, _)) = &world.pending {
            let holder = &world.callers[*index];
            if world.faults.kills > 0 && holder.paused && holder.generation == *generation {
                actions.push(Action::Kill(*index));
            }
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
                    steps,
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
                    steps,
                };
            }
            Action::BodyEnds(i, ok) => self.body_ends(&mut world, i, ok),
            Action::Step(i) => self.step(&mut world, i),
            Action::Journal(i) => self.send_journal(&mut world, i),
            Action::GiveUpStep(i) => {
                world.callers[i].faulted = true;
                self.step_fails(&mut world, i, false);
            }
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
                // The journal goes with the record: a new lifetime for the steps.
                Self::steps_lifetime_ends(&mut world);
                // Fences restart after a deletion (`docs/protocol.md` §1).
                world.seen.last_fence = 0;
                if world.seen.completed.take().is_some() {
                    world.seen.runs.clear();
                    world.seen.effects = 0;
                }
            }
            Action::Abort => {
                if let Some((index, generation, _)) = world.pending.take() {
                    // A crashed holder's session ended: its transaction is rolled back.
                    if self.bounds.lock_held && world.callers[index].generation != generation {
                        world
                            .seen
                            .ended
                            .push(crate::state::owner_of(index, generation));
                    }
                }
            }
            Action::Kill(index) => {
                world.faults.kills -= 1;
                world.seen.killed = Some((index, world.callers[index].generation));
                world.pending = None;
            }
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
        crate::properties::properties()
    }
}
