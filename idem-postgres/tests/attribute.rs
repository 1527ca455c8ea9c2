//! `#[idempotent(transaction(tx: PgTransaction))]`: the attribute's form of
//! `Call::run_in_transaction`, on the machine's PostgreSQL.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use idem::{idempotent, Engine, Error};
use idem_postgres::PgTransaction;

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, thiserror::Error)]
enum PayError {
    #[error(transparent)]
    Idem(#[from] Error),
    #[error("the ledger write failed: {0}")]
    Ledger(#[from] sqlx::Error),
    #[error("the card was declined")]
    Declined,
}

/// One ledger row per order, committed with idem's record.
#[idempotent(key = order, engine = engine, transaction(tx: PgTransaction))]
async fn charge(engine: &Engine, schema: &str, order: u64, decline: bool) -> Result<u64, PayError> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    let insert = format!("INSERT INTO \"{schema}\".ledger (order_id) VALUES ($1)");
    sqlx::query(sqlx::AssertSqlSafe(insert))
        .bind(order as i64)
        .execute(&mut **tx)
        .await?;
    if decline {
        return Err(PayError::Declined);
    }
    Ok(order * 100)
}

#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn the_attribute_runs_the_body_in_a_transaction_with_its_record() {
    let store = common::store("attribute").await;
    let schema = store.cleanup.0.clone();
    let create = format!("CREATE TABLE \"{schema}\".ledger (order_id bigint NOT NULL)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(create))
        .execute(store.pool())
        .await
        .unwrap();
    let engine = Engine::new(store.store.clone());
    let rows = || async {
        let count = format!("SELECT count(*) FROM \"{schema}\".ledger");
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count))
            .fetch_one(store.pool())
            .await
            .unwrap()
    };

    // Declined after the write: the row is rolled back and the key released.
    assert!(matches!(
        charge(&engine, &schema, 7, true).await,
        Err(PayError::Declined)
    ));
    assert_eq!(rows().await, 0);
    // Charged, then replayed: one row.
    assert_eq!(charge(&engine, &schema, 7, false).await.unwrap(), 700);
    assert_eq!(charge(&engine, &schema, 7, false).await.unwrap(), 700);
    assert_eq!((rows().await, RUNS.load(Ordering::SeqCst)), (1, 2));
}
