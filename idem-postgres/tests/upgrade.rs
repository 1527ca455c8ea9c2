//! A table made and filled by an earlier build (before the bytes codec): this version names the
//! migration it needs, `migrate` adds the column without touching the rows, old records
//! replay, and bytes are then recorded as `bytea`.

mod common;

use bytes::Bytes;
use idem_core::store::Codec;
use idem_core::{Call, Engine, Error, Store};
use idem_postgres::PgStore;

/// The table as the earlier migration made it.
const OLD_TABLE: &str = r#"CREATE TABLE "{schema}"."idem_records" (
    id             text    PRIMARY KEY,
    state          text    NOT NULL,
    owner          text    NOT NULL,
    fence          bigint  NOT NULL,
    lease_until_ms bigint  NOT NULL,
    expires_at_s   bigint  NOT NULL,
    fingerprint    text,
    outcome        text,
    data           text,
    format         integer NOT NULL,
    codec          text    NOT NULL
)"#;

#[tokio::test]
#[ignore = "needs PostgreSQL: run through scripts/test"]
async fn a_table_of_the_earlier_version_is_named_migrated_and_its_records_replay() {
    let pool = common::pool(4).await;
    let schema = common::Schema::new("upgrade");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA \"{0}\"; {1}",
        schema.0,
        OLD_TABLE.replace("{schema}", &schema.0)
    )))
    .execute(&pool)
    .await
    .unwrap();
    let store = PgStore::builder(pool.clone())
        .schema(schema.0.clone())
        .build()
        .unwrap();
    let engine = Engine::new(store.clone());
    // A record completed by the earlier build: JSON text in `data`.
    let id = engine.record_id("upgrade", "old-1").unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO \"{}\".idem_records VALUES ($1, 'COMPLETED', 'old-owner', 4, 0, \
         extract(epoch from now())::bigint + 3600, NULL, 'ok', '{{\"group\":7}}', 1, 'json')",
        schema.0
    )))
    .bind(id.to_string())
    .execute(&pool)
    .await
    .unwrap();

    let runs = std::sync::atomic::AtomicUsize::new(0);
    let call = |key: &'static str| {
        Call::new("upgrade", key).engine(&engine).run(|_| async {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, Error>(serde_json::json!({ "group": 8 }))
        })
    };
    // Before the migration: every call fails naming it, and no body runs.
    match call("old-1").await {
        Err(Error::Store { source, .. }) => {
            let text = source.to_string();
            assert!(
                text.contains("ADD COLUMN IF NOT EXISTS data_bytes bytea"),
                "{text}"
            );
            assert!(text.contains("PgStore::migrate"), "{text}");
        }
        other => panic!("expected a store error naming the migration, got {other:?}"),
    }
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 0);

    store.migrate().await.unwrap();
    assert_eq!(
        call("old-1").await.unwrap(),
        serde_json::json!({ "group": 7 }),
        "the old record replays"
    );
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 0);

    // Bytes now go to `data_bytes`, JSON still to `data`.
    let blob = Bytes::from_static(b"\x00\xff\xfe not utf-8");
    let recorded = Call::new("upgrade", "new-1")
        .engine(&engine)
        .run(|_| async { Ok::<_, Error>(blob.clone()) })
        .await
        .unwrap();
    assert_eq!(recorded, blob);
    let id = engine.record_id("upgrade", "new-1").unwrap();
    let (data, data_bytes, codec): (Option<String>, Option<Vec<u8>>, String) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT data, data_bytes, codec FROM \"{}\".idem_records WHERE id = $1",
            schema.0
        )))
        .bind(id.to_string())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        (data, data_bytes.as_deref(), codec.as_str()),
        (None, Some(&blob[..]), "bytes")
    );
    let record = store.read(&id).await.unwrap().unwrap();
    assert_eq!(
        (&record.codec, record.data.as_ref()),
        (&Codec::Bytes, Some(&blob))
    );
    drop(schema);
}

/// The table as the version before steps made it (with `data_bytes`, no journal).
const BEFORE_STEPS: &str = r#"CREATE TABLE "{schema}"."idem_records" (
    id             text    PRIMARY KEY,
    state          text    NOT NULL,
    owner          text    NOT NULL,
    fence          bigint  NOT NULL,
    lease_until_ms bigint  NOT NULL,
    expires_at_s   bigint  NOT NULL,
    fingerprint    text,
    outcome        text,
    data           text,
    data_bytes     bytea,
    format         integer NOT NULL,
    codec          text    NOT NULL
);
CREATE INDEX "idem_records_expires_at_s" ON "{schema}"."idem_records" (expires_at_s);
CREATE SEQUENCE "{schema}"."idem_records_fence";"#;

