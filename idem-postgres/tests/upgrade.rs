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
    .bind(&id)
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
        .bind(&id)
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
