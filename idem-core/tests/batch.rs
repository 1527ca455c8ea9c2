//! Batches (`Batch`) on the in-memory store: every per-item outcome, the round trips a
//! batch costs, group order, the concurrency bound, and bad input kept to its item.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idem_core::store::{Begin, Outcome, Record, State, Store};
use idem_core::testkit::CountingStore;
use idem_core::{Batch, BatchOutcome, Call, Engine, EngineBuilder, Error, MemoryStore, Source};

const NS: &str = "tests::batch";

type Counted = Arc<CountingStore<MemoryStore>>;

fn setup() -> (Counted, Engine) {
    let store = Arc::new(CountingStore::new(MemoryStore::new()));
    let engine = EngineBuilder::from_arc(store.clone())
        .lease(Duration::from_secs(30))
        .build()
        .unwrap();
    (store, engine)
}

/// The record of `key`, as the store holds it.
async fn record(store: &Counted, engine: &Engine, key: &str) -> Record {
    let id = engine.record_id(NS, key).unwrap();
    Arc::unwrap_or_clone(store.inner().read(&id).await.unwrap().unwrap())
}

/// Takes `key` for another caller, its lease ending a minute from now; returns that
/// end.
async fn hold_elsewhere(store: &Counted, engine: &Engine, key: &str) -> u64 {
    let now = engine.clock().now_ms();
    let holder = Begin {
        id: engine.record_id(NS, key).unwrap(),
        owner: idem_core::store::Owner::from_u128(7),
        now_ms: now,
        lease_until_ms: now + 60_000,
        expires_at_s: now / 1000 + 3600,
        fingerprint: None,
    };
    store.begin(&holder).await.unwrap();
    holder.lease_until_ms
}

fn kinds<T, E>(outcomes: &[BatchOutcome<T, E>]) -> Vec<&'static str> {
    outcomes
        .iter()
        .map(|outcome| match outcome {
            BatchOutcome::Ran(_) => "ran",
            BatchOutcome::Replayed(_) => "replayed",
            BatchOutcome::InProgressElsewhere { .. } => "in progress",
            BatchOutcome::Failed(_) => "failed",
            BatchOutcome::Skipped => "skipped",
            BatchOutcome::InvalidKey(_) => "invalid key",
            BatchOutcome::Repeated { .. } => "repeated",
        })
        .collect()
}

/// Ten new keys cost one begin and one completion: two store round trips, not twenty;
/// each record is the one a single call leaves, and a second batch replays them all.
#[tokio::test]
async fn ten_items_take_two_round_trips_and_replay_after() {
    let (store, engine) = setup();
    let runs = AtomicUsize::new(0);
    let batch = |engine: &Engine| {
        (0..10).fold(Batch::new(NS).engine(engine), |batch, n| {
            batch.item(&format!("m-{n}"), n)
        })
    };
    let outcomes = batch(&engine)
        .run(|_, n: u32| {
            runs.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, Error>(n * 2) }
        })
        .await;
    assert_eq!(kinds(&outcomes), vec!["ran"; 10]);
    assert_eq!(store.calls(), 2, "one begin_batch, one complete_batch");
    for (n, outcome) in outcomes.iter().enumerate() {
        let BatchOutcome::Ran(report) = outcome else {
            unreachable!()
        };
        assert_eq!((report.value, report.source), (n as u32 * 2, Source::Ran));
        let record = record(&store, &engine, &format!("m-{n}")).await;
        assert_eq!(record.state, State::Completed);
        assert_eq!(record.outcome, Some(Outcome::Ok));
        assert_eq!(
            record.data.as_deref(),
            Some(format!("{}", n * 2).as_bytes())
        );
        // A single call replays what the batch recorded.
        let single = Call::new(NS, &format!("m-{n}"))
            .engine(&engine)
            .run(|_| async { Ok::<u32, Error>(999) })
            .await
            .unwrap();
        assert_eq!(single, n as u32 * 2);
    }
    let again = batch(&engine)
        .run(|_, _: u32| async { Ok::<u32, Error>(999) })
        .await;
    assert_eq!(kinds(&again), vec!["replayed"; 10]);
    assert_eq!(runs.load(Ordering::SeqCst), 10);
}

