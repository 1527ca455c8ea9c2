//! `WAIT` (and `WAITAOF`) after a completion: sent after each applied completion only; a
//! shortfall is logged and the completion still counts; with a replica that is there,
//! `WAIT 1` is met; `WAITAOF` is refused at build on a server older than Redis 7.2.
//! Against `redis-server`s the test starts itself.

mod common;

use std::time::{Duration, Instant};

use common::own_server::OwnServer;
use common::Logs;
use idem_core::store::{Completion, Outcome, Written};
use idem_core::testkit::{attempt, begin_at};
use idem_core::{Clock, Store, SystemClock};
use idem_redis::{RedisStore, SetupError};
use redis::aio::ConnectionManager;

fn completion(now_ms: u64) -> Completion {
    Completion {
        now_ms,
        expires_at_s: now_ms / 1000 + 60,
        outcome: Outcome::Ok,
        data: Some("1".into()),
        codec: idem_core::store::Codec::Json,
    }
}

/// How many times the server ran `command` (`INFO commandstats`).
async fn calls(connection: &mut ConnectionManager, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .unwrap_or(0)
}

/// Begins and completes `id` as owner `a`; the completion's answer and how long it took.
async fn begin_and_complete(store: &RedisStore, id: &str) -> (Written<()>, Duration) {
    let now = SystemClock.now_ms();
    assert_eq!(
        store.begin(&begin_at(id, "a", now, None)).await.unwrap(),
        Written::Applied(1)
    );
    let started = Instant::now();
    let written = store
        .complete(&attempt(id, "a", 1), &completion(now))
        .await
        .unwrap();
    (written, started.elapsed())
}

#[tokio::test]
#[ignore = "starts its own redis-server (scripts/test runs it)"]
async fn wait_is_sent_after_each_applied_completion_only() {
    let server = OwnServer::start(&[]);
    let mut admin = server.connection().await;
    let store = RedisStore::builder(server.connection().await)
        .wait_for_replicas(0, Duration::from_millis(400))
        .build()
        .await
        .unwrap();
    let (logs, _guard) = Logs::capture();

    let (written, took) = begin_and_complete(&store, "ns#applied").await;
    assert_eq!(written, Written::Applied(()));
    let _ = took;
    assert_eq!(
        calls(&mut admin, "wait").await,
        1,
        "one WAIT, after the completion"
    );
    // The same completion sent again (a resend whose first send was applied) is refused
    // with its own write: it counts as applied, and is waited for too.
    let resent = store
        .complete(
            &attempt("ns#applied", "a", 1),
            &completion(SystemClock.now_ms()),
        )
        .await
        .unwrap();
    assert!(matches!(resent, Written::Refused(Some(_))), "{resent:?}");
    assert_eq!(
        calls(&mut admin, "wait").await,
        2,
        "a resend's own write is waited for"
    );

    // A refused completion (a stale fence) and the other writes send no WAIT.
    let now = SystemClock.now_ms();
    let refused = store
        .complete(&attempt("ns#applied", "a", 7), &completion(now))
        .await
        .unwrap();
    assert!(matches!(refused, Written::Refused(Some(_))), "{refused:?}");
    store
        .begin(&begin_at("ns#released", "b", now, None))
        .await
        .unwrap();
    store
        .release(&attempt("ns#released", "b", 1))
        .await
        .unwrap();
    assert_eq!(calls(&mut admin, "wait").await, 2);
    assert!(!logs.text().contains("WAIT"), "{}", logs.text());
}

#[tokio::test]
#[ignore = "starts its own redis-server (scripts/test runs it)"]
async fn a_wait_short_of_replicas_is_logged_and_the_completion_still_counts() {
    let server = OwnServer::start(&[]);
    let store = RedisStore::builder(server.connection().await)
        .prefix("short:")
        .wait_for_replicas(1, Duration::from_millis(150))
        .build()
        .await
        .unwrap();
    let (logs, _guard) = Logs::capture();

    let (written, took) = begin_and_complete(&store, "ns#short").await;
    assert_eq!(
        written,
        Written::Applied(()),
        "applied on the primary: it counts"
    );
    assert!(took >= Duration::from_millis(150), "WAIT waited: {took:?}");
    let record = store
        .read(&idem_core::testkit::test_id("ns#short"))
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(record.outcome, Some(Outcome::Ok));
    let text = logs.text();
    let id = idem_core::testkit::test_id("ns#short").to_string();
    for expected in [
        "WARN",
        "WAIT 1 150",
        "acknowledged_replicas=0",
        "short:",
        id.as_str(),
        "counts",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
}

#[tokio::test]
#[ignore = "starts its own redis-server (scripts/test runs it)"]
async fn wait_for_a_replica_that_is_there_is_met() {
    // No 5 s wait before the replica's first (diskless) sync.
    let primary = OwnServer::start(&[("repl-diskless-sync-delay", "0")]);
    let port = primary.port().to_string();
    let replica = OwnServer::start_with(&[], &["--replicaof", "127.0.0.1", &port]);
    let mut replica_connection = replica.connection().await;
    let mut primary_connection = primary.connection().await;
    // The replica is in sync once it receives the primary's writes (after a diskless
    // sync, Redis 7 streams them only after the replica's first acknowledgement, up to
    // a second after its link is up).
    let started = Instant::now();
    for probe in 0_u64.. {
        redis::cmd("SET")
            .arg("probe")
            .arg(probe)
            .query_async::<()>(&mut primary_connection)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let seen: Option<u64> = redis::cmd("GET")
            .arg("probe")
            .query_async(&mut replica_connection)
            .await
            .unwrap();
        if seen == Some(probe) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the replica never synced"
        );
    }
    let store = RedisStore::builder(primary.connection().await)
        .wait_for_replicas(1, Duration::from_millis(400))
        .build()
        .await
        .unwrap();
    let (logs, _guard) = Logs::capture();

    let (written, _) = begin_and_complete(&store, "ns#replicated").await;
    assert_eq!(written, Written::Applied(()));
    assert!(!logs.text().contains("WAIT"), "{}", logs.text());
    // WAIT 1 returned: the replica has the completion already.
    let state: Option<String> = redis::cmd("HGET")
        .arg(store.key(&idem_core::testkit::test_id("ns#replicated")))
        .arg("state")
        .query_async(&mut replica_connection)
        .await
        .unwrap();
    assert_eq!(state.as_deref(), Some("COMPLETED"));
}

