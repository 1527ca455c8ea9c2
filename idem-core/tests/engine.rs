//! Every outcome of a guarded call (docs/protocol.md, section 4), on the in-memory store with a
//! manual clock, and with faults injected where the store must misbehave.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use idem_core::store::{Codec, Limits, Outcome, Record, State};
use idem_core::testkit::{Fault, FaultyStore, Operation};
use idem_core::{
    Call, Clock, Context, Engine, EngineBuilder, Error, ManualClock, MemoryStore, Store,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

const LEASE: Duration = Duration::from_secs(30);
const NS: &str = "tests::engine";

type Faulty = Arc<FaultyStore<MemoryStore>>;

fn faulty() -> Faulty {
    Arc::new(FaultyStore::new(MemoryStore::new()))
}

fn engine_on(store: &Faulty, clock: &ManualClock) -> Engine {
    EngineBuilder::from_arc(store.clone())
        .clock(clock.clone())
        .lease(LEASE)
        .ttl(Duration::from_secs(3600))
        .store_timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

fn setup() -> (Faulty, ManualClock, Engine) {
    let store = faulty();
    let clock = ManualClock::default();
    let engine = engine_on(&store, &clock);
    (store, clock, engine)
}

/// [`setup`] over a store that records values of at most 16 bytes.
fn setup_recording_at_most_16_bytes() -> (Faulty, ManualClock, Engine) {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()).with_limits(Limits {
        max_id_bytes: 2048,
        max_data_bytes: 16,
    }));
    let clock = ManualClock::default();
    let engine = engine_on(&store, &clock);
    (store, clock, engine)
}

async fn stored(store: &Faulty, engine: &Engine, key: &str) -> Option<Record> {
    let id = engine.record_id(NS, key).unwrap();
    store
        .inner()
        .read(&id)
        .await
        .unwrap()
        .map(Arc::unwrap_or_clone)
}

/// A body that counts its runs and returns `value`.
async fn counted(runs: &AtomicUsize, value: &str) -> Result<String, Error> {
    runs.fetch_add(1, Ordering::SeqCst);
    Ok(value.to_owned())
}

fn call(engine: &Engine, key: &str) -> Call {
    Call::new(NS, key).engine(engine)
}

#[tokio::test]
async fn first_call_executes_and_duplicates_replay() {
    let (store, _clock, engine) = setup();
    let runs = AtomicUsize::new(0);
    let first = call(&engine, "k")
        .run(|_| counted(&runs, "v1"))
        .await
        .unwrap();
    let second = call(&engine, "k")
        .run(|_| counted(&runs, "v2"))
        .await
        .unwrap();
    assert_eq!((first.as_str(), second.as_str()), ("v1", "v1"));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let record = stored(&store, &engine, "k").await.unwrap();
    assert_eq!(record.state, State::Completed);
    assert_eq!(record.outcome, Some(Outcome::Ok));
    assert_eq!(record.data.as_deref(), Some(&b"\"v1\""[..]));
    // Replays cost one store call: the refused begin.
    assert_eq!(store.calls(Operation::Begin), 2);
    assert_eq!(store.calls(Operation::Complete), 1);
}

#[tokio::test]
async fn other_keys_and_namespaces_run_their_own_body() {
    let (_store, _clock, engine) = setup();
    let runs = AtomicUsize::new(0);
    call(&engine, "a")
        .run(|_| counted(&runs, "a"))
        .await
        .unwrap();
    call(&engine, "b")
        .run(|_| counted(&runs, "b"))
        .await
        .unwrap();
    Call::new("tests::other", "a")
        .engine(&engine)
        .run(|_| counted(&runs, "c"))
        .await
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn record_expires_after_ttl_counted_from_completion() {
    let (_store, clock, engine) = setup();
    let runs = AtomicUsize::new(0);
    clock.advance(Duration::from_millis(400));
    call(&engine, "k")
        .run(|_| counted(&runs, "v"))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(3599));
    call(&engine, "k")
        .run(|_| counted(&runs, "v"))
        .await
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1, "still within the ttl");
    // Expiry is rounded up to a whole second: a second more than the ttl crosses it.
    clock.advance(Duration::from_secs(2));
    call(&engine, "k")
        .run(|_| counted(&runs, "v"))
        .await
        .unwrap();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "expired: the body runs again"
    );
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum PayError {
    Declined { code: String },
    Timeout,
    Idem(String),
}

impl From<Error> for PayError {
    fn from(error: Error) -> Self {
        PayError::Idem(error.to_string())
    }
}

fn is_declined(error: &PayError) -> bool {
    matches!(error, PayError::Declined { .. })
}

