//! The lock-held transactional form against a real PostgreSQL: the body's open
//! transaction holds the key (its lock on the record's row), with no clock lease and no
//! heartbeat. A duplicate is in progress at once or waits for the commit under every
//! isolation level; a rolled-back attempt frees the key and its fence is never handed
//! out again; a serialization failure is retryable with the database's error kept.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{insert_ledger_row, ledger_rows, store, with_ledger, TestStore};
use idem_core::store::Isolation;
use idem_core::{Call, Engine, Error, Source};
use idem_postgres::PgTransaction;
use tokio::sync::oneshot;

const NS: &str = "tests::held";

/// A store with a ledger table beside its records.
async fn ledger_store(label: &str) -> TestStore {
    with_ledger(store(label).await).await
}

/// An engine whose lease is short: a body of 700 ms runs past it, and would have needed
/// heartbeats (every lease / 3) under the clock-lease form.
fn engine(store: &TestStore) -> Engine {
    Engine::builder(store.store.clone())
        .lease(Duration::from_millis(900))
        .store_timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

/// A body's error: idem's, or the database's as the body met it.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error(transparent)]
    Idem(#[from] Error),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// An error the body records (`Declined`), or any other.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum Refusal {
    Declined,
    Other(String),
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Self {
        Refusal::Other(error.to_string())
    }
}

async fn insert(
    schema: &str,
    key: &str,
    tx: &mut PgTransaction,
    fence: u64,
) -> Result<(), BodyError> {
    Ok(insert_ledger_row(schema, key, tx, fence).await?)
}

/// The SQLSTATE somewhere in `error`'s chain of sources, if a database error is there.
fn sqlstate(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(sqlx::Error::Database(database)) = error.downcast_ref::<sqlx::Error>() {
            return database.code().map(|code| code.into_owned());
        }
        next = error.source();
    }
    None
}

