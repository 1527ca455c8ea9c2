//! Heartbeats on a saturated pool: the clock-lease forms (a plain call, and
//! `run_in_transaction` with `lock_held(false)`) renew their leases on the store's own
//! connections, so bodies that hold every connection of the application's pool never
//! lose their leases to a duplicate from another process.
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{clock_lease_store_on, pool, TestStore};
use idem_core::{Call, Engine, Error, Source};
use idem_postgres::{PgStore, PgTransaction, DEFAULT_HEARTBEAT_CONNECTIONS};

const NS: &str = "tests::heartbeat";

/// The lease (heartbeats every 200 ms), and how long each body runs: three leases.
const LEASE: Duration = Duration::from_millis(600);
const BODY: Duration = Duration::from_millis(1800);

fn engine(store: PgStore) -> Engine {
    Engine::builder(store)
        .lease(LEASE)
        .store_timeout(Duration::from_millis(300))
        .build()
        .unwrap()
}

/// "Another process": a store on a pool of its own over the same table, whose calls on
/// `keys`, made past the first lease, must find each key in progress (they would run
/// their body if the lease had lapsed under the running one).
async fn duplicates_from_another_process(store: &TestStore, keys: &[&str], runs: &AtomicUsize) {
    let other = PgStore::builder(pool(4).await)
        .schema(store.cleanup.0.clone())
        .build()
        .unwrap();
    let other = engine(other);
    tokio::time::sleep(LEASE * 2).await;
    for key in keys {
        let duplicate = Call::new(NS, *key)
            .engine(&other)
            .run(|_| async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(0)
            })
            .await;
        assert!(
            matches!(duplicate, Err(Error::InProgress { .. })),
            "{key}: a duplicate past the first lease finds the call in progress, got \
             {duplicate:?}"
        );
    }
}

/// A pool of 2 connections, both held by two `run_in_transaction` bodies (clock-lease
/// form) that run three leases long: their heartbeats still renew the leases, a
/// duplicate from another process finds both in progress, and both complete (no
/// `LeaseLost`), each body run once. With the heartbeats on the application's pool
/// (`heartbeat_connections(0)`, what every version did before) the heartbeats wait for
/// a connection past the store timeout, the leases lapse, and the duplicates run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn transactions_holding_every_pooled_connection_keep_their_leases() {
    let store = clock_lease_store_on(pool(2).await, "tx", DEFAULT_HEARTBEAT_CONNECTIONS).await;
    let engine = engine(store.store.clone());
    let runs = AtomicUsize::new(0);
    let body = async |_: idem_core::Context, tx: &mut PgTransaction| {
        runs.fetch_add(1, Ordering::SeqCst);
        sqlx::query("SELECT 1").execute(&mut **tx).await.unwrap();
        tokio::time::sleep(BODY).await;
        Ok::<_, Error>(7)
    };
    let call = |key: &'static str| {
        Call::new(NS, key)
            .engine(&engine)
            .run_in_transaction_reported(body)
    };
    let (a, b, ()) = tokio::join!(
        call("k1"),
        call("k2"),
        duplicates_from_another_process(&store, &["k1", "k2"], &runs)
    );
    for report in [a, b] {
        let report = report.expect("the call keeps its lease: no LeaseLost");
        assert_eq!(report.source, Source::Ran);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2, "each body ran once");
}