#[tokio::test]
async fn errors_release_the_key_so_a_retry_runs_again() {
    let (store, _clock, engine) = setup();
    let runs = AtomicUsize::new(0);
    let failed: Result<String, PayError> = call(&engine, "k")
        .run(|_| async {
            runs.fetch_add(1, Ordering::SeqCst);
            Err(PayError::Timeout)
        })
        .await;
    assert_eq!(failed, Err(PayError::Timeout));
    let record = stored(&store, &engine, "k").await.unwrap();
    assert_eq!(record.lease_until_ms, 0, "released");
    let runs = &runs;
    let retried: Result<String, PayError> = call(&engine, "k")
        .run(|ctx| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            assert_eq!(ctx.fence(), 2, "the retry holds a higher fence");
            Ok("paid".to_owned())
        })
        .await;
    assert_eq!(retried.unwrap(), "paid");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn chosen_errors_are_recorded_and_replayed() {
    let (store, _clock, engine) = setup();
    let runs = AtomicUsize::new(0);
    let declined = || async {
        runs.fetch_add(1, Ordering::SeqCst);
        Err::<String, _>(PayError::Declined {
            code: "insufficient_funds".into(),
        })
    };
    let first = call(&engine, "k")
        .replay_errors(is_declined)
        .run(|_| declined())
        .await;
    let second = call(&engine, "k")
        .replay_errors(is_declined)
        .run(|_| declined())
        .await;
    let expected = PayError::Declined {
        code: "insufficient_funds".into(),
    };
    assert_eq!(first, Err(expected));
    assert_eq!(
        second,
        Err(PayError::Declined {
            code: "insufficient_funds".into()
        })
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        stored(&store, &engine, "k").await.unwrap().outcome,
        Some(Outcome::Err)
    );

    // A call without replay_errors still gets the recorded error: the record is the truth.
    let plain: Result<String, Error> = call(&engine, "k").run(|_| counted(&runs, "x")).await;
    match plain {
        Err(Error::RecordedError { data, .. }) => {
            assert_eq!(data, r#"{"Declined":{"code":"insufficient_funds"}}"#)
        }
        other => panic!("expected the recorded error, got {other:?}"),
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // An error the predicate does not choose releases the key.
    let timeout = call(&engine, "other")
        .replay_errors(is_declined)
        .run(|_| async { Err::<String, _>(PayError::Timeout) })
        .await;
    assert_eq!(timeout, Err(PayError::Timeout));
    let again = call(&engine, "other").run(|_| counted(&runs, "ok")).await;
    assert_eq!(again.unwrap(), "ok");
}

#[tokio::test]
async fn panics_release_the_key_and_resume() {
    let (store, _clock, engine) = setup();
    let task_engine = engine.clone();
    let panicked = tokio::spawn(async move {
        call(&task_engine, "k")
            .run(|_| async {
                if true {
                    panic!("the body panicked");
                }
                Ok::<String, Error>("unreachable".into())
            })
            .await
    })
    .await;
    assert!(panicked.unwrap_err().is_panic(), "the panic resumes");
    assert_eq!(
        stored(&store, &engine, "k").await.unwrap().lease_until_ms,
        0,
        "released"
    );
    let runs = AtomicUsize::new(0);
    call(&engine, "k")
        .run(|_| counted(&runs, "v"))
        .await
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_panic_in_the_closure_before_its_future_also_releases() {
    let (store, _clock, engine) = setup();
    let task_engine = engine.clone();
    let panicked = tokio::spawn(async move {
        call(&task_engine, "closure")
            .run(|_| -> std::future::Ready<Result<u8, Error>> { panic!("before the future") })
            .await
    })
    .await;
    assert!(panicked.unwrap_err().is_panic());
    assert_eq!(
        stored(&store, &engine, "closure")
            .await
            .unwrap()
            .lease_until_ms,
        0,
        "released"
    );
}

#[tokio::test]
async fn payload_mismatch_in_both_states() {
    let (_store, _clock, engine) = setup();
    let gate = Arc::new(Notify::new());
    let holder = {
        let (engine, gate) = (engine.clone(), gate.clone());
        tokio::spawn(async move {
            call(&engine, "k")
                .fingerprint(&("charge", 500))
                .run(|_| async move {
                    gate.notified().await;
                    Ok::<_, Error>(1u32)
                })
                .await
        })
    };
    tokio::task::yield_now().await;
    let in_progress = call(&engine, "k")
        .fingerprint(&("charge", 900))
        .run(|_| async { Ok::<_, Error>(2u32) })
        .await;
    assert!(
        matches!(in_progress, Err(Error::PayloadMismatch { .. })),
        "{in_progress:?}"
    );
    gate.notify_one();
    assert_eq!(holder.await.unwrap().unwrap(), 1);
    let completed = call(&engine, "k")
        .fingerprint(&("charge", 900))
        .run(|_| async { Ok::<_, Error>(3u32) })
        .await;
    assert!(
        matches!(completed, Err(Error::PayloadMismatch { .. })),
        "{completed:?}"
    );
    // Same payload, or no fingerprint on this call: a replay.
    let same = call(&engine, "k")
        .fingerprint(&("charge", 500))
        .run(|_| async { Ok::<_, Error>(4u32) });
    assert_eq!(same.await.unwrap(), 1);
    assert_eq!(
        call(&engine, "k")
            .run(|_| async { Ok::<_, Error>(5u32) })
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn in_progress_without_wait_is_an_error_and_with_wait_replays() {
    let (_store, clock, engine) = setup();
    let gate = Arc::new(Notify::new());
    let holder = {
        let (engine, gate) = (engine.clone(), gate.clone());
        tokio::spawn(async move {
            call(&engine, "k")
                .run(|_| async move {
                    gate.notified().await;
                    Ok::<_, Error>("done".to_owned())
                })
                .await
        })
    };
    tokio::task::yield_now().await;
    let busy = call(&engine, "k")
        .run(|_| async { Ok::<_, Error>("dup".to_owned()) })
        .await;
    match &busy {
        Err(
            error @ Error::InProgress {
                lease_until_ms: Some(until),
                ..
            },
        ) => {
            assert!(error.is_retryable());
            // The holder's lease end: its begin's clock reading plus the lease.
            assert_eq!(*until, clock.now_ms() + LEASE.as_millis() as u64);
        }
        other => panic!("expected in progress, got {other:?}"),
    }
    let waiter = {
        let engine = engine.clone();
        tokio::spawn(async move {
            call(&engine, "k")
                .wait(Duration::from_secs(10))
                .run(|_| async { Ok::<_, Error>("dup".to_owned()) })
                .await
        })
    };
    tokio::task::yield_now().await;
    gate.notify_one();
    assert_eq!(holder.await.unwrap().unwrap(), "done");
    // The waiter sleeps on the engine's clock between polls.
    for _ in 0..5 {
        clock.advance(Duration::from_secs(1));
        tokio::task::yield_now().await;
    }
    assert_eq!(waiter.await.unwrap().unwrap(), "done");
}

#[tokio::test]
async fn wait_ends_with_in_progress_when_the_holder_keeps_the_key() {
    let (store, clock, engine) = setup();
    let _holder_gate = Arc::new(Notify::new());
    let holder = {
        let (engine, gate) = (engine.clone(), _holder_gate.clone());
        tokio::spawn(async move {
            call(&engine, "k")
                .run(|_| async move {
                    gate.notified().await;
                    Ok::<_, Error>(0u8)
                })
                .await
        })
    };
    tokio::task::yield_now().await;
    let waiter = {
        let engine = engine.clone();
        tokio::spawn(async move {
            call(&engine, "k")
                .wait(Duration::from_secs(3))
                .run(|_| async { Ok::<_, Error>(1u8) })
                .await
        })
    };
    for _ in 0..40 {
        tokio::task::yield_now().await;
        clock.advance(Duration::from_millis(250));
    }
    let result = waiter.await.unwrap();
    assert!(
        matches!(result, Err(Error::InProgress { .. })),
        "{result:?}"
    );
    assert!(
        store.calls(Operation::Begin) > 3,
        "the waiter polled with begin"
    );
    holder.abort();
}

#[tokio::test]
async fn a_waiter_takes_over_when_the_holder_vanishes() {
    let (_store, clock, engine) = setup();
    let holder = {
        let engine = engine.clone();
        tokio::spawn(async move {
            call(&engine, "k")
                .max_duration(Duration::from_millis(1))
                .run(|_| std::future::pending::<Result<u8, Error>>())
                .await
        })
    };
    tokio::task::yield_now().await;
    holder.abort(); // dropped mid-body: nothing written, the lease lapses
    let waiter = {
        let engine = engine.clone();
        tokio::spawn(async move {
            call(&engine, "k")
                .wait(Duration::from_secs(60))
                .run(|ctx| async move { Ok::<_, Error>(ctx.fence() as u8) })
                .await
        })
    };
    for _ in 0..80 {
        tokio::task::yield_now().await;
        clock.advance(Duration::from_millis(500));
    }
    assert_eq!(
        waiter.await.unwrap().unwrap(),
        2,
        "took over with the next fence"
    );
}

#[tokio::test]
async fn a_dropped_future_writes_nothing_and_the_lease_lapses() {
    let (store, clock, engine) = setup();
    let started = Arc::new(Notify::new());
    let holder = {
        let (engine, started) = (engine.clone(), started.clone());
        tokio::spawn(async move {
            call(&engine, "k")
                .run(|_| async move {
                    started.notify_one();
                    std::future::pending::<Result<u8, Error>>().await
                })
                .await
        })
    };
    started.notified().await;
    holder.abort();
    let _ = holder.await;
    assert_eq!(store.calls(Operation::Release), 0);
    assert_eq!(store.calls(Operation::Complete), 0);
    let busy = call(&engine, "k")
        .run(|_| async { Ok::<_, Error>(1u8) })
        .await;
    assert!(matches!(busy, Err(Error::InProgress { .. })), "{busy:?}");
    clock.advance(LEASE);
    let taken = call(&engine, "k")
        .run(|ctx| async move { Ok::<_, Error>(ctx.fence()) })
        .await;
    assert_eq!(taken.unwrap(), 2);
}

#[tokio::test]
async fn store_failing_before_the_body_is_an_error_and_the_body_never_runs() {
    let (store, _clock, engine) = setup();
    let runs = AtomicUsize::new(0);
    store.set_down(true);
    let down = call(&engine, "k").run(|_| counted(&runs, "v")).await;
    match down {
        Err(
            error @ Error::Store {
                operation: "begin", ..
            },
        ) => assert!(error.is_retryable()),
        other => panic!("expected a store error, got {other:?}"),
    }
    store.set_down(false);
    store.inject(Operation::Begin, Fault::Permanent);
    let permanent = call(&engine, "k").run(|_| counted(&runs, "v")).await;
    assert!(
        matches!(&permanent, Err(e @ Error::Store { .. }) if !e.is_retryable()),
        "{permanent:?}"
    );
    store.inject(Operation::Begin, Fault::Stall);
    let stalled = call(&engine, "k").run(|_| counted(&runs, "v")).await;
    assert!(
        matches!(&stalled, Err(Error::Store { source, .. }) if source.to_string().contains("did not answer")),
        "{stalled:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_failed_completion_returns_the_value_executed_but_not_recorded() {
    let (store, clock, engine) = setup();
    let runs = AtomicUsize::new(0);
    store.inject(Operation::Complete, Fault::Transient);
    let value = call(&engine, "k").run(|_| counted(&runs, "v")).await;
    assert_eq!(
        value.unwrap(),
        "v",
        "an error would invite a retry that repeats the side effect"
    );
    let sends = store.calls(Operation::Complete);
    assert!(
        (2..=50).contains(&sends),
        "sent again within the store timeout, then given up: {sends}"
    );
    let record = stored(&store, &engine, "k").await.unwrap();
    assert_eq!(
        record.state,
        State::InProgress,
        "not recorded; the lease lapses"
    );
    store.clear(Operation::Complete);
    clock.advance(LEASE);
    call(&engine, "k")
        .run(|_| counted(&runs, "v"))
        .await
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failed_release_still_returns_the_body_error() {
    let (store, _clock, engine) = setup();
    store.inject(Operation::Release, Fault::Transient);
    let result: Result<u8, PayError> = call(&engine, "k")
        .run(|_| async { Err(PayError::Timeout) })
        .await;
    assert_eq!(result, Err(PayError::Timeout));
    // Sent again within the store timeout, then given up on: the lease will lapse.
    let sends = store.calls(Operation::Release);
    assert!((2..=50).contains(&sends), "{sends} releases sent");
}

/// Resends end with the call's TTL when it is shorter than the store timeout: a first
/// send that was applied and then expired would make a resend's refusal look like a
/// lost lease.
#[tokio::test]
async fn resends_stop_within_the_ttl_when_it_is_shorter_than_the_store_timeout() {
    let store = faulty();
    let engine = EngineBuilder::from_arc(store.clone())
        .lease(Duration::from_secs(10))
        .ttl(Duration::from_secs(1))
        .store_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    store.inject(Operation::Complete, Fault::Transient);
    let runs = AtomicUsize::new(0);
    let report = call(&engine, "short-ttl")
        .run_reported(|_| counted(&runs, "v"))
        .await
        .unwrap();
    assert_eq!(report.source, idem_core::Source::RanNotRecorded);
    // Pauses of 10 ms doubling to 200 ms: 8 or 9 sends fit in 1 s, about 28 in 5 s.
    let sends = store.calls(Operation::Complete);
    assert!((2..=12).contains(&sends), "{sends} completions sent");
}

/// A completion or a release that meets a transient error is sent again within the
/// store timeout, so one dropped connection is not `RanNotRecorded` (or a key held for
/// the whole lease). A resend whose first send was applied (its answer lost) is
/// recognised by its own write.
#[tokio::test]
async fn a_completion_or_release_that_failed_once_is_sent_again() {
    let (store, _clock, engine) = setup();
    let runs = AtomicUsize::new(0);
    for (key, fault) in [("lost", Fault::Transient), ("applied", Fault::LostResponse)] {
        let before = store.calls(Operation::Complete);
        store.inject_times(Operation::Complete, fault, 1);
        let report = call(&engine, key)
            .run_reported(|_| counted(&runs, "v"))
            .await
            .unwrap();
        assert_eq!(report.source, idem_core::Source::Ran, "{fault:?}");
        assert_eq!(store.calls(Operation::Complete) - before, 2, "{fault:?}");
        let record = stored(&store, &engine, key).await.unwrap();
        assert_eq!(record.state, State::Completed, "{fault:?}");
        let again = call(&engine, key).run(|_| counted(&runs, "again")).await;
        assert_eq!(again.unwrap(), "v", "{fault:?}: replayed");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    // A release resent: the key is free at once, and a retry runs the body.
    for (key, fault) in [
        ("r-lost", Fault::Transient),
        ("r-applied", Fault::LostResponse),
    ] {
        store.inject_times(Operation::Release, fault, 1);
        let failed: Result<String, PayError> = call(&engine, key)
            .run(|_| async { Err(PayError::Timeout) })
            .await;
        assert_eq!(failed, Err(PayError::Timeout), "{fault:?}");
        assert_eq!(
            stored(&store, &engine, key).await.unwrap().lease_until_ms,
            0,
            "{fault:?}: released"
        );
        let retried: Result<String, PayError> = call(&engine, key)
            .run(|_| async { Ok("retried".to_owned()) })
            .await;
        assert_eq!(retried.unwrap(), "retried", "{fault:?}");
    }
}

/// A stale attempt that returns `value` after its lease lapsed and another attempt
/// recorded "fresh": the stale attempt's error.
async fn completed_after_a_takeover(engine: &Engine, clock: &ManualClock, value: String) -> Error {
    let gate = Arc::new(Notify::new());
    let stale = {
        let (engine, gate) = (engine.clone(), gate.clone());
        tokio::spawn(async move {
            call(&engine, "k")
                .max_duration(Duration::from_millis(1)) // no heartbeat keeps it alive
                .run(|_| async move {
                    gate.notified().await;
                    Ok::<_, Error>(value)
                })
                .await
        })
    };
    tokio::task::yield_now().await;
    clock.advance(LEASE);
    let fresh = call(engine, "k")
        .run(|_| async { Ok::<_, Error>("fresh".to_owned()) })
        .await;
    assert_eq!(fresh.unwrap(), "fresh");
    gate.notify_one();
    let error = stale.await.unwrap().unwrap_err();
    assert!(matches!(error, Error::LeaseLost { .. }), "{error:?}");
    error
}

#[tokio::test]
async fn a_stale_attempt_gets_lease_lost_with_its_value_and_the_record_is_untouched() {
    let (store, clock, engine) = setup();
    let error = completed_after_a_takeover(&engine, &clock, "stale".to_owned()).await;
    assert_eq!(error.lost_value::<String>().unwrap().unwrap(), "stale");
    let record = stored(&store, &engine, "k").await.unwrap();
    assert_eq!(record.data.as_deref(), Some(&b"\"fresh\""[..]));
    assert_eq!(record.fence, 2);
}

#[tokio::test]
async fn a_stale_attempt_with_a_value_too_large_to_record_gets_lease_lost_with_its_value() {
    let (_store, clock, engine) = setup_recording_at_most_16_bytes();
    let big = "x".repeat(100);
    let error = completed_after_a_takeover(&engine, &clock, big.clone()).await;
    assert_eq!(error.lost_value::<String>().unwrap().unwrap(), big);
}

#[tokio::test]
async fn a_value_too_large_is_completed_as_not_stored() {
    let (store, _clock, engine) = setup_recording_at_most_16_bytes();
    let big = "x".repeat(100);
    let first = call(&engine, "k")
        .run(|_| async { Ok::<_, Error>(big.clone()) })
        .await;
    assert_eq!(first.unwrap(), big, "the first call gets its value");
    for wait in [None, Some(Duration::from_secs(5))] {
        let mut dup = call(&engine, "k");
        if let Some(wait) = wait {
            dup = dup.wait(wait);
        }
        let result = dup.run(|_| async { Ok::<_, Error>(String::new()) }).await;
        assert!(
            matches!(result, Err(Error::ResultNotStored { .. })),
            "{result:?}"
        );
    }
    assert_eq!(
        stored(&store, &engine, "k").await.unwrap().outcome,
        Some(Outcome::NotStored)
    );
}

#[tokio::test]
async fn undecodable_records_are_decode_errors_and_the_body_never_reruns() {
    let (store, _clock, engine) = setup();
    let runs = AtomicUsize::new(0);
    call(&engine, "k")
        .run(|_| counted(&runs, "text"))
        .await
        .unwrap();
    // The result type changed in a deploy.
    let changed = call(&engine, "k")
        .run(|_| async { Ok::<u64, Error>(7) })
        .await;
    match changed {
        Err(Error::Decode { namespace, .. }) => assert_eq!(namespace, NS),
        other => panic!("expected a decode error, got {other:?}"),
    }
    // A record written by a newer version, and a corrupt one.
    let mut record = stored(&store, &engine, "k").await.unwrap();
    for (format, codec, data) in [
        (2, "json", "\"text\""),
        (1, "cbor", "\"text\""),
        (1, "json", "{not json"),
    ] {
        record.format = format;
        record.codec = Codec::from_stored(codec);
        record.data = Some(Bytes::from_static(data.as_bytes()));
        store.inner().put_raw(record.clone());
        let result = call(&engine, "k").run(|_| counted(&runs, "again")).await;
        assert!(
            matches!(result, Err(Error::Decode { .. })),
            "{format} {codec}: {result:?}"
        );
    }
    // A record the store cannot decode at all (an unknown state value).
    store.inject_times(Operation::Begin, Fault::Malformed, 1);
    let result = call(&engine, "k").run(|_| counted(&runs, "again")).await;
    match result {
        Err(Error::Decode { reason, .. }) => assert!(reason.contains("PENDING"), "{reason}"),
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn heartbeats_keep_a_long_body_s_lease_and_stop_at_max_duration() {
    let (store, clock, engine) = setup();
    let (tick, ticked) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let long = {
        let (engine, tick, ticked) = (engine.clone(), tick.clone(), ticked.clone());
        tokio::spawn(async move {
            call(&engine, "k")
                .max_duration(Duration::from_secs(120))
                .run(|ctx| async move {
                    let mut lost = Vec::new();
                    for _ in 0..20 {
                        tick.notified().await;
                        // Let the heartbeat that this clock move triggered run.
                        tokio::task::yield_now().await;
                        lost.push(ctx.lease_lost());
                        ticked.notify_one();
                    }
                    Ok::<_, Error>(lost)
                })
                .await
        })
    };
    let mut refusals_while_beating = 0;
    for step in 0..20 {
        clock.advance(Duration::from_secs(10)); // a third of the lease
        tick.notify_one();
        ticked.notified().await;
        if step < 10 {
            let dup = call(&engine, "k")
                .run(|_| async { Ok::<_, Error>(Vec::<bool>::new()) })
                .await;
            if matches!(dup, Err(Error::InProgress { .. })) {
                refusals_while_beating += 1;
            }
        }
    }
    let lost = long.await.unwrap().unwrap();
    assert_eq!(
        refusals_while_beating, 10,
        "heartbeats kept the lease past 30 s"
    );
    assert!(
        lost[..10].iter().all(|l| !l),
        "the lease held while beating: {lost:?}"
    );
    assert!(
        lost[16..].iter().all(|l| *l),
        "past max_duration the lease lapsed: {lost:?}"
    );
    let extends = store.calls(Operation::Extend);
    assert!(
        (11..=13).contains(&extends),
        "one extend per third of the lease until max_duration, got {extends}"
    );
}

#[tokio::test]
async fn the_context_reports_a_lease_that_may_be_lost_when_heartbeats_fail() {
    let (store, clock, engine) = setup();
    store.inject(Operation::Extend, Fault::Transient);
    let result = call(&engine, "k")
        .run(|ctx| {
            let clock = clock.clone();
            async move {
                let before = ctx.lease_lost();
                for _ in 0..3 {
                    clock.advance(Duration::from_secs(10));
                    tokio::task::yield_now().await;
                }
                Ok::<_, Error>((before, ctx.lease_lost()))
            }
        })
        .await;
    assert_eq!(result.unwrap(), (false, true));
    assert!(store.calls(Operation::Extend) >= 1);
}

#[tokio::test]
async fn complete_waits_for_an_extend_in_flight() {
    let (store, clock, engine) = setup();
    store.inject_times(Operation::Extend, Fault::Stall, 1);
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let body_store = store.clone();
    let result = call(&engine, "k")
        .run(|_| {
            let clock = clock.clone();
            async move {
                clock.advance(Duration::from_secs(10));
                tokio::task::yield_now().await; // the heartbeat starts and stalls
                assert_eq!(body_store.calls(Operation::Extend), 1);
                let unstall = body_store.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    // The body has returned by now; complete must still be waiting.
                    let _ = seen_tx.send(unstall.calls(Operation::Complete));
                    unstall.unstall();
                });
                Ok::<_, Error>(1u8)
            }
        })
        .await;
    assert_eq!(result.unwrap(), 1);
    assert_eq!(
        seen_rx.await.unwrap(),
        0,
        "complete waited for the extend to settle"
    );
    assert_eq!(store.calls(Operation::Complete), 1);
    assert_eq!(
        stored(&store, &engine, "k").await.unwrap().state,
        State::Completed
    );
}

#[tokio::test]
async fn writes_whose_response_was_lost_are_recognised_by_their_owner() {
    let (store, _clock, engine) = setup();
    let runs = AtomicUsize::new(0);
    store.inject_times(Operation::Begin, Fault::Resent, 1);
    store.inject_times(Operation::Complete, Fault::Resent, 1);
    let value = call(&engine, "k").run(|ctx| {
        assert_eq!(ctx.fence(), 1);
        counted(&runs, "v")
    });
    assert_eq!(value.await.unwrap(), "v");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(store.calls(Operation::Begin), 1);
    let record = stored(&store, &engine, "k").await.unwrap();
    assert_eq!(record.state, State::Completed);
    // Resent release: the key is still freed, and the body's error comes back.
    store.inject_times(Operation::Release, Fault::Resent, 1);
    let failed: Result<u8, PayError> = call(&engine, "r")
        .run(|_| async { Err(PayError::Timeout) })
        .await;
    assert_eq!(failed, Err(PayError::Timeout));
    assert_eq!(
        stored(&store, &engine, "r").await.unwrap().lease_until_ms,
        0
    );
}

#[tokio::test]
async fn the_context_is_handed_to_the_body_and_readable_as_a_task_local() {
    let (_store, _clock, engine) = setup();
    assert!(Context::current().is_none());
    let (token, fence, same) = call(&engine, "k")
        .run(|ctx| async move {
            let current = Context::current().expect("set while the body runs");
            let spawned = tokio::spawn(async { Context::current().is_none() })
                .await
                .unwrap();
            assert!(spawned, "task-locals do not cross tokio::spawn");
            Ok::<_, Error>((
                ctx.token().to_owned(),
                ctx.fence(),
                current.token() == ctx.token(),
            ))
        })
        .await
        .unwrap();
    assert!(same);
    assert_eq!(fence, 1);
    assert_eq!(token, idem_core::key::digest(NS, br#""k""#, None));
    assert!(Context::current().is_none());
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_written() {
    let (store, _clock, engine) = setup();
    let runs = AtomicUsize::new(0);
    let float = Call::new(NS, &1.5f64)
        .engine(&engine)
        .run(|_| counted(&runs, "v"))
        .await;
    assert!(matches!(float, Err(Error::InvalidKey { .. })), "{float:?}");
    let empty = Call::new(NS, "")
        .engine(&engine)
        .run(|_| counted(&runs, "v"))
        .await;
    assert!(matches!(empty, Err(Error::InvalidKey { .. })), "{empty:?}");
    let bad_ns = Call::new("a#b", "k")
        .engine(&engine)
        .run(|_| counted(&runs, "v"))
        .await;
    assert!(matches!(bad_ns, Err(Error::Config(_))), "{bad_ns:?}");
    let long = Call::new("n".repeat(3000), "k")
        .engine(&engine)
        .run(|_| counted(&runs, "v"))
        .await;
    assert!(matches!(long, Err(Error::InvalidKey { .. })), "{long:?}");
    let short_ttl = call(&engine, "k")
        .ttl(Duration::from_millis(10))
        .run(|_| counted(&runs, "v"))
        .await;
    assert!(matches!(short_ttl, Err(Error::Config(_))), "{short_ttl:?}");
    let bad_fp = call(&engine, "k")
        .fingerprint(&0.5f32)
        .run(|_| counted(&runs, "v"))
        .await;
    assert!(
        matches!(bad_fp, Err(Error::InvalidKey { .. })),
        "{bad_fp:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(store.calls(Operation::Begin), 0);
}

#[tokio::test]
async fn a_secret_changes_every_token() {
    let store = faulty();
    let engine = EngineBuilder::from_arc(store.clone())
        .secret("k3y")
        .build()
        .unwrap();
    let token = call(&engine, "k")
        .run(|ctx| async move { Ok::<_, Error>(ctx.token().to_owned()) })
        .await
        .unwrap();
    assert_eq!(token, idem_core::key::digest(NS, br#""k""#, Some(b"k3y")));
    assert_ne!(token, idem_core::key::digest(NS, br#""k""#, None));
}

#[test]
fn io_errors_carry_idem_errors() {
    let io: std::io::Error = Error::InProgress {
        namespace: NS.into(),
        digest: "d".into(),
        lease_until_ms: None,
    }
    .into();
    assert_eq!(io.kind(), std::io::ErrorKind::WouldBlock);
    assert!(io.into_inner().unwrap().downcast::<Error>().is_ok());
}

#[test]
fn engine_settings_are_checked() {
    let bad = Engine::builder(MemoryStore::new())
        .lease(Duration::from_millis(1))
        .build();
    assert!(matches!(bad, Err(Error::Config(_))));
    let bad = Engine::builder(MemoryStore::new())
        .ttl(Duration::ZERO)
        .build();
    assert!(matches!(bad, Err(Error::Config(_))));
}

#[allow(dead_code)]
fn store_is_object_safe(store: Arc<dyn Store>) -> Arc<dyn Store> {
    store
}

#[tokio::test]
async fn the_store_going_down_at_each_step() {
    let (store, clock, engine) = setup();
    let runs = AtomicUsize::new(0);

    // Down at begin: a store error, the body never runs.
    store.set_down(true);
    let at_begin = call(&engine, "begin").run(|_| counted(&runs, "v")).await;
    assert!(
        matches!(
            at_begin,
            Err(Error::Store {
                operation: "begin",
                ..
            })
        ),
        "{at_begin:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    store.set_down(false);

    // Down at complete: executed but not recorded; the value comes back.
    let at_complete = call(&engine, "complete")
        .run(|_| async {
            store.set_down(true);
            Ok::<_, Error>("made".to_owned())
        })
        .await;
    assert_eq!(at_complete.unwrap(), "made");
    store.set_down(false);
    assert_eq!(
        stored(&store, &engine, "complete").await.unwrap().state,
        State::InProgress
    );

    // Down during heartbeats: the body's context reports that the lease may be lost.
    let during = call(&engine, "heartbeats")
        .run(|ctx| {
            let (store, clock) = (store.clone(), clock.clone());
            async move {
                store.set_down(true);
                for _ in 0..3 {
                    clock.advance(LEASE / 3);
                    tokio::task::yield_now().await;
                }
                let lost = ctx.lease_lost();
                store.set_down(false);
                Ok::<_, Error>(lost)
            }
        })
        .await;
    assert!(during.unwrap(), "the context says the lease may be lost");

    // Down at release: the body's own error still comes back.
    let at_release: Result<u8, PayError> = call(&engine, "release")
        .run(|_| async {
            store.set_down(true);
            Err(PayError::Timeout)
        })
        .await;
    assert_eq!(at_release, Err(PayError::Timeout));
    store.set_down(false);
}

/// A tuple key with an empty part is refused like an empty key: two requests without a
/// key must not share one record.
#[tokio::test]
async fn a_tuple_key_with_an_empty_part_is_refused_before_anything_is_written() {
    let engine = Engine::new(MemoryStore::new());
    for key in [("tenant-1", None), ("tenant-1", Some(""))] {
        let ran = AtomicUsize::new(0);
        let result = Call::new(NS, &key)
            .engine(&engine)
            .run(|_| async {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(())
            })
            .await;
        match result {
            Err(Error::InvalidKey { reason, .. }) => assert!(reason.contains("part 1"), "{reason}"),
            other => panic!("expected an invalid key for {key:?}, got {other:?}"),
        }
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }
}

/// With `optional_key`, a missing key runs the body unguarded every time (as
/// Powertools does without `raise_on_no_idempotency_key`); a present key still guards.
#[tokio::test]
async fn an_optional_key_that_is_missing_runs_the_body_unguarded() {
    let engine = Engine::new(MemoryStore::new());
    let ran = AtomicUsize::new(0);
    let ran = &ran;
    for header in [None, None, Some("req-1"), Some("req-1")] {
        let guarded = Call::new(NS, &("tenant-1", header))
            .engine(&engine)
            .optional_key()
            .run(|ctx| async move {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>((ctx.is_guarded(), ctx.token().len()))
            })
            .await
            .unwrap();
        assert_eq!(
            guarded,
            (header.is_some(), if header.is_some() { 64 } else { 0 })
        );
    }
    assert_eq!(
        ran.load(Ordering::SeqCst),
        3,
        "twice unguarded, once guarded"
    );
    // A float is still refused: only an empty key is optional.
    let float = Call::new(NS, &1.5f64)
        .engine(&engine)
        .optional_key()
        .run(|_| async { Ok::<_, Error>(()) })
        .await;
    assert!(matches!(float, Err(Error::InvalidKey { .. })), "{float:?}");
}

/// `run_reported` tells a run from a replay, with the fence and the record's expiry; a
/// completion the store failed to write is reported as not recorded.
#[tokio::test]
async fn the_report_tells_ran_from_replayed() {
    let (store, clock, engine) = setup();
    let call = || {
        Call::new(NS, "report")
            .engine(&engine)
            .ttl(Duration::from_secs(60))
    };
    let first = call()
        .run_reported(|_| async { Ok::<_, Error>(1u8) })
        .await
        .unwrap();
    let expiry = (clock.now_ms() + 60_000).div_ceil(1000) * 1000;
    assert_eq!(
        first,
        idem_core::Report {
            value: 1,
            source: idem_core::Source::Ran,
            fence: 1,
            replayed_until_ms: Some(expiry),
        }
    );
    let replay = call()
        .run_reported(|_| async { Ok::<_, Error>(2u8) })
        .await
        .unwrap();
    assert!(replay.is_replay());
    assert_eq!(
        (replay.value, replay.fence, replay.replayed_until_ms),
        (1, 1, Some(expiry))
    );

    store.inject(Operation::Complete, Fault::Transient);
    let unrecorded = Call::new(NS, "report-unrecorded")
        .engine(&engine)
        .run_reported(|_| async { Ok::<_, Error>(3u8) })
        .await
        .unwrap();
    assert_eq!(unrecorded.source, idem_core::Source::RanNotRecorded);
    assert_eq!(unrecorded.replayed_until_ms, None);
}