/// A call on `key` whose body writes its ledger row, then holds the key (its
/// transaction open) until the sender is used; returned once the body has started.
async fn held_until_released(
    store: &TestStore,
    key: &'static str,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<idem_core::Report<u64>, BodyError>>,
) {
    let engine = engine(store);
    let schema = store.cleanup.0.clone();
    let (started, body_started) = oneshot::channel();
    let (release, released) = oneshot::channel::<()>();
    let first = tokio::spawn(async move {
        Call::new(NS, key)
            .engine(&engine)
            .run_in_transaction_reported(async |ctx, tx: &mut PgTransaction| {
                insert(&schema, key, tx, ctx.fence()).await?;
                started.send(()).unwrap();
                released.await.unwrap();
                Ok::<_, BodyError>(ctx.fence())
            })
            .await
    });
    body_started.await.unwrap();
    (release, first)
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_duplicate_meets_a_running_transaction_in_progress_at_once() {
    let store = ledger_store("busy").await;
    let engine = engine(&store);
    let (release, first) = held_until_released(&store, "k1").await;
    let asked = Instant::now();
    let duplicate = tokio::time::timeout(
        Duration::from_secs(5),
        Call::new(NS, "k1")
            .engine(&engine)
            .run_in_transaction(async |_, _: &mut PgTransaction| Ok::<_, BodyError>(0)),
    )
    .await
    .expect("the duplicate does not wait for the running transaction");
    let took = asked.elapsed();
    match duplicate {
        Err(BodyError::Idem(Error::InProgress { lease_until_ms, .. })) => {
            assert_eq!(
                lease_until_ms, None,
                "a transaction's hold has no lease end"
            )
        }
        other => panic!("expected in progress, got {other:?}"),
    }
    assert!(
        took < Duration::from_secs(1),
        "in progress at once, took {took:?}"
    );
    release.send(()).unwrap();
    let report = first.await.unwrap().unwrap();
    assert_eq!(report.source, Source::Ran);
    assert_eq!(ledger_rows(&store, "k1").await, 1);
}

/// Under each isolation level: the body runs past the lease (3 heartbeat intervals of
/// the clock-lease form), a duplicate that waits gets the value replayed once the
/// transaction commits (under REPEATABLE READ and SERIALIZABLE it meets a
/// serialization failure first, and begins again in a fresh transaction), and the
/// ledger has one row.
#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_waiting_duplicate_replays_under_every_isolation_level() {
    for (label, isolation) in [
        ("rc", Isolation::ReadCommitted),
        ("rr", Isolation::RepeatableRead),
        ("ser", Isolation::Serializable),
    ] {
        let store = ledger_store(&format!("wait_{label}")).await;
        let engine = engine(&store);
        let schema = store.cleanup.0.clone();
        let runs = AtomicUsize::new(0);
        let call = |wait: Option<Duration>| {
            let call = Call::new(NS, "k2").engine(&engine).isolation(isolation);
            match wait {
                Some(wait) => call.wait(wait),
                None => call,
            }
        };
        let body = async |ctx: idem_core::Context, tx: &mut PgTransaction| {
            runs.fetch_add(1, Ordering::SeqCst);
            insert(&schema, "k2", tx, ctx.fence()).await?;
            tokio::time::sleep(Duration::from_millis(700)).await;
            Ok::<_, BodyError>(ctx.fence())
        };
        let first = call(None).run_in_transaction_reported(body);
        let duplicate = async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            call(Some(Duration::from_secs(5)))
                .run_in_transaction_reported(body)
                .await
        };
        let (first, duplicate) = tokio::join!(first, duplicate);
        let (first, duplicate) = (first.unwrap(), duplicate.unwrap());
        assert_eq!(first.source, Source::Ran, "{label}");
        assert_eq!(duplicate.source, Source::Replayed, "{label}");
        assert_eq!(duplicate.value, first.value, "{label}");
        assert_eq!(runs.load(Ordering::SeqCst), 1, "{label}");
        assert_eq!(ledger_rows(&store, "k2").await, 1, "{label}");
    }
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_rolled_back_attempt_frees_the_key_and_its_fence_is_never_reused() {
    let store = ledger_store("rollback").await;
    let engine = engine(&store);
    let schema = store.cleanup.0.clone();
    // A plain call that fails leaves the record released (fence 1), so the attempts
    // below update that row rather than insert one: a rolled-back update of its fence
    // alone would hand the next attempt the same fence again.
    let released = Call::new(NS, "k3")
        .engine(&engine)
        .run(|_| async { Err::<u64, _>(Error::Config("the plain body fails".into())) })
        .await;
    assert!(matches!(released, Err(Error::Config(_))));
    let mut fences = vec![1];
    for _ in 0..2 {
        let failed = Call::new(NS, "k3")
            .engine(&engine)
            .run_in_transaction(async |ctx, tx: &mut PgTransaction| {
                fences.push(ctx.fence());
                insert(&schema, "k3", tx, ctx.fence()).await?;
                Err::<u64, _>(BodyError::Idem(Error::Config("the body fails".into())))
            })
            .await;
        assert!(matches!(failed, Err(BodyError::Idem(Error::Config(_)))));
    }
    // A body that panics rolls back too.
    let panicking_fence = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let panicked = tokio::spawn({
        let (engine, schema) = (engine.clone(), schema.clone());
        let panicking_fence = panicking_fence.clone();
        async move {
            Call::new(NS, "k3")
                .engine(&engine)
                .run_in_transaction(async |ctx, tx: &mut PgTransaction| {
                    panicking_fence.store(ctx.fence(), Ordering::SeqCst);
                    insert(&schema, "k3", tx, ctx.fence()).await?;
                    if ctx.fence() > 0 {
                        panic!("the body panics after its write");
                    }
                    Ok::<_, BodyError>(ctx.fence())
                })
                .await
        }
    })
    .await;
    assert!(panicked.unwrap_err().is_panic());
    fences.push(panicking_fence.load(Ordering::SeqCst));
    // A call cancelled mid-body (its future dropped) rolls back as well.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(300),
        Call::new(NS, "k3").engine(&engine).run_in_transaction(
            async |ctx, tx: &mut PgTransaction| {
                fences.push(ctx.fence());
                insert(&schema, "k3", tx, ctx.fence()).await?;
                std::future::pending::<()>().await;
                Ok::<_, BodyError>(0)
            },
        ),
    )
    .await;
    assert!(cancelled.is_err(), "the body never ends: cancelled");
    let report = Call::new(NS, "k3")
        .engine(&engine)
        .run_in_transaction_reported(async |ctx, tx: &mut PgTransaction| {
            insert(&schema, "k3", tx, ctx.fence()).await?;
            Ok::<_, BodyError>(ctx.fence())
        })
        .await
        .unwrap();
    assert_eq!(report.source, Source::Ran, "the key was free");
    fences.push(report.fence);
    assert!(
        fences.windows(2).all(|pair| pair[0] < pair[1]),
        "every attempt a higher fence: {fences:?}"
    );
    assert_eq!(ledger_rows(&store, "k3").await, 1);
}

