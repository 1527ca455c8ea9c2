//! A duplicate storm: many events, each delivered one to three times at once, bodies
//! that crash or fail at random, clocks moved past leases, store faults; then every
//! invariant of the guarantee checked per key.

mod check;
mod config;
mod deliver;
mod downstream;
mod report;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::faults::{Chaos, Fault, FaultyStore};
use crate::store::Store;
use crate::{EngineBuilder, ManualClock};
use check::check;
use deliver::{deliver, Delivered, EventLog, Tally};

pub use config::StormConfig;
pub use downstream::Downstream;
pub use report::StormReport;

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