/// A key repeated within the batch runs once and the repeat says which item it repeats;
/// a key that cannot be encoded fails alone; neither disturbs the rest.
#[tokio::test]
async fn repeated_and_invalid_keys_stay_with_their_item() {
    let (store, engine) = setup();
    let runs = Mutex::new(Vec::new());
    let outcomes = Batch::new(NS)
        .engine(&engine)
        .item(&serde_json::json!("a"), 1)
        .item(&serde_json::json!(1.5), 2)
        .item(&serde_json::json!("a"), 3)
        .item(&serde_json::json!(""), 4)
        .item(&serde_json::json!("b"), 5)
        .run(|_, n: u32| {
            runs.lock().unwrap().push(n);
            async move { Ok::<_, Error>(n) }
        })
        .await;
    assert_eq!(
        kinds(&outcomes),
        ["ran", "invalid key", "repeated", "invalid key", "ran"]
    );
    assert!(matches!(outcomes[2], BatchOutcome::Repeated { first: 0 }));
    assert!(matches!(
        &outcomes[1],
        BatchOutcome::InvalidKey(Error::InvalidKey { .. })
    ));
    assert_eq!(*runs.lock().unwrap(), [1, 5]);
    assert_eq!(store.inner().len(), 2, "records for a and b only");
}

/// A key held by a call elsewhere is reported in progress and its body does not run;
/// the other items run.
#[tokio::test]
async fn a_key_held_elsewhere_is_in_progress() {
    let (store, engine) = setup();
    let until = hold_elsewhere(&store, &engine, "held").await;
    let ran = Mutex::new(Vec::new());
    let outcomes = Batch::new(NS)
        .engine(&engine)
        .item("held", "held")
        .item("free", "free")
        .run(|_, name: &str| {
            ran.lock().unwrap().push(name);
            async { Ok::<_, Error>(()) }
        })
        .await;
    assert_eq!(kinds(&outcomes), ["in progress", "ran"]);
    assert!(matches!(
        outcomes[0],
        BatchOutcome::InProgressElsewhere { lease_until_ms: Some(ends) } if ends == until
    ));
    assert_eq!(*ran.lock().unwrap(), ["free"]);
}

/// A group runs in the order its items were added and stops at its first failure: the
/// rest of it is skipped (bodies not run, keys released, so a redelivery runs them),
/// while another group and ungrouped items go on.
#[tokio::test]
async fn a_group_stops_at_its_first_failure() {
    let (_, engine) = setup();
    let order = &Mutex::new(Vec::new());
    let batch = |fail: &'static str| {
        Batch::new(NS)
            .engine(&engine)
            .concurrency(8)
            .item_in_group("a1", "A", "a1")
            .item_in_group("b1", "B", "b1")
            .item_in_group("a2", "A", "a2")
            .item("solo", "solo")
            .item_in_group("a3", "A", "a3")
            .item_in_group("b2", "B", "b2")
            .run(move |_, name: &'static str| {
                async move {
                    // Later items of a group would overtake earlier ones if they could.
                    let pause = if name.ends_with('1') { 20 } else { 0 };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    order.lock().unwrap().push(name);
                    if name == fail {
                        Err(Error::Config("failed on purpose".into()))
                    } else {
                        Ok(name.to_owned())
                    }
                }
            })
    };
    let outcomes = batch("a2").await;
    assert_eq!(
        kinds(&outcomes),
        ["ran", "ran", "failed", "ran", "skipped", "ran"]
    );
    let order: Vec<&str> = std::mem::take(&mut *order.lock().unwrap());
    let position = |name| order.iter().position(|n| *n == name).unwrap();
    assert!(position("a1") < position("a2"), "{order:?}");
    assert!(position("b1") < position("b2"), "{order:?}");
    assert!(!order.contains(&"a3"), "a skipped item's body does not run");
    // The redelivery: a1, b1, b2 and solo replay; a2 and a3 run (their keys were released).
    let again = batch("none").await;
    assert_eq!(
        kinds(&again),
        ["replayed", "replayed", "ran", "replayed", "ran", "replayed"]
    );
}