/// Two SERIALIZABLE bodies (two keys) each read the ledger, then write it: a write
/// skew. The database aborts one, in its body or at its commit; either way its writes
/// and its record are rolled back, the error says a retry may cure it and keeps the
/// database's 40001, and the retry runs.
#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_serialization_failure_rolls_back_and_is_retryable_with_its_source() {
    let store = ledger_store("skew").await;
    let engine = engine(&store);
    let schema = store.cleanup.0.clone();
    let barrier = tokio::sync::Barrier::new(2);
    // The two first calls meet at the barrier between their read and their write; the
    // retry does not wait for anyone.
    let call = |key: &'static str, meet: bool| {
        let (engine, schema, barrier) = (&engine, &schema, &barrier);
        async move {
            Call::new(NS, key)
                .engine(engine)
                .isolation(Isolation::Serializable)
                .run_in_transaction(async |ctx, tx: &mut PgTransaction| {
                    let count = format!("SELECT count(*) FROM \"{schema}\".ledger");
                    let _: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count))
                        .fetch_one(&mut **tx)
                        .await?;
                    if meet {
                        barrier.wait().await;
                    }
                    insert(schema, key, tx, ctx.fence()).await?;
                    Ok::<_, BodyError>(ctx.fence())
                })
                .await
        }
    };
    let (a, b) = tokio::join!(call("ka", true), call("kb", true));
    let (failed_key, error) = match (a, b) {
        (Ok(_), Err(error)) => ("kb", error),
        (Err(error), Ok(_)) => ("ka", error),
        other => panic!("one of the two must be aborted: {other:?}"),
    };
    match &error {
        BodyError::Database(database) => {
            assert_eq!(sqlstate(database).as_deref(), Some("40001"), "{error:?}")
        }
        BodyError::Idem(idem @ Error::Store { source, .. }) => {
            assert_eq!(source.kind(), idem_core::store::StoreErrorKind::Transient);
            assert_eq!(sqlstate(idem).as_deref(), Some("40001"), "{idem:?}");
        }
        other => panic!("expected a serialization failure, got {other:?}"),
    }
    assert_eq!(ledger_rows(&store, failed_key).await, 0, "rolled back");
    let retried = call(failed_key, false).await;
    assert!(retried.is_ok(), "the retry runs: {retried:?}");
    assert_eq!(ledger_rows(&store, failed_key).await, 1);
}