/// A table made and filled by the version before steps: every statement of this one
/// fails naming the migration (no body runs); `migrate` (run twice: idempotent) adds the
/// journal's columns; the old records read with no steps, a completed one replays, and
/// an attempt in progress written by the old version journals and completes, which
/// empties the journal. A record an old build completed over a journal (its completion
/// left the columns) is taken over with no steps.
#[tokio::test]
#[ignore = "needs PostgreSQL: run through scripts/test"]
async fn a_table_from_before_steps_is_migrated_and_its_records_read_with_no_steps() {
    use idem_core::store::{Attempt, Completion, Outcome, StepRecord, Written};
    use idem_core::testkit::{begin_at, T0};

    let pool = common::pool(4).await;
    let schema = common::Schema::new("upgrade_steps");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA \"{0}\"; {1}",
        schema.0,
        BEFORE_STEPS.replace("{schema}", &schema.0)
    )))
    .execute(&pool)
    .await
    .unwrap();
    let store = PgStore::builder(pool.clone())
        .schema(schema.0.clone())
        .build()
        .unwrap();
    let engine = Engine::new(store.clone());
    let insert = |id: idem_core::RecordId, state: &'static str, owner: String, fence: i64| {
        let pool = pool.clone();
        let table = store.table().to_owned();
        async move {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {table} VALUES ($1, $2, $3, $4, \
                 (extract(epoch from now()) * 1000)::bigint + 60000, \
                 extract(epoch from now())::bigint + 3600, NULL, \
                 CASE $2 WHEN 'COMPLETED' THEN 'ok' END, \
                 CASE $2 WHEN 'COMPLETED' THEN '{{\"group\":7}}' END, NULL, 1, 'json')"
            )))
            .bind(id.to_string())
            .bind(state)
            .bind(owner)
            .bind(fence)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    let completed = engine.record_id("upgrade", "old-completed").unwrap();
    insert(completed.clone(), "COMPLETED", "old-owner".to_owned(), 4).await;
    let running = engine.record_id("upgrade", "old-running").unwrap();
    // Written as this build writes owners, so that the holder below can journal.
    insert(
        running.clone(),
        "INPROGRESS",
        idem_core::testkit::owner("old-runner").to_string(),
        2,
    )
    .await;

    let runs = std::sync::atomic::AtomicUsize::new(0);
    let call = |key: &'static str| {
        Call::new("upgrade", key).engine(&engine).run(|_| async {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, Error>(serde_json::json!({ "group": 8 }))
        })
    };
    // Before the migration: calls and reads fail naming it; no body runs.
    let named = |text: String| {
        assert!(
            text.contains("ADD COLUMN IF NOT EXISTS step_names text[]"),
            "{text}"
        );
        assert!(text.contains("PgStore::migrate"), "{text}");
    };
    match call("old-completed").await {
        Err(Error::Store { source, .. }) => named(source.to_string()),
        other => panic!("expected a store error naming the migration, got {other:?}"),
    }
    named(store.read(&running).await.unwrap_err().to_string());
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 0);

    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(
        call("old-completed").await.unwrap(),
        serde_json::json!({ "group": 7 }),
        "the old record replays"
    );
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(store.read(&completed).await.unwrap().unwrap().steps, []);

    // The old version's attempt in progress: no steps, then it journals and completes.
    let old = store.read(&running).await.unwrap().unwrap();
    assert_eq!(old.steps, []);
    let runner = Attempt {
        id: running.clone(),
        owner: idem_core::testkit::owner("old-runner"),
        fence: 2,
    };
    let step = StepRecord {
        name: "charge".into(),
        outcome: Some(Outcome::Ok),
        data: Some(b"1".to_vec().into()),
        codec: idem_core::store::Codec::Json,
    };
    assert_eq!(
        store.journal(&runner, &step).await.unwrap(),
        Written::Applied(())
    );
    let journaled = store.read(&running).await.unwrap().unwrap();
    assert_eq!(journaled.steps, [step]);
    assert_eq!(
        idem_core::store::Record {
            steps: idem_core::store::Steps::new(),
            ..(*journaled).clone()
        },
        *old,
        "the journal write changed nothing else"
    );
    let done = Completion {
        outcome: Outcome::Ok,
        data: Some(b"2".to_vec().into()),
        codec: idem_core::store::Codec::Json,
        now_ms: old.lease_until_ms - 1,
        expires_at_s: old.expires_at_s,
    };
    assert_eq!(
        store.complete(&runner, &done).await.unwrap(),
        Written::Applied(())
    );
    assert_eq!(store.read(&running).await.unwrap().unwrap().steps, []);

    // A record an old build completed over a journal (its completion left the
    // columns), expired: the begin that takes it over starts with no steps.
    let stale = idem_core::testkit::fresh_id("stale-journal");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {} VALUES ($1, 'COMPLETED', 'old', 3, 0, 1, NULL, 'ok', '1', NULL, 1, \
         'json', '{{charge}}', '{{ok}}', '{{json}}', '{{1}}')",
        store.table()
    )))
    .bind(stale.to_string())
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(store.read(&stale).await.unwrap().unwrap().steps.len(), 1);
    assert_eq!(
        store
            .begin(&begin_at(&stale, "new", T0, None))
            .await
            .unwrap(),
        Written::Applied(4)
    );
    assert_eq!(store.read(&stale).await.unwrap().unwrap().steps, []);
    drop(schema);
}