/// A group whose first item is in progress elsewhere skips the rest, even an item whose
/// record would replay.
#[tokio::test]
async fn a_group_stops_at_an_item_in_progress_elsewhere() {
    let (store, engine) = setup();
    Call::new(NS, "done")
        .engine(&engine)
        .run(|_| async { Ok::<_, Error>(1) })
        .await
        .unwrap();
    hold_elsewhere(&store, &engine, "busy").await;
    let outcomes = Batch::new(NS)
        .engine(&engine)
        .item_in_group("busy", "G", ())
        .item_in_group("done", "G", ())
        .item_in_group("new", "G", ())
        .run(|_, ()| async { Ok::<_, Error>(2) })
        .await;
    assert_eq!(kinds(&outcomes), ["in progress", "skipped", "skipped"]);
    let new = record(&store, &engine, "new").await;
    assert_eq!(new.lease_until_ms, 0, "the skipped key was released");
}

/// No more bodies run at once than the bound.
#[tokio::test]
async fn the_concurrency_bound_holds() {
    let (_, engine) = setup();
    let running = AtomicUsize::new(0);
    let most = AtomicUsize::new(0);
    let outcomes = (0..12)
        .fold(Batch::new(NS).engine(&engine).concurrency(3), |b, n| {
            b.item(&n, ())
        })
        .run(|_, ()| {
            let (running, most) = (&running, &most);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, Error>(())
            }
        })
        .await;
    assert_eq!(kinds(&outcomes), vec!["ran"; 12]);
    assert_eq!(most.load(Ordering::SeqCst), 3);
}

/// A body that panics releases its key; the other items are completed first, then the
/// panic goes on.
#[tokio::test]
async fn a_panic_finishes_the_others_then_goes_on() {
    let (store, engine) = setup();
    let engine2 = engine.clone();
    let panicked = tokio::spawn(async move {
        Batch::new(NS)
            .engine(&engine2)
            .item("calm", false)
            .item("panics", true)
            .run(|_, panics: bool| async move {
                if panics {
                    panic!("on purpose");
                }
                Ok::<_, Error>(1)
            })
            .await
    })
    .await;
    assert!(panicked.unwrap_err().is_panic());
    assert_eq!(
        record(&store, &engine, "calm").await.state,
        State::Completed
    );
    let panics = record(&store, &engine, "panics").await;
    assert_eq!(
        (panics.state, panics.lease_until_ms),
        (State::InProgress, 0)
    );
}

