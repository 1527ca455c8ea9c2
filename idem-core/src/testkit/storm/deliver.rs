//! One delivery of an event, and what the deliveries saw.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Downstream, StormConfig, LEASE, NAMESPACE};
use crate::{Call, Engine, Error, ManualClock};

/// What happened to one event.
#[derive(Debug, Default, Clone)]
pub(super) struct EventLog {
    pub(super) deliveries: usize,
    pub(super) body_runs: usize,
    pub(super) aborted: usize,
    pub(super) lease_lost: usize,
    pub(super) released: usize,
    pub(super) executed_ok: usize,
    pub(super) ok_values: Vec<u64>,
    pub(super) undocumented: Vec<String>,
}

/// Everything the deliveries saw.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) events: Vec<EventLog>,
    pub(super) errors: BTreeMap<&'static str, usize>,
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

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivered {
    /// The call returned `Ok`.
    Done,
    /// The call returned [`Error::InProgress`].
    InProgress,
    /// Anything else: the event goes back to the queue.
    Failed,
}

/// One delivery of `event`: spawns the call, aborts it if its body crashes.
pub(super) fn deliver(
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
