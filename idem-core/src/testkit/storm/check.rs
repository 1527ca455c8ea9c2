//! The storm's invariants, checked per event.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Downstream, EventLog, StormReport, NAMESPACE};
use crate::store::{Outcome, Store};
use crate::testkit::faults::FaultyStore;
use crate::Engine;

/// Checks every invariant per event.
pub(super) async fn check<S: Store>(
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
                        .and_then(|d| serde_json::from_slice(d).ok());
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