/// The plain form's begin meets a key a lock-held transaction holds (its row locked,
/// not yet committed): it waits on the row lock, as it waits behind any completion
/// before its commit, bounded by the engine's store timeout (500 ms here). A body that
/// commits within it is replayed; one that runs longer makes the plain call a
/// transient store error, and no body of its own runs.
#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_plain_call_meeting_a_held_key_waits_for_its_commit_within_the_store_timeout() {
    let store = ledger_store("mixed").await;
    let engine = engine(&store);
    let plain = |key: &'static str| {
        Call::new(NS, key)
            .engine(&engine)
            .run_reported(|_| async { Ok::<_, Error>(0) })
    };

    let (release, first) = held_until_released(&store, "k4").await;
    let committing = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        release.send(()).unwrap();
        first.await.unwrap().unwrap()
    });
    let asked = Instant::now();
    let replayed = plain("k4")
        .await
        .expect("the plain call waits, then replays");
    let first = committing.await.unwrap();
    assert_eq!(replayed.source, Source::Replayed);
    assert_eq!(replayed.value, first.value);
    assert!(
        asked.elapsed() >= Duration::from_millis(100),
        "{:?}",
        asked.elapsed()
    );

    let (release, first) = held_until_released(&store, "k5").await;
    let timed_out = plain("k5")
        .await
        .expect_err("the body outlives the store timeout");
    assert!(
        matches!(
            &timed_out,
            Error::Store {
                operation: "begin",
                ..
            }
        ) && timed_out.is_retryable(),
        "{timed_out:?}"
    );
    release.send(()).unwrap();
    assert_eq!(first.await.unwrap().unwrap().source, Source::Ran);
    assert_eq!(plain("k5").await.unwrap().source, Source::Replayed);
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_recorded_error_is_replayed_and_the_body_s_writes_are_not_kept() {
    let store = ledger_store("recorded").await;
    let engine = engine(&store);
    let schema = store.cleanup.0.clone();
    let runs = AtomicUsize::new(0);
    for _ in 0..2 {
        let answer = Call::new(NS, "k5")
            .engine(&engine)
            .replay_errors(|e: &Refusal| *e == Refusal::Declined)
            .run_in_transaction(async |ctx, tx: &mut PgTransaction| {
                runs.fetch_add(1, Ordering::SeqCst);
                insert(&schema, "k5", tx, ctx.fence())
                    .await
                    .map_err(|e| Refusal::Other(e.to_string()))?;
                Err::<u64, Refusal>(Refusal::Declined)
            })
            .await;
        assert_eq!(answer, Err(Refusal::Declined));
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the error was recorded and replayed"
    );
    assert_eq!(ledger_rows(&store, "k5").await, 0);
}

