//! The test helper: a schema of its own per test, its tables reached by unqualified
//! names, its engine ready, and the schema gone once the helper is dropped (after a
//! panic too).

mod common;

use idem_core::{Call, Error, Source};
use idem_postgres::testing::TestSchema;
use idem_postgres::PgTransaction;

async fn schema_exists(name: &str) -> bool {
    let pool = common::pool(1).await;
    sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)")
        .bind(name)
        .fetch_one(&pool)
        .await
        .unwrap()
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_body_writes_its_unqualified_tables_in_the_test_s_own_schema_which_is_dropped_after() {
    let db = TestSchema::new(&common::url()).await.unwrap();
    sqlx::raw_sql("CREATE TABLE ledger (order_id text NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap();
    let mut sources = Vec::new();
    for _ in 0..2 {
        let report = Call::new("payments::charge", "order-7")
            .engine(db.engine())
            .run_in_transaction_reported(async |_, tx: &mut PgTransaction| {
                sqlx::query("INSERT INTO ledger (order_id) VALUES ($1)")
                    .bind("order-7")
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| Error::Config(e.to_string()))?;
                Ok::<_, Error>(1250)
            })
            .await
            .unwrap();
        sources.push(report.source);
    }
    assert_eq!(sources, [Source::Ran, Source::Replayed]);
    let qualified = format!("SELECT count(*) FROM \"{}\".ledger", db.name());
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(qualified))
        .fetch_one(&common::pool(1).await)
        .await
        .unwrap();
    assert_eq!(rows, 1, "the row is in the test's schema");
    let name = db.name().to_owned();
    assert!(schema_exists(&name).await);
    drop(db);
    assert!(!schema_exists(&name).await, "dropped with the helper");

    // A test that panics drops its schema too.
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let panicked = tokio::spawn(async move {
        let db = TestSchema::new(&common::url()).await.unwrap();
        sender.send(db.name().to_owned()).unwrap();
        panic!("the test fails");
    })
    .await;
    assert!(panicked.unwrap_err().is_panic());
    let name = receiver.await.unwrap();
    assert!(!schema_exists(&name).await, "dropped during the panic");
}
