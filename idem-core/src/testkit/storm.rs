//! A duplicate storm: many events, each delivered one to three times at once, bodies
//! that crash or fail at random, clocks moved past leases, store faults; then every
//! invariant of the guarantee checked per key.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::faults::{Chaos, Fault, FaultyStore};
use crate::store::{Outcome, Store};
use crate::{Call, Engine, EngineBuilder, Error, ManualClock};

/// The knobs of a storm.
#[derive(Debug, Clone)]
pub struct StormConfig {
    /// How many distinct events (keys).
    pub events: usize,
    /// The share of events delivered more than once (a third of those three times).
    pub duplicate_rate: f64,
    /// The share of body runs that crash (half before, half after the side effect).
    pub crash_rate: f64,
    /// The share of body runs that return an error (the key is released).
    pub error_rate: f64,
    /// The share of deliveries before which the clock jumps past the lease.
    pub clock_jump_rate: f64,
    /// The share of body runs that pause past their lease after the side effect (the
    /// clock jumps while the body blocks its thread, starving its heartbeats), as a
    /// process paused by the OS or a long GC would: duplicates may take over.
    pub zombie_rate: f64,
    /// The share of store calls that meet a fault.
    pub fault_rate: f64,
    /// A body takes a random time up to this (real time) around its side effect, so
    /// that clock jumps land while bodies run.
    pub max_body_time: Duration,
    /// How many deliveries run at once.
    pub concurrency: usize,
    /// The seed of every random choice.
    pub seed: u64,
}

impl Default for StormConfig {
    fn default() -> Self {
        StormConfig {
            events: 1000,
            duplicate_rate: 0.3,
            crash_rate: 0.05,
            error_rate: 0.05,
            clock_jump_rate: 0.02,
            zombie_rate: 0.02,
            fault_rate: 0.02,
            max_body_time: Duration::from_millis(2),
            concurrency: 32,
            seed: 7,
        }
    }
}

/// A simulated downstream API that creates one resource per idempotency token, and
/// counts every call, as a real API with idempotency keys would.
#[derive(Debug, Default)]
pub struct Downstream {
    next: AtomicU64,
    state: Mutex<DownstreamState>,
}

#[derive(Debug, Default)]
struct DownstreamState {
    /// token -> (event, resource)
    by_token: HashMap<String, (u64, u64)>,
    /// event -> calls, deduplicated or not
    calls: HashMap<u64, usize>,
}

impl Downstream {
    /// Creates the resource of `event`, or returns the one `token` created before.
    pub fn create(&self, event: u64, token: &str) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state.calls.entry(event).or_default() += 1;
        if let Some((_, resource)) = state.by_token.get(token) {
            return *resource;
        }
        let resource = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        state.by_token.insert(token.to_owned(), (event, resource));
        resource
    }
}

/// What happened to one event.
#[derive(Debug, Default, Clone)]
struct EventLog {
    deliveries: usize,
    body_runs: usize,
    aborted: usize,
    lease_lost: usize,
    released: usize,
    executed_ok: usize,
    ok_values: Vec<u64>,
    undocumented: Vec<String>,
}

/// Everything the deliveries saw.
#[derive(Debug, Default)]
struct Tally {
    events: Vec<EventLog>,
    errors: BTreeMap<&'static str, usize>,
}

