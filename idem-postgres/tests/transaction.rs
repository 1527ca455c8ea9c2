//! The transactional form under a clock lease (`PgStoreBuilder::lock_held(false)`)
//! against the machine's PostgreSQL: the body's ledger row and the completion commit
//! together, or neither persists. The lock-held form, the default, is in `lock_held.rs`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{clock_lease_store, insert_ledger_row, ledger_rows, store, with_ledger, TestStore};
use idem_core::store::{
    Attempt, Completion, Isolation, Outcome, State, StoreError, Transaction, Written,
};
use idem_core::testkit::{attempt, begin_at, completion_at};
use idem_core::{
    Call, Clock, Engine, EngineBuilder, Error, ManualClock, MemoryStore, Source, Store,
};
use idem_postgres::{PgStore, PgTransaction};

const NS: &str = "tests::ledger";
const IGNORE: &str = "needs the PostgreSQL server that scripts/test checks";

/// A store with a ledger table beside its records.
async fn ledger_store(label: &str) -> TestStore {
    with_ledger(clock_lease_store(label).await).await
}

fn engine(store: &TestStore) -> Engine {
    Engine::new(store.store.clone())
}

/// The body of every test: one ledger row, in the given transaction.
async fn insert(schema: &str, key: &str, tx: &mut PgTransaction, fence: u64) -> Result<(), Error> {
    insert_ledger_row(schema, key, tx, fence)
        .await
        .expect("the ledger row is written");
    Ok(())
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn the_body_and_its_completion_commit_together_and_a_duplicate_replays() {
    let store = ledger_store("commit").await;
    let engine = engine(&store);
    let schema = store.cleanup.0.clone();
    let runs = AtomicUsize::new(0);
    let mut sources = Vec::new();
    for _ in 0..3 {
        let report = Call::new(NS, "k1")
            .engine(&engine)
            .run_in_transaction_reported(async |ctx, tx: &mut PgTransaction| {
                runs.fetch_add(1, Ordering::SeqCst);
                insert(&schema, "k1", tx, ctx.fence()).await?;
                Ok::<_, Error>(ctx.fence() * 10)
            })
            .await
            .unwrap();
        assert_eq!((report.value, report.fence), (10, 1));
        sources.push(report.source);
    }
    assert_eq!(
        sources,
        [Source::Ran, Source::Replayed, Source::Replayed],
        "the report tells the run from the replays"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(ledger_rows(&store, "k1").await, 1);
    let id = engine.record_id(NS, "k1").unwrap();
    let record = store.read(&id).await.unwrap().expect("the record");
    assert_eq!(
        (record.state, record.data.as_deref()),
        (State::Completed, Some(&b"10"[..]))
    );
    // The plain form gives the same value.
    let value: u64 = Call::new(NS, "k1")
        .engine(&engine)
        .run_in_transaction(async |_, _: &mut PgTransaction| -> Result<u64, Error> {
            panic!("the body must not run again")
        })
        .await
        .unwrap();
    assert_eq!(value, 10);
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_failed_body_is_rolled_back_and_the_key_released() {
    let store = ledger_store("failed").await;
    let engine = engine(&store);
    let schema = store.cleanup.0.clone();
    let failed: Result<u64, Error> = Call::new(NS, "k2")
        .engine(&engine)
        .run_in_transaction(async |ctx, tx: &mut PgTransaction| {
            insert(&schema, "k2", tx, ctx.fence()).await?;
            Err(Error::Config("the body failed after its write".into()))
        })
        .await;
    assert!(matches!(failed, Err(Error::Config(_))), "{failed:?}");
    assert_eq!(
        ledger_rows(&store, "k2").await,
        0,
        "the write was rolled back"
    );
    // Released: the retry runs at once and its write is the one that stays.
    let retried = Call::new(NS, "k2")
        .engine(&engine)
        .run_in_transaction(async |ctx, tx: &mut PgTransaction| {
            insert(&schema, "k2", tx, ctx.fence()).await?;
            Ok::<_, Error>(ctx.fence())
        })
        .await
        .unwrap();
    assert_eq!(retried, 2);
    assert_eq!(ledger_rows(&store, "k2").await, 1);
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_panicking_body_is_rolled_back_and_the_key_released() {
    let store = ledger_store("panic").await;
    let engine = engine(&store);
    let schema = store.cleanup.0.clone();
    let call = Call::new(NS, "k3").engine(&engine).run_in_transaction(
        async move |ctx, tx: &mut PgTransaction| {
            insert(&schema, "k3", tx, ctx.fence()).await?;
            if ctx.fence() == 1 {
                panic!("the body panics after its write");
            }
            Ok::<_, Error>(())
        },
    );
    let panicked = tokio::spawn(call).await;
    assert!(panicked.unwrap_err().is_panic());
    assert_eq!(ledger_rows(&store, "k3").await, 0);
    let id = engine.record_id(NS, "k3").unwrap();
    let record = store.read(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.lease_until_ms),
        (State::InProgress, 0),
        "released"
    );
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_lost_lease_rolls_the_body_back_and_returns_lease_lost() {
    let store = ledger_store("lost").await;
    let clock = ManualClock::new(idem_core::testkit::T0);
    let engine = EngineBuilder::from_arc(Arc::new(store.store.clone()))
        .clock(clock.clone())
        .lease(Duration::from_secs(30))
        .max_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    let schema = store.cleanup.0.clone();
    let id = engine.record_id(NS, "k4").unwrap();
    let lost: Result<(), Error> = Call::new(NS, "k4")
        .engine(&engine)
        .run_in_transaction(async |ctx, tx: &mut PgTransaction| {
            insert(&schema, "k4", tx, ctx.fence()).await?;
            // Past the lease; another attempt takes the key over meanwhile.
            clock.advance(Duration::from_secs(31));
            let takeover = begin_at(&id, "other", clock.now_ms(), None);
            assert!(matches!(
                store.begin(&takeover).await.unwrap(),
                Written::Applied(2)
            ));
            Ok(())
        })
        .await;
    assert!(matches!(lost, Err(Error::LeaseLost { .. })), "{lost:?}");
    assert_eq!(
        ledger_rows(&store, "k4").await,
        0,
        "nothing of the body persisted"
    );
    let record = store.read(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.owner, record.fence),
        (idem_core::testkit::owner("other"), 2)
    );
}

/// A begin that meets a completion written but not yet committed waits for the commit
/// (or the rollback), then sees the completed (or the lapsed, held) record; it is sent
/// past the lease, so if it did not wait it would take the key over.
async fn begin_during_completion(commit: bool) -> (Written<u64>, Duration) {
    let store = store(if commit { "waitcommit" } else { "waitrollback" }).await;
    let id = idem_core::testkit::fresh_id("waits");
    let t0 = idem_core::testkit::T0;
    assert_eq!(
        store
            .begin(&begin_at(&id, "first", t0, None))
            .await
            .unwrap(),
        Written::Applied(1)
    );
    let mut tx = PgTransaction::open(&store, None).await.unwrap();
    let done = completion_at(t0 + 1_000, Outcome::Ok, Some("1"));
    let written = tx.complete(&attempt(&id, "first", 1), &done).await.unwrap();
    assert_eq!(written, Written::Applied(()));
    let late = begin_at(&id, "second", t0 + idem_core::testkit::LEASE_MS + 1, None);
    let competing = tokio::spawn({
        let store = store.store.clone();
        async move {
            let started = std::time::Instant::now();
            let answer = store.begin(&late).await.unwrap();
            (answer, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    if commit {
        tx.commit().await.unwrap();
    } else {
        tx.rollback().await.unwrap();
    }
    competing.await.unwrap()
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_begin_meeting_an_uncommitted_completion_waits_for_the_commit_and_sees_it() {
    let (answer, waited) = begin_during_completion(true).await;
    match answer {
        Written::Refused(Some(record)) => {
            assert_eq!(
                (record.state, record.owner),
                (State::Completed, idem_core::testkit::owner("first"))
            );
        }
        other => panic!("expected the completed record, got {other:?}"),
    }
    assert!(
        waited >= Duration::from_millis(250),
        "it waited for the commit: {waited:?}"
    );
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_begin_meeting_a_rolled_back_completion_takes_the_lapsed_key_over() {
    let (answer, waited) = begin_during_completion(false).await;
    assert_eq!(answer, Written::Applied(2));
    assert!(
        waited >= Duration::from_millis(250),
        "it waited for the rollback: {waited:?}"
    );
}

/// How a [`Flaky`] transaction's commit goes: committed, its answer lost.
const COMMITS: u8 = 0;
/// Rolled back, its answer lost.
const ROLLS_BACK: u8 = 1;
/// Committed `LATE` after its answer was lost at once: after the engine's read of the
/// record, before its release (which waits for the completion's row lock, then finds
/// the record completed).
const COMMITS_LATE: u8 = 2;
/// Never answered.
const HANGS: u8 = 3;

const LATE: Duration = Duration::from_millis(300);

/// PostgreSQL's own transaction, whose commit goes as `MODE` says ([`COMMITS`],
/// [`ROLLS_BACK`], [`COMMITS_LATE`] or [`HANGS`]).
struct Flaky<const MODE: u8>(PgTransaction);

#[idem_core::store::async_trait]
impl<const MODE: u8> Transaction for Flaky<MODE> {
    type Store = PgStore;
    async fn open(store: &PgStore, isolation: Option<Isolation>) -> Result<Self, StoreError> {
        PgTransaction::open(store, isolation).await.map(Flaky)
    }
    async fn complete(&mut self, a: &Attempt, c: &Completion) -> Result<Written<()>, StoreError> {
        self.0.complete(a, c).await
    }
    async fn commit(self) -> Result<(), StoreError> {
        match MODE {
            COMMITS => self.0.commit().await?,
            ROLLS_BACK => self.0.rollback().await?,
            COMMITS_LATE => {
                tokio::spawn(async move {
                    tokio::time::sleep(LATE).await;
                    self.0.commit().await.expect("the late commit");
                });
            }
            _ => std::future::pending().await,
        }
        Err(StoreError::transient(
            "the connection was lost before the commit's answer",
        ))
    }
    async fn rollback(self) -> Result<(), StoreError> {
        self.0.rollback().await
    }
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_commit_landing_after_the_settling_read_is_reported_as_ran() {
    let store = ledger_store("late").await;
    let engine = engine(&store);
    let schema = store.cleanup.0.clone();
    let started = std::time::Instant::now();
    let report = Call::new(NS, "k9")
        .engine(&engine)
        .run_in_transaction_reported(async |ctx, tx: &mut Flaky<COMMITS_LATE>| {
            insert(&schema, "k9", &mut tx.0, ctx.fence()).await?;
            Ok::<_, Error>(9u64)
        })
        .await;
    assert!(
        started.elapsed() >= LATE,
        "the release waited for the late commit"
    );
    let report = report.expect("the commit went through: the call must not say it did not");
    assert_eq!((report.value, report.source), (9, Source::Ran));
    assert_eq!(ledger_rows(&store, "k9").await, 1);
    let id = engine.record_id(NS, "k9").unwrap();
    let record = store.read(&id).await.unwrap().expect("the record");
    assert_eq!(
        (record.state, report.replayed_until_ms),
        (State::Completed, Some(record.expires_at_s * 1000))
    );
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_lost_commit_answer_is_settled_by_reading_the_record() {
    let store = ledger_store("settle").await;
    let engine = engine(&store);
    let schema = store.cleanup.0.clone();
    // Committed, answer lost: the record shows the completion, so the call succeeds.
    let committed = Call::new(NS, "k6")
        .engine(&engine)
        .run_in_transaction(async |ctx, tx: &mut Flaky<COMMITS>| {
            insert(&schema, "k6", &mut tx.0, ctx.fence()).await?;
            Ok::<_, Error>(6u64)
        })
        .await;
    assert_eq!(committed.unwrap(), 6);
    assert_eq!(ledger_rows(&store, "k6").await, 1);

    // Not committed: nothing persisted, the key is released and the error says retry.
    let failed = Call::new(NS, "k7")
        .engine(&engine)
        .run_in_transaction(async |ctx, tx: &mut Flaky<ROLLS_BACK>| {
            insert(&schema, "k7", &mut tx.0, ctx.fence()).await?;
            Ok::<_, Error>(7u64)
        })
        .await;
    match failed {
        Err(error @ Error::Store { .. }) => assert!(error.is_retryable(), "{error}"),
        other => panic!("expected a transient store error, got {other:?}"),
    }
    assert_eq!(ledger_rows(&store, "k7").await, 0);
    let retried = Call::new(NS, "k7")
        .engine(&engine)
        .run_in_transaction(async |ctx, tx: &mut PgTransaction| {
            insert(&schema, "k7", tx, ctx.fence()).await?;
            Ok::<_, Error>(ctx.fence())
        })
        .await;
    assert_eq!(
        retried.unwrap(),
        2,
        "the retry ran at once, on a higher fence"
    );
    assert_eq!(ledger_rows(&store, "k7").await, 1);
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn an_unguarded_call_still_commits_its_transaction() {
    let store = ledger_store("unguarded").await;
    let engine = engine(&store);
    let schema = store.cleanup.0.clone();
    let no_key: Option<&str> = None;
    for _ in 0..2 {
        let report = Call::new(NS, &no_key)
            .engine(&engine)
            .optional_key()
            .run_in_transaction_reported(async |ctx, tx: &mut PgTransaction| {
                insert(&schema, "unguarded", tx, 0).await?;
                Ok::<_, Error>(ctx.is_guarded())
            })
            .await
            .unwrap();
        assert!(!report.value);
        assert_eq!(
            (report.source, report.fence, report.replayed_until_ms),
            (Source::Unguarded, 0, None)
        );
    }
    assert_eq!(
        ledger_rows(&store, "unguarded").await,
        2,
        "no key, no deduplication"
    );
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn an_unguarded_call_s_commit_has_the_engine_s_timeout() {
    let store = ledger_store("unguarded_timeout").await;
    let engine = Engine::builder(store.store.clone())
        .store_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let no_key: Option<&str> = None;
    let hung = tokio::time::timeout(
        Duration::from_secs(10),
        Call::new(NS, &no_key)
            .engine(&engine)
            .optional_key()
            .run_in_transaction(async |_, _: &mut Flaky<HANGS>| Ok::<_, Error>(1u8)),
    )
    .await
    .expect("the engine's store timeout ends the call");
    match hung {
        Err(
            error @ Error::Store {
                operation: "commit",
                ..
            },
        ) => assert!(error.is_retryable(), "{error}"),
        other => panic!("expected the commit's timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn an_engine_over_another_store_is_a_configuration_error_before_anything_runs() {
    let engine = Engine::new(MemoryStore::new());
    let refused = Call::new(NS, "k8")
        .engine(&engine)
        .run_in_transaction(async |_, _: &mut PgTransaction| -> Result<(), Error> {
            panic!("the body must not run")
        })
        .await;
    match refused {
        Err(Error::Config(message)) => assert!(message.contains("PgStore"), "{message}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
    let _ = IGNORE;
}

/// A database step (`Transaction::journal`): its rows and its journal entry commit
/// together or not at all; while its transaction is open, a begin taking the key over
/// waits for it and then finds the entry; a stale attempt's journal in a transaction is
/// refused with the current record, journal included.
#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_database_step_s_rows_and_its_journal_entry_commit_together() {
    use idem_core::store::{Codec, StepRecord};
    use idem_core::testkit::{fresh_id, LEASE_MS, T0};

    let store = ledger_store("dbstep").await;
    let schema = store.cleanup.0.clone();
    let id = fresh_id("dbstep");
    let Written::Applied(fence) = store.begin(&begin_at(&id, "a", T0, None)).await.unwrap() else {
        panic!("the begin applies")
    };
    let a = attempt(&id, "a", fence);
    let step = |name: &str, value: &str| StepRecord {
        name: name.into(),
        outcome: Some(Outcome::Ok),
        data: Some(value.as_bytes().to_vec().into()),
        codec: Codec::Json,
    };
    let steps = |store: &TestStore, id: &idem_core::RecordId| {
        let store = store.store.clone();
        let id = id.clone();
        async move { store.read(&id).await.unwrap().unwrap().steps.to_vec() }
    };

    // Rolled back: neither the row nor the entry.
    let mut tx = PgTransaction::open(&store, None).await.unwrap();
    insert_ledger_row(&schema, "s1", &mut tx, fence)
        .await
        .unwrap();
    assert_eq!(
        tx.journal(&a, &step("s1", "1")).await.unwrap(),
        Written::Applied(())
    );
    assert_eq!(steps(&store, &id).await, [], "not seen before the commit");
    tx.rollback().await.unwrap();
    assert_eq!(
        (ledger_rows(&store, "s1").await, steps(&store, &id).await),
        (0, vec![])
    );

    // Committed: both.
    let mut tx = PgTransaction::open(&store, None).await.unwrap();
    insert_ledger_row(&schema, "s1", &mut tx, fence)
        .await
        .unwrap();
    assert_eq!(
        tx.journal(&a, &step("s1", "1")).await.unwrap(),
        Written::Applied(())
    );
    tx.commit().await.unwrap();
    assert_eq!(
        (ledger_rows(&store, "s1").await, steps(&store, &id).await),
        (1, vec![step("s1", "1")])
    );

    // Journaled, not yet committed, when the lease has lapsed: the takeover waits for
    // the commit and keeps the entry.
    let mut tx = PgTransaction::open(&store, None).await.unwrap();
    insert_ledger_row(&schema, "s2", &mut tx, fence)
        .await
        .unwrap();
    assert_eq!(
        tx.journal(&a, &step("s2", "2")).await.unwrap(),
        Written::Applied(())
    );
    let takeover = tokio::spawn({
        let store = store.store.clone();
        let late = begin_at(&id, "b", T0 + LEASE_MS + 1, None);
        async move { store.begin(&late).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !takeover.is_finished(),
        "the takeover waits for the step's commit"
    );
    tx.commit().await.unwrap();
    let fence_b = match takeover.await.unwrap() {
        Written::Applied(fence_b) => fence_b,
        other => panic!("expected the takeover to apply, got {other:?}"),
    };
    let both = vec![step("s1", "1"), step("s2", "2")];
    assert_eq!(steps(&store, &id).await, both);

    // A stale attempt's database step: refused with b's record and the journal; its
    // transaction then rolls back its rows.
    let mut tx = PgTransaction::open(&store, None).await.unwrap();
    insert_ledger_row(&schema, "s3", &mut tx, fence)
        .await
        .unwrap();
    match tx.journal(&a, &step("s3", "3")).await.unwrap() {
        Written::Refused(Some(current)) => {
            assert_eq!(
                (current.owner, current.fence),
                (idem_core::testkit::owner("b"), fence_b)
            );
            assert_eq!(current.steps, both);
        }
        other => panic!("expected a refusal with the current record, got {other:?}"),
    }
    tx.rollback().await.unwrap();
    assert_eq!(ledger_rows(&store, "s3").await, 0);

    // The transactional completion empties the journal with the commit.
    let b = attempt(&id, "b", fence_b);
    let mut tx = PgTransaction::open(&store, None).await.unwrap();
    let done = completion_at(T0 + LEASE_MS + 2, Outcome::Ok, Some("\"done\""));
    assert_eq!(tx.complete(&b, &done).await.unwrap(), Written::Applied(()));
    assert_eq!(steps(&store, &id).await, both, "emptied only at the commit");
    tx.commit().await.unwrap();
    let record = store.read(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.steps.to_vec()),
        (State::Completed, vec![])
    );
}