/// Twenty duplicates of a completed key at once (a barrier), five rounds: every one
/// replays the record, none is told `InProgress`. A hold refused by a completed record
/// used to keep the row locked until its rollback (`INSERT ... ON CONFLICT DO UPDATE`
/// locks the row its `WHERE` refuses), and the next duplicate's 1 ms `lock_timeout`
/// read that lock as a holder; the hold now refuses a record live as last committed
/// without a lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn concurrent_duplicates_of_a_completed_key_all_replay() {
    let store = ledger_store("storm").await;
    let engine = engine(&store);
    let call = |engine: Engine| async move {
        Call::new(NS, "k7")
            .engine(&engine)
            .run_in_transaction_reported(async |ctx, _: &mut PgTransaction| {
                Ok::<_, Error>(ctx.fence())
            })
            .await
    };
    let first = call(engine.clone()).await.unwrap();
    assert_eq!(first.source, Source::Ran);
    const DUPLICATES: usize = 20;
    for round in 0..5 {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(DUPLICATES));
        let duplicates: Vec<_> = (0..DUPLICATES)
            .map(|_| {
                let (engine, barrier) = (engine.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    call(engine).await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for duplicate in duplicates {
            answers.push(duplicate.await.unwrap());
        }
        let not_replayed: Vec<_> = answers
            .iter()
            .filter(|answer| !matches!(answer, Ok(report) if report.source == Source::Replayed))
            .collect();
        assert!(
            not_replayed.is_empty(),
            "round {round}: {} of {DUPLICATES} duplicates did not replay: {not_replayed:?}",
            not_replayed.len()
        );
        for answer in &answers {
            let replayed = answer.as_ref().unwrap();
            assert_eq!(replayed.value, first.value);
            assert_eq!(
                replayed.fence, first.fence,
                "the record has the attempt's fence"
            );
        }
    }
}

/// A recorded error whose completion fails (a trigger on the records table refuses
/// it: a failure injected between taking the key and completing it) leaves nothing
/// committed, no record in progress, and the next call runs at once (the lease is 30 s).
/// The error used to be recorded by the store's own begin, which committed a clock
/// lease first, then a completion: one that failed (or a crash, or a cancelled call, in
/// between) left the key in progress until that lease lapsed. It is now taken, completed
/// and committed in one fresh transaction, rolled back as a whole.
#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_recorded_error_whose_completion_fails_leaves_the_key_free() {
    let store = ledger_store("stray").await;
    let schema = store.cleanup.0.clone();
    let engine = Engine::builder(store.store.clone())
        .lease(Duration::from_secs(30))
        .store_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let execute = |statement: String| {
        let pool = store.pool().clone();
        async move {
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    let table = store.table().to_owned();
    execute(format!(
        "CREATE FUNCTION \"{schema}\".refuse_errors() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'injected: the completion of an error fails'; END $$;
         CREATE TRIGGER refuse_errors BEFORE UPDATE ON {table} FOR EACH ROW
             WHEN (NEW.outcome = 'err') EXECUTE FUNCTION \"{schema}\".refuse_errors();"
    ))
    .await;
    let runs = AtomicUsize::new(0);
    let call = || {
        Call::new(NS, "k6")
            .engine(&engine)
            .replay_errors(|e: &Refusal| *e == Refusal::Declined)
            .run_in_transaction_reported(async |ctx, tx: &mut PgTransaction| {
                runs.fetch_add(1, Ordering::SeqCst);
                insert(&schema, "k6", tx, ctx.fence())
                    .await
                    .map_err(|e| Refusal::Other(e.to_string()))?;
                match runs.load(Ordering::SeqCst) {
                    1 => Err(Refusal::Declined),
                    _ => Ok(ctx.fence()),
                }
            })
    };
    assert_eq!(call().await.unwrap_err(), Refusal::Declined);
    let in_progress: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {table} WHERE state = 'INPROGRESS'"
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(in_progress, 0, "no record in progress is committed");
    execute(format!("DROP TRIGGER refuse_errors ON {table}")).await;
    let next = call().await.expect("the key is free: the next call runs");
    assert_eq!(next.source, Source::Ran);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(
        ledger_rows(&store, "k6").await,
        1,
        "the failed body's row is gone"
    );
}

/// An error to record after the rollback, when another attempt took the key in
/// between: a duplicate waiting (`wait`) on the failing attempt's row takes the key as
/// soon as that attempt rolls back, and holds it while its body runs. The failing
/// call's fresh hold, which does not wait, finds the key busy: its error comes back at
/// once, unrecorded, while the duplicate still holds the key, and the record is the
/// duplicate's value.
#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn an_error_is_not_recorded_over_an_attempt_that_took_the_key_after_the_rollback() {
    let store = ledger_store("busy_record").await;
    let engine = engine(&store);
    let schema = store.cleanup.0.clone();
    let (failing_started, failing_running) = oneshot::channel();
    let (fail_now, told_to_fail) = oneshot::channel::<()>();
    let failing = {
        let (engine, schema) = (engine.clone(), schema.clone());
        tokio::spawn(async move {
            Call::new(NS, "k8")
                .engine(&engine)
                .replay_errors(|e: &Refusal| *e == Refusal::Declined)
                .run_in_transaction(async |ctx, tx: &mut PgTransaction| {
                    insert(&schema, "k8", tx, ctx.fence())
                        .await
                        .map_err(|e| Refusal::Other(e.to_string()))?;
                    failing_started.send(()).unwrap();
                    told_to_fail.await.unwrap();
                    Err::<u64, Refusal>(Refusal::Declined)
                })
                .await
        })
    };
    failing_running.await.unwrap();
    let (took_started, took_running) = oneshot::channel();
    let (release, released) = oneshot::channel::<()>();
    let took_over = {
        let (engine, schema) = (engine.clone(), schema.clone());
        tokio::spawn(async move {
            Call::new(NS, "k8")
                .engine(&engine)
                .wait(Duration::from_secs(10))
                .run_in_transaction_reported(async |ctx, tx: &mut PgTransaction| {
                    insert(&schema, "k8", tx, ctx.fence()).await?;
                    took_started.send(()).unwrap();
                    released.await.unwrap();
                    Ok::<_, BodyError>(ctx.fence())
                })
                .await
        })
    };
    // The duplicate's hold waits on the failing attempt's row lock by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    fail_now.send(()).unwrap();
    let failed = tokio::time::timeout(Duration::from_secs(5), failing)
        .await
        .expect("the failing call answers while the other attempt holds the key")
        .unwrap();
    assert_eq!(failed, Err(Refusal::Declined));
    took_running
        .await
        .expect("the duplicate took the key after the rollback");
    release.send(()).unwrap();
    let took_over = took_over.await.unwrap().unwrap();
    assert_eq!(took_over.source, Source::Ran);
    let replayed = Call::new(NS, "k8")
        .engine(&engine)
        .run_in_transaction_reported(async |_, _: &mut PgTransaction| Ok::<_, BodyError>(0))
        .await
        .unwrap();
    assert_eq!(replayed.source, Source::Replayed);
    assert_eq!(
        replayed.value, took_over.value,
        "the record is the duplicate's value"
    );
    assert_eq!(ledger_rows(&store, "k8").await, 1);
}

/// Three transactions on one key, through the store's `Transaction` alone: A holds it;
/// B, then C, wait for it (`wait`, both seen waiting on a lock in `pg_stat_activity`
/// before the next starts); A rolls back. Whichever of B and C takes the key first gets
/// a fence above A's, and the other, which takes it once the first rolls back, one above
/// that: fences rise in the order the key was taken. Over a committed free row (the
/// update path) and a new key (the insert path), 20 rounds each: B and C wake together
/// when A ends and either may win, so a fence drawn before the statement waited (B's
/// below C's) came out of order whenever C won.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn queued_holders_get_fences_in_the_order_they_take_the_key() {
    use idem_core::store::{Attempt, Begin, Hold, Transaction as _, Written};
    use idem_core::Store as _;

    let store = store("queued").await;
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let request = |id: &idem_core::RecordId, owner: &str| {
        let now_ms = now_ms();
        Begin {
            id: id.clone(),
            owner: idem_core::testkit::owner(owner),
            now_ms,
            lease_until_ms: now_ms + 30_000,
            expires_at_s: (now_ms + 30_000) / 1000 + 3600,
            fingerprint: None,
        }
    };
    let taken = |hold: Hold| match hold {
        Hold::Taken(fence) => fence,
        other => panic!("expected the key taken, got {other:?}"),
    };
    let open = || async { PgTransaction::open(&store.store, None).await.unwrap() };
    // A transaction whose hold waits for the key: the task that awaits it, returned once
    // it is seen waiting.
    #[allow(clippy::async_yields_async)]
    let queued = |id: idem_core::RecordId, owner: &'static str| {
        let store = store.store.clone();
        let request = request(&id, owner);
        async move {
            let mut tx = PgTransaction::open(&store, None).await.unwrap();
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            let holding = tokio::spawn(async move {
                let hold = tx.hold(&request, Some(Duration::from_secs(10))).await;
                (tx, taken(hold.unwrap()))
            });
            let started = Instant::now();
            loop {
                let waiting: Option<String> = sqlx::query_scalar(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1",
                )
                .bind(pid)
                .fetch_one(store.pool())
                .await
                .unwrap();
                if waiting.as_deref() == Some("Lock") {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "{owner} never waits"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            holding
        }
    };
    let mut inversions_seen = Vec::new();
    for path in ["update", "insert"] {
        for round in 0..20 {
            let id = idem_core::testkit::test_id(&format!("{NS}#{path}-{round}"));
            if path == "update" {
                // A committed row, released: free.
                let begin = request(&id, "plain");
                let Ok(Written::Applied(fence)) = store.begin(&begin).await else {
                    panic!("the plain begin applies")
                };
                let attempt = Attempt {
                    id: id.clone(),
                    owner: begin.owner,
                    fence,
                };
                assert!(matches!(
                    store.release(&attempt).await,
                    Ok(Written::Applied(()))
                ));
            }
            let mut a = open().await;
            let a_fence = taken(a.hold(&request(&id, "a"), None).await.unwrap());
            let mut b = queued(id.clone(), "b").await;
            let mut c = queued(id.clone(), "c").await;
            a.rollback().await.unwrap();
            let (winner, (first, first_fence), later) = tokio::select! {
                b = &mut b => ("b", b.unwrap(), c),
                c = &mut c => ("c", c.unwrap(), b),
            };
            assert!(!later.is_finished(), "the other still waits for the key");
            first.rollback().await.unwrap();
            let (last, last_fence) = later.await.unwrap();
            last.rollback().await.unwrap();
            let fences = [a_fence, first_fence, last_fence];
            if !fences.windows(2).all(|pair| pair[0] < pair[1]) {
                inversions_seen.push(format!("{path} {round}: {winner} first, {fences:?}"));
            }
        }
    }
    assert!(
        inversions_seen.is_empty(),
        "fences out of the order the key was taken in (A, then the winner, then the other): \
         {inversions_seen:#?}"
    );
}

#[allow(dead_code)]
#[path = "../benches/common/mod.rs"]
mod bench_common;

/// Statements (round trips) a first call and a duplicate send, counted from sqlx's own
/// per-statement events, in both forms: held by the transaction, `BEGIN`, the hold, the
/// completion and `COMMIT` for a first call, and `BEGIN`, the hold refused with the
/// completed record and `ROLLBACK` for a duplicate; under a clock lease, the begin,
/// `BEGIN`, the completion and `COMMIT`, and one begin for a duplicate. sqlx sends its
/// `BEGIN` as a queued simple query without an event: one round trip more than counted
/// for each transaction (4 and 3 held, 4 and 1 under a lease).
#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn statements_per_first_call_and_per_duplicate() {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    async fn count(store: &TestStore, key: &str) -> (u64, u64) {
        let engine = Engine::new(store.store.clone());
        let call = |key: String| {
            let engine = engine.clone();
            async move {
                Call::new(NS, key.as_str())
                    .engine(&engine)
                    .run_in_transaction(async |_, _: &mut PgTransaction| Ok::<_, Error>(7))
                    .await
                    .unwrap()
            }
        };
        // Every statement prepared on the connection first.
        call(format!("{key}-warm")).await;
        call(format!("{key}-warm")).await;
        let counted = Arc::new(AtomicU64::new(0));
        let _counting =
            tracing::subscriber::set_default(bench_common::CountStatements(counted.clone()));
        call(key.to_owned()).await;
        let first = counted.swap(0, Ordering::SeqCst);
        call(key.to_owned()).await;
        (first, counted.load(Ordering::SeqCst))
    }
    let held = count(&store("count_held").await, "held").await;
    let leased = count(&common::clock_lease_store("count_leased").await, "leased").await;
    eprintln!(
        "statements with an event (and one BEGIN each): held by the transaction, first \
         call {}, duplicate {}; under a clock lease, first call {}, duplicate {}",
        held.0, held.1, leased.0, leased.1
    );
    assert_eq!(held, (3, 2), "BEGIN not counted");
    assert_eq!(leased, (3, 1), "BEGIN not counted");
}