/// The storm's outcome: counts, and every invariant that did not hold.
#[derive(Debug, Default)]
pub struct StormReport {
    /// Events, deliveries (with redeliveries), calls, body runs, ...
    pub counts: BTreeMap<&'static str, usize>,
    /// Errors callers got, by kind.
    pub errors: BTreeMap<&'static str, usize>,
    /// Each invariant checked, with how many keys it was checked on.
    pub checked: Vec<(&'static str, usize)>,
    /// Every violation, one line each. Empty when the guarantee held.
    pub violations: Vec<String>,
}

impl fmt::Display for StormReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, count) in &self.counts {
            writeln!(f, "{name:>28}: {count}")?;
        }
        for (kind, count) in &self.errors {
            writeln!(f, "{:>28}: {count}", format!("error {kind}"))?;
        }
        for (invariant, keys) in &self.checked {
            writeln!(f, "checked on {keys} keys: {invariant}")?;
        }
        match self.violations.len() {
            0 => writeln!(f, "every invariant held"),
            n => {
                writeln!(f, "{n} violations:")?;
                for violation in &self.violations {
                    writeln!(f, "  {violation}")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum StormError {
    Body,
    Idem(String),
}

impl From<Error> for StormError {
    fn from(error: Error) -> Self {
        StormError::Idem(kind(&error).to_owned())
    }
}

fn kind(error: &Error) -> &'static str {
    match error {
        Error::InProgress { .. } => "in_progress",
        Error::LeaseLost { .. } => "lease_lost",
        Error::Store { .. } => "store",
        Error::PayloadMismatch { .. } => "payload_mismatch",
        Error::ResultNotStored { .. } => "result_not_stored",
        Error::Decode { .. } => "decode",
        Error::RecordedError { .. } => "recorded_error",
        Error::InvalidKey { .. } => "invalid_key",
        _ => "other",
    }
}

const NAMESPACE: &str = "storm::create";
const LEASE: Duration = Duration::from_secs(30);
/// A delivery is given up after this many tries (the queue's redrive limit).
const MAX_TRIES: usize = 40;

/// Runs a storm against `store` (faults from `config` switched on), with a manual
/// clock, and checks every invariant. Needs a multi-threaded runtime.
pub async fn storm<S: Store>(store: Arc<FaultyStore<S>>, config: StormConfig) -> StormReport {
    let clock = ManualClock::default();
    let engine = EngineBuilder::from_arc(store.clone())
        .clock(clock.clone())
        .lease(LEASE)
        .ttl(Duration::from_secs(7 * 24 * 3600))
        .store_timeout(Duration::from_secs(5))
        .build()
        .expect("valid storm settings");
    store.set_chaos(Some(Chaos {
        seed: config.seed,
        fault_rate: config.fault_rate,
        faults: vec![
            Fault::Transient,
            Fault::Permanent,
            Fault::LostResponse,
            Fault::Resent,
        ],
        max_latency: Duration::from_micros(200),
    }));
    let downstream = Arc::new(Downstream::default());
    let tally = Arc::new(Mutex::new(Tally {
        events: vec![EventLog::default(); config.events],
        errors: BTreeMap::new(),
    }));
    let mut rng = fastrand::Rng::with_seed(config.seed);

    // Copies of an event are queued side by side, so they run at the same time.
    let mut queue: VecDeque<(u64, usize)> = VecDeque::new();
    let mut order: Vec<u64> = (0..config.events as u64).collect();
    rng.shuffle(&mut order);
    let mut deliveries = 0;
    for event in order {
        let copies = if rng.f64() < config.duplicate_rate {
            if rng.u8(..3) == 0 {
                3
            } else {
                2
            }
        } else {
            1
        };
        for _ in 0..copies {
            queue.push_back((event, 1));
            deliveries += 1;
        }
    }

    let mut given_up = 0;
    let mut rounds = 0;
    while !queue.is_empty() {
        rounds += 1;
        let round: Vec<(u64, usize)> = queue.drain(..).collect();
        let mut requeue = Vec::new();
        for chunk in round.chunks(config.concurrency.max(1)) {
            let mut tasks = Vec::new();
            for &(event, tries) in chunk {
                if rng.f64() < config.clock_jump_rate {
                    clock.advance(LEASE + Duration::from_secs(1));
                }
                let attempt_seed = rng.u64(..);
                // A delivery told "in progress" is retried a few times at once, as a
                // consumer with a short visibility timeout would, before going back
                // to the queue: duplicates then arrive while other attempts run.
                let (engine, clock, downstream, tally, config) = (
                    engine.clone(),
                    clock.clone(),
                    downstream.clone(),
                    tally.clone(),
                    config.clone(),
                );
                let delivery = async move {
                    for retry in 0..3 {
                        let seed = attempt_seed.wrapping_add(retry);
                        let delivered =
                            deliver(&engine, &clock, &downstream, &tally, event, seed, &config);
                        match delivered.await {
                            Delivered::InProgress => {
                                tokio::time::sleep(Duration::from_millis(1)).await
                            }
                            other => return other == Delivered::Done,
                        }
                    }
                    false
                };
                tasks.push((event, tries, tokio::spawn(delivery)));
            }
            for (event, tries, task) in tasks {
                let done = task.await.expect("a delivery never panics");
                if !done && tries < MAX_TRIES {
                    requeue.push((event, tries + 1));
                } else if tries >= MAX_TRIES {
                    given_up += 1;
                }
            }
        }
        // Like a queue's visibility timeout: redeliveries come after the leases of
        // crashed attempts have lapsed.
        clock.advance(LEASE + Duration::from_secs(1));
        queue.extend(requeue);
    }
    store.set_chaos(None);

    let tally = std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()));
    let mut report = check(&engine, &store, &downstream, &tally.events).await;
    report.errors = tally.errors;
    report.counts.insert("deliveries (first)", deliveries);
    report.counts.insert("redelivery rounds", rounds);
    report.counts.insert("deliveries given up", given_up);
    report
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivered {
    /// The call returned `Ok`.
    Done,
    /// The call returned [`Error::InProgress`].
    InProgress,
    /// Anything else: the event goes back to the queue.
    Failed,
}

/// One delivery of `event`: spawns the call, aborts it if its body crashes.
fn deliver(
    engine: &Engine,
    clock: &ManualClock,
    downstream: &Arc<Downstream>,
    tally: &Arc<Mutex<Tally>>,
    event: u64,
    seed: u64,
    config: &StormConfig,
) -> impl std::future::Future<Output = Delivered> + Send + 'static {
    let (engine, downstream, tally) = (engine.clone(), downstream.clone(), tally.clone());
    let clock = clock.clone();
    let (crash_rate, error_rate, zombie_rate) =
        (config.crash_rate, config.error_rate, config.zombie_rate);
    let max_body_time = config.max_body_time.as_micros() as u64;
    async move {
        let (crashed_tx, crashed_rx) = tokio::sync::oneshot::channel::<()>();
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let body_tally = tally.clone();
        let body_ran = ran.clone();
        let call = tokio::spawn(async move {
            Call::new(NAMESPACE, &event)
                .engine(&engine)
                .run(|ctx| async move {
                    body_ran.store(true, Ordering::SeqCst);
                    body_tally.lock().unwrap_or_else(|e| e.into_inner()).events[event as usize]
                        .body_runs += 1;
                    let mut rng = fastrand::Rng::with_seed(seed);
                    let crash = rng.f64() < crash_rate;
                    let crash_before = crash && rng.bool();
                    let fails = rng.f64() < error_rate;
                    let zombie = rng.f64() < zombie_rate;
                    let mut pause = move || {
                        let micros = rng.u64(..=max_body_time);
                        tokio::time::sleep(Duration::from_micros(micros))
                    };
                    pause().await;
                    if crash_before {
                        let _ = crashed_tx.send(());
                        return std::future::pending().await;
                    }
                    let resource = downstream.create(event, ctx.token());
                    if zombie {
                        // Paused past the lease, blocking the thread: no heartbeat runs.
                        clock.advance(LEASE + Duration::from_secs(1));
                        std::thread::sleep(Duration::from_millis(3));
                    }
                    pause().await;
                    if crash {
                        let _ = crashed_tx.send(());
                        return std::future::pending().await;
                    }
                    if fails {
                        return Err(StormError::Body);
                    }
                    // The value names the attempt that made it, so a record written by a
                    // stale attempt would show.
                    Ok::<_, StormError>((resource, ctx.fence()))
                })
                .await
        });
        let abort = call.abort_handle();
        let crashed = async {
            if crashed_rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let result = tokio::select! {
            joined = call => Some(joined),
            () = crashed => { abort.abort(); None }
        };
        let mut tally = tally.lock().unwrap_or_else(|e| e.into_inner());
        let tally = &mut *tally;
        let log = &mut tally.events[event as usize];
        log.deliveries += 1;
        match result {
            None => {
                log.aborted += 1;
                Delivered::Failed
            }
            Some(Err(join)) => {
                log.undocumented
                    .push(format!("the call's task failed: {join}"));
                Delivered::Failed
            }
            Some(Ok(Ok((value, _fence)))) => {
                if ran.load(Ordering::SeqCst) {
                    log.executed_ok += 1;
                }
                log.ok_values.push(value);
                Delivered::Done
            }
            Some(Ok(Err(StormError::Body))) => {
                log.released += 1;
                Delivered::Failed
            }
            Some(Ok(Err(StormError::Idem(kind)))) => {
                let kind = match kind.as_str() {
                    "lease_lost" => {
                        log.lease_lost += 1;
                        "lease_lost"
                    }
                    "in_progress" => "in_progress",
                    "store" => "store",
                    other => {
                        log.undocumented
                            .push(format!("undocumented error `{other}`"));
                        "undocumented"
                    }
                };
                *tally.errors.entry(kind).or_default() += 1;
                if kind == "in_progress" {
                    Delivered::InProgress
                } else {
                    Delivered::Failed
                }
            }
        }
    }
}

/// Checks every invariant per event.
async fn check<S: Store>(
    engine: &Engine,
    store: &FaultyStore<S>,
    downstream: &Downstream,
    logs: &[EventLog],
) -> StormReport {
    let mut report = StormReport::default();
    let (by_token, calls) = {
        let state = downstream.state.lock().unwrap_or_else(|e| e.into_inner());
        (state.by_token.clone(), state.calls.clone())
    };
    let mut resources: HashMap<u64, HashSet<u64>> = HashMap::new();
    for (event, resource) in by_token.values() {
        resources.entry(*event).or_default().insert(*resource);
    }
    let (mut served, mut recorded) = (0, 0);
    for (event, log) in logs.iter().enumerate() {
        let event = event as u64;
        let id = engine.record_id(NAMESPACE, &event).expect("a valid key");
        let mut violate = |what: String| report.violations.push(format!("event {event}: {what}"));
        for what in &log.undocumented {
            violate(what.clone());
        }
        let applied = store.applied_completions(&id);
        recorded += applied.min(1);
        if applied > 1 {
            violate(format!("{applied} completions were recorded"));
        }
        let made = resources.get(&event).map_or(0, HashSet::len);
        if made > 1 {
            violate(format!("the downstream resource was created {made} times"));
        }
        if !log.ok_values.is_empty() {
            served += 1;
            if made != 1 {
                violate("a call returned Ok but no downstream resource exists".into());
            }
            let resource = resources.get(&event).and_then(|r| r.iter().next().copied());
            if log.ok_values.iter().any(|v| Some(*v) != resource) {
                violate(format!(
                    "callers got {:?}, the resource is {resource:?}",
                    log.ok_values
                ));
            }
            match store.inner().read(&id).await {
                Ok(Some(record)) if record.outcome == Some(Outcome::Ok) => {
                    let value: Option<(u64, u64)> = record
                        .data
                        .as_deref()
                        .and_then(|d| serde_json::from_str(d).ok());
                    match value {
                        Some((held, fence)) if Some(held) == resource && fence == record.fence => {}
                        other => violate(format!(
                            "the record (fence {}) holds {other:?}: not the resource {resource:?} made \
                             by the attempt that holds the record",
                            record.fence
                        )),
                    }
                }
                Ok(_) => {}
                Err(error) => violate(format!("the record cannot be read: {error}")),
            }
        }
        let unrecorded = log.executed_ok.saturating_sub(applied.min(1));
        let not_recording = log.aborted + log.lease_lost + log.released + unrecorded;
        if log.body_runs > 1 + not_recording {
            violate(format!(
                "the body ran {} times, more than 1 + {not_recording} attempts that recorded nothing",
                log.body_runs
            ));
        }
        let calls = calls.get(&event).copied().unwrap_or(0);
        if calls > 1 + not_recording {
            violate(format!(
                "the downstream API was called {calls} times, more than 1 + {not_recording} attempts that recorded nothing"
            ));
        }
    }
    let sum = |f: fn(&EventLog) -> usize| logs.iter().map(f).sum::<usize>();
    let total_runs = sum(|l| l.body_runs);
    report.counts = BTreeMap::from([
        ("events", logs.len()),
        ("deliveries (with redelivery)", sum(|l| l.deliveries)),
        ("events served (some Ok)", served),
        ("body runs", total_runs),
        ("extra body runs", total_runs.saturating_sub(served)),
        ("bodies aborted (crash)", sum(|l| l.aborted)),
        ("bodies failed (released)", sum(|l| l.released)),
        ("lease lost", sum(|l| l.lease_lost)),
        ("completions recorded", recorded),
        ("downstream calls", calls.values().sum()),
        ("downstream resources", by_token.len()),
    ]);
    let keys = logs.len();
    report.checked = vec![
        ("at most one completion recorded per key", keys),
        ("every Ok equals the key's one downstream resource and its record", served),
        ("the record holds the value of the attempt with the record's fence", served),
        ("the downstream resource exists at most once, exactly once where a call returned Ok", keys),
        ("body runs <= 1 + attempts that recorded nothing (aborted, lease lost, released, unrecorded)", keys),
        ("downstream calls (as if made without the token) obey the same bound", keys),
        ("every error is documented (in progress, lease lost, store, the body's own)", keys),
    ];
    report
}