#[tokio::test]
#[ignore = "starts its own redis-server (scripts/test runs it)"]
async fn waitaof_needs_redis_7_2_and_is_refused_at_build_before() {
    let server = OwnServer::start(&[]);
    let mut admin = server.connection().await;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut admin)
        .await
        .unwrap();
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap()
        .trim()
        .to_owned();
    let mut parts = version.split('.').map(|part| part.parse::<u32>().unwrap());
    let supported = (parts.next().unwrap(), parts.next().unwrap()) >= (7, 2);
    let built = RedisStore::builder(server.connection_resp3().await)
        .prefix("aof:")
        .wait_for_aof(false, 0, Duration::from_millis(100))
        .build()
        .await;
    match built {
        Ok(store) if supported => {
            let (written, _) = begin_and_complete(&store, "ns#aof").await;
            assert_eq!(written, Written::Applied(()));
            assert_eq!(calls(&mut admin, "waitaof").await, 1);
        }
        Err(error @ SetupError::WaitAofUnsupported { .. }) if !supported => {
            let message = error.to_string();
            for expected in [
                "Redis",
                &version,
                "WAITAOF",
                "7.2",
                "aof:",
                "wait_for_replicas",
            ] {
                assert!(message.contains(expected), "{expected}: {message}");
            }
        }
        other => panic!("Redis {version}: unexpected {other:?}"),
    }
}

/// `WAIT` blocks the store's shared connection: at most one is in flight, so the
/// begins and heartbeats queued behind it wait one `WAIT` timeout at most; a completion
/// that finds one in flight is not waited for, and says so.
#[tokio::test]
#[ignore = "starts its own redis-server (scripts/test runs it)"]
async fn one_wait_at_a_time_holds_the_shared_connection() {
    let server = OwnServer::start(&[]);
    let mut admin = server.connection().await;
    let store = RedisStore::builder(server.connection().await)
        .prefix("one-wait:")
        .wait_for_replicas(1, Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let (logs, _guard) = Logs::capture();
    let (first, second) = tokio::join!(
        begin_and_complete(&store, "ns#first"),
        begin_and_complete(&store, "ns#second"),
    );
    assert_eq!(
        (first.0, second.0),
        (Written::Applied(()), Written::Applied(()))
    );
    assert_eq!(
        calls(&mut admin, "wait").await,
        1,
        "one WAIT in flight at a time"
    );
    assert!(
        logs.text().contains("WAIT after a completion skipped"),
        "{}",
        logs.text()
    );
    // Once it ended, the next completion waits again.
    begin_and_complete(&store, "ns#third").await;
    assert_eq!(calls(&mut admin, "wait").await, 2);
}

/// A journal write is acknowledged like a completion: one `WAIT` after each applied
/// one, none after a refused one.
#[tokio::test]
#[ignore = "starts its own redis-server (scripts/test runs it)"]
async fn wait_is_sent_after_each_applied_journal_write() {
    use idem_core::store::{Codec, StepRecord};

    let server = OwnServer::start(&[]);
    let mut admin = server.connection().await;
    let store = RedisStore::builder(server.connection().await)
        .wait_for_replicas(0, Duration::from_millis(400))
        .build()
        .await
        .unwrap();
    let step = StepRecord {
        name: "charge".to_owned(),
        outcome: Some(Outcome::Ok),
        data: Some(bytes::Bytes::from_static(b"1")),
        codec: Codec::Json,
    };
    let now = SystemClock.now_ms();
    store
        .begin(&begin_at("ns#journal", "a", now, None))
        .await
        .unwrap();
    assert_eq!(calls(&mut admin, "wait").await, 0);
    let written = store
        .journal(&attempt("ns#journal", "a", 1), &step)
        .await
        .unwrap();
    assert_eq!(written, Written::Applied(()));
    assert_eq!(
        calls(&mut admin, "wait").await,
        1,
        "one WAIT, after the journal write"
    );
    let refused = store
        .journal(&attempt("ns#journal", "a", 7), &step)
        .await
        .unwrap();
    assert!(matches!(refused, Written::Refused(Some(_))), "{refused:?}");
    assert_eq!(
        calls(&mut admin, "wait").await,
        1,
        "a refused one is not waited for"
    );
}