/// The lock-held form and the journal: a hold keeps the journal of the record it takes
/// (a clock-lease attempt's, released), the held attempt journals in its transaction
/// (conditioned on the fence the row keeps while held, as its completion is), and the
/// completion of the held key (`complete_held`) empties the journal with its commit.
#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_hold_keeps_the_journal_and_the_held_completion_empties_it() {
    use idem_core::store::{
        Attempt, Begin, Codec, Completion, Hold, Outcome, State, StepRecord, Transaction as _,
        Written,
    };
    use idem_core::Store as _;

    let store = store("heldjournal").await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let id = idem_core::testkit::fresh_id("heldjournal");
    let request = |owner: &str| Begin {
        id: id.clone(),
        owner: idem_core::testkit::owner(owner),
        now_ms,
        lease_until_ms: now_ms + 30_000,
        expires_at_s: (now_ms + 30_000) / 1000 + 3600,
        fingerprint: None,
    };
    let step = |name: &str| StepRecord {
        name: name.into(),
        outcome: Some(Outcome::Ok),
        data: Some(vec![0xff, b'1'].into()),
        codec: Codec::Bytes,
    };
    let Written::Applied(fence) = store.begin(&request("plain")).await.unwrap() else {
        panic!("the plain begin applies")
    };
    let plain = Attempt {
        id: id.clone(),
        owner: idem_core::testkit::owner("plain"),
        fence,
    };
    assert_eq!(
        store.journal(&plain, &step("s1")).await.unwrap(),
        Written::Applied(())
    );
    assert_eq!(store.release(&plain).await.unwrap(), Written::Applied(()));

    let mut tx = PgTransaction::open(&store.store, None).await.unwrap();
    let Hold::Taken(held_fence) = tx.hold(&request("held"), None).await.unwrap() else {
        panic!("the hold takes the released key")
    };
    let held = Attempt {
        id: id.clone(),
        owner: idem_core::testkit::owner("held"),
        fence: held_fence,
    };
    assert_eq!(
        tx.journal(&held, &step("s2")).await.unwrap(),
        Written::Applied(())
    );
    assert_eq!(
        tx.complete(
            &held,
            &Completion {
                now_ms,
                expires_at_s: now_ms / 1000 + 3600,
                outcome: Outcome::Ok,
                data: Some(b"1".to_vec().into()),
                codec: Codec::Json,
            }
        )
        .await
        .unwrap(),
        Written::Applied(())
    );
    assert_eq!(
        store.read(&id).await.unwrap().unwrap().steps,
        [step("s1")],
        "the committed record until the commit"
    );
    tx.commit().await.unwrap();
    let record = store.read(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.fence, record.steps.to_vec()),
        (State::Completed, held_fence, vec![])
    );
}