/// A failed body releases its key (a redelivery runs it), as a call's does.
#[tokio::test]
async fn a_failed_body_releases_its_key() {
    let (_, engine) = setup();
    let runs = &AtomicUsize::new(0);
    let run = |fail: bool| {
        Batch::new(NS)
            .engine(&engine)
            .item("k", ())
            .run(move |_, ()| {
                runs.fetch_add(1, Ordering::SeqCst);
                async move {
                    if fail {
                        Err(Error::Config("no".into()))
                    } else {
                        Ok(3)
                    }
                }
            })
    };
    assert_eq!(kinds(&run(true).await), ["failed"]);
    assert_eq!(kinds(&run(false).await), ["ran"]);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

/// A batch begin that fails as a whole for a passing reason (here the trait's looping
/// default, whose first item's begin does not answer within the store timeout) may have
/// been applied in part: each item's begin is sent again on its own, as the same
/// attempt, so the keys the batch took are its own and their bodies run, instead of
/// every item failing and the taken keys staying held by nobody until their leases
/// lapse. (Review of #28: all five failed, and the redelivery found four keys in
/// progress elsewhere. Mutation tried: no resend: this test fails.)
#[tokio::test]
async fn a_batch_begin_that_timed_out_is_sent_again_item_by_item() {
    use idem_core::testkit::{Fault, FaultyStore, Operation};
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let engine = EngineBuilder::from_arc(store.clone())
        .lease(Duration::from_secs(30))
        .store_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    store.inject_times(Operation::Begin, Fault::Stall, 1);
    let runs = &AtomicUsize::new(0);
    let batch = || {
        (0..5u64).fold(Batch::new(NS).engine(&engine), |batch, key| {
            batch.item(&format!("stalled-{key}"), key)
        })
    };
    let body = |_, key: u64| async move {
        runs.fetch_add(1, Ordering::SeqCst);
        Ok::<_, Error>(key)
    };
    assert_eq!(kinds(&batch().run(body).await), ["ran"; 5]);
    assert_eq!(runs.load(Ordering::SeqCst), 5);
    assert_eq!(kinds(&batch().run(body).await), ["replayed"; 5]);
    assert_eq!(runs.load(Ordering::SeqCst), 5);
}

/// The same for a batch completion that fails as a whole: each completion is sent
/// again on its own, so only an item whose own completion fails is "ran, not
/// recorded". (Review of #28: one stalled completion made all five "not recorded",
/// though four were. Mutation tried: no resend: this test fails.)
#[tokio::test]
async fn a_batch_completion_that_timed_out_is_sent_again_item_by_item() {
    use idem_core::testkit::{Fault, FaultyStore, Operation};
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let engine = EngineBuilder::from_arc(store.clone())
        .lease(Duration::from_secs(30))
        .store_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    store.inject_times(Operation::Complete, Fault::Stall, 1);
    let outcomes = (0..5u64)
        .fold(Batch::new(NS).engine(&engine), |batch, key| {
            batch.item(&format!("done-{key}"), key)
        })
        .run(|_, key: u64| async move { Ok::<_, Error>(key) })
        .await;
    let not_recorded = outcomes
        .iter()
        .filter(
            |o| matches!(o, BatchOutcome::Ran(report) if report.source == Source::RanNotRecorded),
        )
        .count();
    assert_eq!(kinds(&outcomes), ["ran"; 5]);
    assert!(not_recorded <= 1, "{not_recorded} items not recorded");
    for key in 0..5u64 {
        let id = engine.record_id(NS, &format!("done-{key}")).unwrap();
        let record = store.inner().read(&id).await.unwrap().unwrap();
        assert_eq!(
            record.state == State::Completed,
            matches!(&outcomes[key as usize], BatchOutcome::Ran(r) if r.source == Source::Ran),
            "item {key}: the outcome says what the store holds"
        );
    }
}

/// A group's item that repeats an earlier item's key (here outside the group) passes
/// the group's turn on as that item ended: after a first item that failed the rest of
/// the group is skipped; after one that ran, the group goes on.
#[tokio::test]
async fn a_repeat_in_a_group_passes_the_turn_on_as_its_first_item_ended() {
    let (_, engine) = setup();
    let run = |fail: &'static str| {
        Batch::new(NS)
            .engine(&engine)
            .item("r1", "r1")
            .item_in_group("r1", "G", "r1 again")
            .item_in_group("r2", "G", "r2")
            .run(move |_, name: &'static str| async move {
                match name == fail {
                    true => Err(Error::Config("failed on purpose".into())),
                    false => Ok(()),
                }
            })
    };
    assert_eq!(kinds(&run("r1").await), ["failed", "repeated", "skipped"]);
    assert_eq!(kinds(&run("none").await), ["ran", "repeated", "ran"]);
}