/// A plain call whose body runs three leases long while every connection of the
/// application's pool (2) is held by others: its heartbeats renew the lease on the
/// store's own connections, a duplicate from another process finds it in progress, and
/// it completes once the others give their connections back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn a_plain_call_keeps_its_lease_while_others_hold_every_pooled_connection() {
    let store = clock_lease_store_on(pool(2).await, "plain", DEFAULT_HEARTBEAT_CONNECTIONS).await;
    let engine = engine(store.store.clone());
    let runs = Arc::new(AtomicUsize::new(0));
    let (started, body_started) = tokio::sync::oneshot::channel();
    let first = {
        let (engine, runs) = (engine.clone(), runs.clone());
        tokio::spawn(async move {
            Call::new(NS, "k3")
                .engine(&engine)
                .run_reported(|_| async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    started.send(()).unwrap();
                    tokio::time::sleep(BODY).await;
                    Ok::<_, Error>(7)
                })
                .await
        })
    };
    body_started.await.unwrap();
    // Others hold every connection of the pool until just before the body ends.
    let held = [
        store.pool().acquire().await.unwrap(),
        store.pool().acquire().await.unwrap(),
    ];
    duplicates_from_another_process(&store, &["k3"], &runs).await;
    tokio::time::sleep(BODY - LEASE * 2 - Duration::from_millis(300)).await;
    drop(held);
    let report = first.await.unwrap().expect("no LeaseLost");
    assert_eq!(report.source, Source::Ran);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// No body starts with a lease its heartbeats could not renew: a store whose heartbeat
/// connections cannot open (built while the pool's connect options named a port nothing
/// listens on, set right again afterwards, so the application's pool works) answers
/// the begin with a store error, within the store timeout, and the body never runs.
#[tokio::test]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn no_body_starts_while_no_heartbeat_connection_can_open() {
    let pool = pool(2).await;
    let reachable = (*pool.connect_options()).clone();
    pool.set_connect_options(reachable.clone().port(1));
    let schema = common::Schema::new("reserve");
    let store = PgStore::builder(pool.clone())
        .schema(schema.0.clone())
        .build()
        .unwrap();
    pool.set_connect_options(reachable);
    store.migrate().await.unwrap();
    let runs = AtomicUsize::new(0);
    let answer = Call::new(NS, "k4")
        .engine(&engine(store))
        .run(|_| async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(0)
        })
        .await;
    assert!(
        matches!(
            &answer,
            Err(Error::Store {
                operation: "begin",
                ..
            })
        ),
        "{answer:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the body never ran");
}

/// The store's heartbeat connections are made as the application's pool makes its own,
/// hooks included: a pool whose `after_connect` sets the search path to the schema of
/// an unqualified table renews its leases in that table. (Before, the heartbeat pool
/// copied only the connect options: its extends met no such table, the lease lapsed
/// under a running body, and a duplicate from another process ran it again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the PostgreSQL server that scripts/test checks"]
async fn heartbeats_connect_as_the_application_pool_does() {
    use sqlx::postgres::PgPoolOptions;
    let schema = common::Schema::new("hooks");
    let search_path = format!("SET search_path TO \"{}\"", schema.0);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .after_connect(move |connection, _| {
            let search_path = search_path.clone();
            Box::pin(async move {
                sqlx::raw_sql(sqlx::AssertSqlSafe(search_path))
                    .execute(&mut *connection)
                    .await?;
                Ok(())
            })
        })
        .connect(&common::url())
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA \"{}\"",
        schema.0
    )))
    .execute(&pool)
    .await
    .unwrap();
    // No schema named: the table is found through the search path the hook sets.
    let store = PgStore::new(pool);
    store.migrate().await.unwrap();
    let engine = engine(store);
    let runs = AtomicUsize::new(0);
    let first = Call::new(NS, "k5").engine(&engine).run_reported(|_| async {
        runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(BODY).await;
        Ok::<_, Error>(7)
    });
    let other = PgStore::builder(common::pool(2).await)
        .schema(schema.0.clone())
        .build()
        .unwrap();
    let other = self::engine(other);
    let duplicate = async {
        tokio::time::sleep(LEASE * 2).await;
        Call::new(NS, "k5")
            .engine(&other)
            .run(|_| async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(0)
            })
            .await
    };
    let (first, duplicate) = tokio::join!(first, duplicate);
    assert!(
        matches!(duplicate, Err(Error::InProgress { .. })),
        "a duplicate past the first lease finds the call in progress, got {duplicate:?}"
    );
    assert_eq!(first.expect("no LeaseLost").source, Source::Ran);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once");
}
