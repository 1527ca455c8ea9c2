//! How far the checker explores: the [`Bounds`], and the scenarios of the [`suite`] CI
//! runs.

use idem_core::protocol::Terms;

use crate::TICK_MS;

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
    /// The transaction holds the key itself (PostgreSQL's lock-held form,
    /// `docs/protocol.md` §3.6; implies `transactional`): it is opened first and takes
    /// the key with a hold, whose row lock is the lease until the transaction commits,
    /// rolls back or its session ends. No clock lease, no heartbeat.
    pub lock_held: bool,
    /// Sessions the database server ends in all, each a paused holder's
    /// (`idle_in_transaction_session_timeout`): its transaction is rolled back, and its
    /// statements fail once it resumes. Only with `lock_held`.
    pub kills: u8,
    /// Steps in every body (`Context::step`), run in order before it ends with `Ok`
    /// (it may end with `Err` between two): each reads the journal once per attempt
    /// (not with fence 1), runs unless its entry is finished (`protocol::step_plan`),
    /// and journals its result under the attempt's fence. With `transactional`, they
    /// are database steps (`Context::transaction_step`): the step's effect and its
    /// journal entry commit together, or neither. Not with `lock_held` (refused there).
    /// 0: no steps, the model without them.
    pub steps: u8,
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
            lock_held: false,
            kills: 0,
            steps: 0,
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
                "lock_held" => match number {
                    0 | 1 => self.lock_held = number == 1,
                    _ => return Err("lock_held is 0 or 1".to_owned()),
                },
                "kills" => self.kills = small()?,
                "steps" => match number {
                    0..=7 => self.steps = number as u8,
                    _ => return Err("steps is at most 7".to_owned()),
                },
                other => return Err(format!("unknown bound `{other}`")),
            }
        }
        // The lock-held form is a transactional form.
        self.transactional |= self.lock_held;
        if self.lock_held && self.steps > 0 {
            return Err(
                "steps are refused in the lock-held form: no steps with lock_held".to_owned(),
            );
        }
        Ok(self)
    }

    /// The margin of `docs/protocol.md` §1.1, in ticks: `lease - lease / 3 - one round
    /// trip`. Clocks must differ by less than this.
    pub fn margin_ticks(&self) -> u64 {
        self.lease_ticks - self.lease_ticks / 3 - self.latency_ticks
    }

    pub(crate) fn terms(&self) -> Terms {
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
        // Steps (one per body: two, or a horizon of 7 ticks, multiply the states by
        // three to five). With no fault, requests that wait already let a stale
        // attempt journal late.
        (
            "one step, a crash (between the step and its journal write, among others)",
            "steps=1,crashes=1,horizon_ticks=5",
        ),
        (
            "one step, a pause (a zombie journaling late)",
            "steps=1,pauses=1,horizon_ticks=6",
        ),
        (
            "one step, a lost message and a resent request (a lost journal answer)",
            "steps=1,losses=1,resends=1,horizon_ticks=6",
        ),
        (
            "one database step, in a transaction, a crash",
            "transactional=1,steps=1,crashes=1,horizon_ticks=5",
        ),
        // PostgreSQL's lock-held form. No redelivery: with one per caller, a lost
        // message alone explores for more than five minutes.
        ("held by the transaction, no fault", "lock_held=1"),
        ("held by the transaction, a crash", "lock_held=1,crashes=1"),
        (
            "held by the transaction, a pause, its session ended by the server",
            "lock_held=1,pauses=1,kills=1",
        ),
        (
            "held by the transaction, a lost message",
            "lock_held=1,losses=1",
        ),
        (
            "held by the transaction, a late answer and a resent request",
            "lock_held=1,delays=1,resends=1",
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
