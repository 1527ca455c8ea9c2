//! What is specific to PostgreSQL: the cleanup of expired rows, rows that cannot be
//! decoded, the size limit, and how the server's errors are classed.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{pool, store, Schema, TestStore};
use idem_core::store::{Outcome, StoreError, StoreErrorKind, Written};
use idem_core::testkit::{attempt, begin_at, completion_at, fresh_id, T0};
use idem_core::{Call, Engine, Error, Store};
use idem_postgres::PgStore;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

const NS: &str = "tests::postgres";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn count(store: &TestStore) -> i64 {
    let statement = format!("SELECT count(*) FROM {}", store.table());
    sqlx::query_scalar(sqlx::AssertSqlSafe(statement))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// A transaction holding the row of `id` locked, as a live call's would.
async fn lock(
    store: &PgStore,
    id: &idem_core::RecordId,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut holder = store.pool().begin().await.unwrap();
    let statement = format!("SELECT 1 FROM {} WHERE id = $1 FOR UPDATE", store.table());
    sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(id.to_string())
        .execute(&mut *holder)
        .await
        .unwrap();
    holder
}

async fn execute(store: &PgStore, statement: String) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(store.pool())
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn purge_deletes_expired_rows_in_batches_and_skips_locked_ones_without_waiting() {
    let store = store("purge").await;
    // 25 records of 2024: expired long ago (in progress past their lease, completed
    // past their TTL, released).
    for n in 0..25u64 {
        let id = fresh_id("purge-old");
        let Written::Applied(fence) = store
            .begin(&begin_at(&id, "old", T0 + n, None))
            .await
            .unwrap()
        else {
            panic!("begin on a new id");
        };
        match n % 3 {
            0 => {}
            1 => {
                let done = completion_at(T0 + n, Outcome::Ok, Some("1"));
                store
                    .complete(&attempt(&id, "old", fence), &done)
                    .await
                    .unwrap();
            }
            _ => {
                store.release(&attempt(&id, "old", fence)).await.unwrap();
            }
        }
    }
    // Live records: in progress now, and completed now.
    let now = now_ms();
    let live = fresh_id("purge-live");
    store
        .begin(&begin_at(&live, "new", now, None))
        .await
        .unwrap();
    let done = fresh_id("purge-done");
    store
        .begin(&begin_at(&done, "new", now, None))
        .await
        .unwrap();
    let completion = completion_at(now, Outcome::Ok, Some("2"));
    store
        .complete(&attempt(&done, "new", 1), &completion)
        .await
        .unwrap();
    // An expired record that a transaction holds locked.
    let locked = fresh_id("purge-locked");
    store
        .begin(&begin_at(&locked, "old", T0, None))
        .await
        .unwrap();
    let holder = lock(&store, &locked).await;

    let mut batches = Vec::new();
    loop {
        let deleted = tokio::time::timeout(Duration::from_secs(10), store.purge_expired(10))
            .await
            .expect("purge does not wait for the locked row")
            .unwrap();
        batches.push(deleted);
        if deleted < 10 {
            break;
        }
    }
    assert_eq!(batches, [10, 10, 5]);
    assert_eq!(
        count(&store).await,
        3,
        "the live, the completed and the locked record stay"
    );
    for id in [&live, &done, &locked] {
        assert!(store.read(id).await.unwrap().is_some(), "{id}");
    }
    holder.rollback().await.unwrap();
    assert_eq!(
        store.purge_expired(10).await.unwrap(),
        1,
        "unlocked, it goes too"
    );
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_row_that_cannot_be_decoded_is_a_decode_error_and_never_a_body_run() {
    let store = store("malformed").await;
    let engine = Engine::new(store.store.clone());
    let runs = AtomicUsize::new(0);
    let call = || {
        Call::new(NS, "bad").engine(&engine).run(|_| async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(1u32)
        })
    };
    call().await.unwrap();
    for corruption in [
        "state = 'DONE'",
        "outcome = 'maybe'",
        "fence = -1",
        "format = -2",
    ] {
        execute(&store, format!("UPDATE {} SET {corruption}", store.table())).await;
        let result = call().await;
        assert!(
            matches!(result, Err(Error::Decode { .. })),
            "{corruption}: {result:?}"
        );
        // The store's own error names the store, the table and the record.
        let id = engine.record_id(NS, "bad").unwrap();
        let read = store.read(&id).await.unwrap_err().to_string();
        for expected in ["PostgreSQL", store.table(), &id.to_string()] {
            assert!(read.contains(expected), "{corruption}: {expected}: {read}");
        }
        execute(
            &store,
            format!(
                "UPDATE {} SET state = 'COMPLETED', outcome = 'ok', fence = 1, format = 1",
                store.table()
            ),
        )
        .await;
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_value_over_the_size_limit_is_completed_as_not_stored() {
    let schema = Schema::new("limit");
    let store = PgStore::builder(pool(4).await)
        .schema(schema.0.clone())
        .max_data_bytes(8)
        .build()
        .unwrap();
    store.migrate().await.unwrap();
    let engine = Engine::new(store.clone());
    let call = || {
        Call::new(NS, "large")
            .engine(&engine)
            .run(|_| async { Ok::<_, Error>("more than eight bytes".to_owned()) })
    };
    assert_eq!(call().await.unwrap(), "more than eight bytes");
    assert!(matches!(call().await, Err(Error::ResultNotStored { .. })));
}

/// The error an operation on `store` ends with.
async fn begin_error(store: &PgStore) -> StoreError {
    let request = begin_at(fresh_id("errors"), "owner", now_ms(), None);
    store.begin(&request).await.expect_err("the begin fails")
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_missing_table_a_missing_permission_and_a_constraint_are_permanent_and_named() {
    // No migration: the table does not exist.
    let schema = Schema::new("missing");
    let missing = PgStore::builder(pool(2).await)
        .schema(schema.0.clone())
        .build()
        .unwrap();
    let error = begin_error(&missing).await;
    assert_eq!(error.kind(), StoreErrorKind::Permanent, "{error}");
    assert!(error.to_string().contains(missing.table()), "{error}");

    // A role without any privilege on the schema.
    let store = store("permission").await;
    let role = format!(
        "idem_test_role_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    execute(&store, format!("CREATE ROLE \"{role}\" LOGIN")).await;
    let options: PgConnectOptions = common::url().parse().unwrap();
    let unprivileged = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options.username(&role))
        .await
        .unwrap();
    let as_role = PgStore::builder(unprivileged.clone())
        .schema(store.cleanup.0.clone())
        .build()
        .unwrap();
    let error = begin_error(&as_role).await;
    unprivileged.close().await;
    execute(&store, format!("DROP ROLE \"{role}\"")).await;
    assert_eq!(error.kind(), StoreErrorKind::Permanent, "{error}");
    assert!(error.to_string().contains("permission denied"), "{error}");
    assert!(error.to_string().contains(store.table()), "{error}");

    // A constraint the table was given by hand.
    execute(
        &store,
        format!(
            "ALTER TABLE {} ADD CHECK (length(owner) < 3)",
            store.table()
        ),
    )
    .await;
    let error = begin_error(&store).await;
    assert_eq!(error.kind(), StoreErrorKind::Permanent, "{error}");
    assert!(error.to_string().contains(store.table()), "{error}");
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_pool_timeout_and_a_connection_killed_mid_statement_are_transient() {
    let store = store("transient").await;
    // Pool timeout: the pool's one connection is taken.
    let tiny = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(200))
        .connect(&common::url())
        .await
        .unwrap();
    let on_tiny = PgStore::builder(tiny.clone())
        .schema(store.cleanup.0.clone())
        .build()
        .unwrap();
    let taken = tiny.acquire().await.unwrap();
    let error = begin_error(&on_tiny).await;
    assert_eq!(error.kind(), StoreErrorKind::Transient, "{error}");
    drop(taken);

    // A connection killed while its begin waits on a locked row.
    let id = fresh_id("killed");
    let now = now_ms();
    store
        .begin(&begin_at(&id, "first", now, None))
        .await
        .unwrap();
    let holder = lock(&store, &id).await;
    let blocked = tokio::spawn({
        let on_tiny = on_tiny.clone();
        let request = begin_at(&id, "second", now + 60_000, None);
        async move { on_tiny.begin(&request).await }
    });
    // Kill the backend once it waits on the lock.
    let killer = pool(1).await;
    let mut killed = false;
    for _ in 0..100 {
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'WITH written AS (INSERT%'",
        )
        .fetch_all(&killer)
        .await
        .unwrap();
        if let Some(pid) = pids.first() {
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(&killer)
                .await
                .unwrap();
            killed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(killed, "the blocked begin was found");
    let error = blocked.await.unwrap().expect_err("the killed begin fails");
    assert_eq!(error.kind(), StoreErrorKind::Transient, "{error}");
    holder.rollback().await.unwrap();
    // The pool opens a new connection: the next call works.
    let next = on_tiny
        .begin(&begin_at(&id, "third", now + 60_000, None))
        .await
        .unwrap();
    assert_eq!(next, Written::Applied(2));
}

#[test]
fn table_and_schema_names_are_checked_before_they_reach_sql() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let lazy = PgPoolOptions::new()
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .unwrap();
    for bad in [
        "",
        "1table",
        "a\"; DROP TABLE x; --",
        "with space",
        &"x".repeat(49),
    ] {
        let error = PgStore::builder(lazy.clone())
            .table(bad)
            .build()
            .unwrap_err();
        assert!(
            error.to_string().contains("not a valid table name"),
            "{error}"
        );
        assert!(PgStore::builder(lazy.clone()).schema(bad).build().is_err());
    }
    let store = PgStore::builder(lazy)
        .schema("billing")
        .table("idem_v2")
        .build()
        .unwrap();
    assert_eq!(store.table(), "\"billing\".\"idem_v2\"");
    assert!(store
        .migration()
        .contains("CREATE TABLE IF NOT EXISTS \"billing\".\"idem_v2\""));
}

/// Every store error names PostgreSQL, the table and the operation, and keeps sqlx's
/// error as its `source()`: here every operation meets a table that does not exist.
#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn every_error_names_the_store_the_table_and_the_operation_and_keeps_its_source() {
    let store = PgStore::builder(pool(2).await)
        .table("idem_no_such_table")
        .build()
        .unwrap();
    let now = now_ms();
    let id = fresh_id("errors");
    let mine = attempt(&id, "a", 1);
    let errors: Vec<(&str, StoreError)> = vec![
        (
            "begin",
            store
                .begin(&begin_at(&id, "a", now, None))
                .await
                .unwrap_err(),
        ),
        (
            "complete",
            store
                .complete(&mine, &completion_at(now, Outcome::Ok, Some("1")))
                .await
                .unwrap_err(),
        ),
        (
            "extend",
            store
                .extend(
                    &mine,
                    &idem_core::store::Renewal {
                        now_ms: now,
                        lease_until_ms: now + 1000,
                        expires_at_s: now / 1000 + 60,
                    },
                )
                .await
                .unwrap_err(),
        ),
        ("release", store.release(&mine).await.unwrap_err()),
        (
            "journal",
            store
                .journal(&mine, &idem_core::store::StepRecord::started("s1"))
                .await
                .unwrap_err(),
        ),
        ("read", store.read(&id).await.unwrap_err()),
        ("delete", store.delete(&id).await.unwrap_err()),
    ];
    for (operation, error) in errors {
        let message = error.to_string();
        for expected in ["PostgreSQL", operation, "idem_no_such_table"] {
            assert!(
                message.contains(expected),
                "{operation}: {expected}: {message}"
            );
        }
        let source = std::error::Error::source(&error)
            .and_then(|source| source.downcast_ref::<sqlx::Error>());
        assert!(
            matches!(source, Some(sqlx::Error::Database(database)) if database.code().as_deref() == Some("42P01")),
            "{operation}: {source:?}"
        );
        assert_eq!(error.kind(), StoreErrorKind::Permanent, "{operation}");
    }
}

/// The journal as PostgreSQL keeps it: raw bytes in `step_data` (`bytea`), JSON as its
/// UTF-8 text, a started step's `NULL`s, an unknown codec's name and any step name as
/// they are; a journal write refused by a takeover answers the current record with its
/// journal, from the same statement.
#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn the_journal_keeps_every_byte_and_a_refused_journal_answers_with_the_steps() {
    use idem_core::store::{Codec, StepRecord};
    use idem_core::testkit::LEASE_MS;

    let store = store("journal").await;
    let id = fresh_id("journal");
    let Written::Applied(fence) = store.begin(&begin_at(&id, "a", T0, None)).await.unwrap() else {
        panic!("the begin applies")
    };
    let a = attempt(&id, "a", fence);
    let raw = StepRecord {
        name: "render, \"quoted\" {braces} é".into(),
        outcome: Some(Outcome::Ok),
        data: Some(vec![0x00, 0xff, 0xfe, b'\\', b'"'].into()),
        codec: Codec::Bytes,
    };
    let unknown = StepRecord {
        name: "zipped".into(),
        outcome: Some(Outcome::Err),
        data: Some(vec![0x80, 0x81].into()),
        codec: Codec::Unknown("zstd".into()),
    };
    let json = StepRecord {
        name: "charge".into(),
        outcome: Some(Outcome::Ok),
        data: Some(b"{\"id\":\"ch_1\"}".to_vec().into()),
        codec: Codec::Json,
    };
    let started = StepRecord::started("mail");
    for step in [&raw, &unknown, &json, &started] {
        assert_eq!(store.journal(&a, step).await.unwrap(), Written::Applied(()));
    }
    let steps = vec![raw.clone(), unknown, json, started];
    assert_eq!(store.read(&id).await.unwrap().unwrap().steps, steps);

    // The columns as stored: bytes as they are, JSON as its text, NULLs while started.
    let (codecs, data): (Vec<String>, Vec<Option<Vec<u8>>>) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT step_codecs, step_data FROM {} WHERE id = $1",
            store.table()
        )))
        .bind(id.to_string())
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(codecs, ["bytes", "zstd", "json", "json"]);
    assert_eq!(
        data,
        [
            Some(vec![0x00, 0xff, 0xfe, b'\\', b'"']),
            Some(vec![0x80, 0x81]),
            Some(b"{\"id\":\"ch_1\"}".to_vec()),
            None
        ]
    );

    // Taken over after the lease: a's journal is refused with b's record, a's steps in it.
    let Written::Applied(fence_b) = store
        .begin(&begin_at(&id, "b", T0 + LEASE_MS + 1, None))
        .await
        .unwrap()
    else {
        panic!("the takeover applies")
    };
    match store.journal(&a, &raw).await.unwrap() {
        Written::Refused(Some(current)) => {
            assert_eq!(
                (current.owner, current.fence),
                (idem_core::testkit::owner("b"), fence_b)
            );
            assert_eq!(current.steps, steps);
        }
        other => panic!("expected a refusal with the current record, got {other:?}"),
    }
    // A refused completion answers with the journal too.
    let done = completion_at(T0 + LEASE_MS + 2, Outcome::Ok, Some("1"));
    match store.complete(&a, &done).await.unwrap() {
        Written::Refused(Some(current)) => assert_eq!(current.steps, steps),
        other => panic!("expected a refusal with the current record, got {other:?}"),
    }
}

/// A journal whose columns disagree is a decode error naming the record, never a
/// journal read short.
#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_journal_whose_columns_disagree_is_malformed() {
    let store = store("badjournal").await;
    let id = fresh_id("badjournal");
    store.begin(&begin_at(&id, "a", T0, None)).await.unwrap();
    for corruption in [
        "step_names = '{a,b}', step_outcomes = '{ok}', step_codecs = '{json,json}', \
         step_data = '{1,2}'",
        "step_names = NULL, step_outcomes = '{ok}'",
        "step_names = '{a}', step_outcomes = '{maybe}', step_codecs = '{json}', \
         step_data = '{1}'",
        "step_names = '{NULL}', step_outcomes = '{ok}', step_codecs = '{json}', \
         step_data = '{1}'",
    ] {
        execute(&store, format!("UPDATE {} SET {corruption}", store.table())).await;
        let error = store.read(&id).await.unwrap_err();
        assert_eq!(
            error.kind(),
            StoreErrorKind::Malformed,
            "{corruption}: {error}"
        );
        assert!(
            error.to_string().contains(&id.to_string()),
            "{corruption}: {error}"
        );
    }
}