/// Before its completion, the held attempt's journal shows in its own transaction with
/// the kept entry first; a rolled-back hold leaves the journal as it was.
#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_rolled_back_hold_leaves_the_journal_as_it_was() {
    use idem_core::store::{Attempt, Begin, Hold, StepRecord, Transaction as _, Written};
    use idem_core::Store as _;

    let store = store("heldjournalrb").await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let id = idem_core::testkit::fresh_id("heldjournalrb");
    let request = |owner: &str| Begin {
        id: id.clone(),
        owner: idem_core::testkit::owner(owner),
        now_ms,
        lease_until_ms: now_ms + 30_000,
        expires_at_s: (now_ms + 30_000) / 1000 + 3600,
        fingerprint: None,
    };
    let Written::Applied(fence) = store.begin(&request("plain")).await.unwrap() else {
        panic!("the plain begin applies")
    };
    let plain = Attempt {
        id: id.clone(),
        owner: idem_core::testkit::owner("plain"),
        fence,
    };
    store
        .journal(&plain, &StepRecord::started("s1"))
        .await
        .unwrap();
    store.release(&plain).await.unwrap();
    let mut tx = PgTransaction::open(&store.store, None).await.unwrap();
    let Hold::Taken(held_fence) = tx.hold(&request("held"), None).await.unwrap() else {
        panic!("the hold takes the released key")
    };
    let held = Attempt {
        id: id.clone(),
        owner: idem_core::testkit::owner("held"),
        fence: held_fence,
    };
    tx.journal(&held, &StepRecord::started("s2")).await.unwrap();
    let names: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT step_names FROM {} WHERE id = $1",
        store.table()
    )))
    .bind(id.to_string())
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(names, ["s1", "s2"]);
    tx.rollback().await.unwrap();
    let record = store.read(&id).await.unwrap().unwrap();
    assert_eq!(
        (record.owner, record.steps.to_vec()),
        (
            idem_core::testkit::owner("plain"),
            vec![StepRecord::started("s1")]
        )
    );
}
