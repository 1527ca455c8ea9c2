//! The builder refuses a server that may evict live records, over RESP2 and RESP3 (where
//! `CONFIG GET` answers a map), and a server that refuses `CONFIG` unless the user
//! asserts `noeviction`; the policy read is named when a record vanishes under its
//! holder. Against a `redis-server` the test starts itself: the machine's shared
//! server's configuration is never changed.

mod common;

use common::own_server::OwnServer;
use std::error::Error as _;

use common::Logs;
use idem_core::store::Written;
use idem_core::testkit::{attempt, begin_at};
use idem_core::{Clock, Store, SystemClock};
use idem_redis::{Eviction, RedisStore, SetupError};
use redis::aio::ConnectionManager;

async fn connect(server: &OwnServer, resp3: bool) -> ConnectionManager {
    if resp3 {
        server.connection_resp3().await
    } else {
        server.connection().await
    }
}

async fn a_server_that_may_evict_live_records_is_refused_with_the_fix(resp3: bool) {
    let server = OwnServer::start(&[("maxmemory", "1gb"), ("maxmemory-policy", "volatile-lru")]);
    let refused = RedisStore::builder(connect(&server, resp3).await)
        .build()
        .await;
    // An assertion does not override a server that answers.
    let asserted = RedisStore::builder(connect(&server, resp3).await)
        .assume_noeviction()
        .build()
        .await;
    // Unchecked (the deprecated option keeps its meaning), or with noeviction, the same
    // server is accepted.
    #[allow(deprecated)]
    let unchecked = RedisStore::builder(connect(&server, resp3).await)
        .check_eviction(false)
        .build()
        .await;
    let mut admin = server.connection().await;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let noeviction = RedisStore::builder(connect(&server, resp3).await)
        .build()
        .await;

    for refused in [refused, asserted] {
        match refused {
            Err(error @ SetupError::EvictionPolicy { .. }) => {
                let message = error.to_string();
                assert!(message.contains("volatile-lru"), "{message}");
                assert!(message.contains("1073741824"), "{message}");
                assert!(message.contains("noeviction"), "{message}");
            }
            other => panic!("expected the eviction policy to be refused, got {other:?}"),
        }
    }
    assert_eq!(unchecked.unwrap().eviction(), &Eviction::NotChecked);
    assert_eq!(
        noeviction.unwrap().eviction(),
        &Eviction::Read {
            policy: "noeviction".to_owned(),
            maxmemory: 1 << 30
        }
    );
}

#[tokio::test]
#[ignore = "starts its own redis-server (scripts/test runs it)"]
async fn a_server_that_may_evict_live_records_is_refused_with_the_fix_over_resp2() {
    a_server_that_may_evict_live_records_is_refused_with_the_fix(false).await;
}

#[tokio::test]
#[ignore = "starts its own redis-server (scripts/test runs it)"]
async fn a_server_that_may_evict_live_records_is_refused_with_the_fix_over_resp3() {
    a_server_that_may_evict_live_records_is_refused_with_the_fix(true).await;
}

/// A server that refuses `CONFIG` (renamed away, as managed services do) fails the build
/// with the fix unless the user asserts `noeviction`.
#[tokio::test]
#[ignore = "starts its own redis-server (scripts/test runs it)"]
async fn a_server_that_refuses_config_is_refused_unless_noeviction_is_asserted() {
    let server = OwnServer::start_with(&[], &["--rename-command", "CONFIG", ""]);
    let refused = RedisStore::builder(server.connection().await)
        .prefix("managed:")
        .build()
        .await;
    match refused {
        Err(error @ SetupError::EvictionPolicyUnknown { .. }) => {
            let message = error.to_string();
            for expected in [
                "Redis",
                "CONFIG GET",
                "managed:",
                "assume_noeviction",
                "noeviction",
            ] {
                assert!(message.contains(expected), "{expected}: {message}");
            }
            let source = error.source().expect("the server's refusal is the source");
            let source = source
                .downcast_ref::<redis::RedisError>()
                .expect("a redis error");
            assert!(source.code().is_some(), "{source}");
        }
        other => panic!("expected the unknown eviction policy to be refused, got {other:?}"),
    }

    let asserted = RedisStore::builder(server.connection().await)
        .assume_noeviction()
        .build()
        .await
        .expect("the user's assertion stands in for CONFIG");
    assert_eq!(asserted.eviction(), &Eviction::Asserted);
    #[allow(deprecated)]
    let unchecked = RedisStore::builder(server.connection().await)
        .check_eviction(false)
        .build()
        .await
        .expect("the deprecated option skips the request, as before");
    assert_eq!(unchecked.eviction(), &Eviction::NotChecked);
}

/// A record that vanished under its holder (here deleted by hand, as an eviction or a
/// restart would) is refused to complete, extend and release with no record, and each
/// is logged naming the policy read at build; a held write that finds its record logs
/// nothing.
#[tokio::test]
#[ignore = "starts its own redis-server (scripts/test runs it)"]
async fn a_record_that_vanished_under_its_holder_is_logged_with_the_eviction_policy() {
    // maxmemory 0 never evicts, whatever the policy: accepted, and named in the log.
    let server = OwnServer::start(&[("maxmemory", "0"), ("maxmemory-policy", "allkeys-lru")]);
    let store = RedisStore::builder(server.connection().await)
        .build()
        .await
        .expect("maxmemory 0 never evicts");
    let mut admin = server.connection().await;
    let (logs, _guard) = Logs::capture();
    let now = SystemClock.now_ms();

    let kept = &idem_core::testkit::test_id("ns#kept");
    assert_eq!(
        store.begin(&begin_at(kept, "a", now, None)).await.unwrap(),
        Written::Applied(1)
    );
    store.release(&attempt(kept, "a", 1)).await.unwrap();
    assert!(!logs.text().contains("vanished"), "{}", logs.text());

    let id = &idem_core::testkit::test_id("ns#gone");
    assert_eq!(
        store.begin(&begin_at(id, "a", now, None)).await.unwrap(),
        Written::Applied(1)
    );
    redis::cmd("DEL")
        .arg(store.key(id))
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    let held = attempt(id, "a", 1);
    let completion = idem_core::store::Completion {
        now_ms: now,
        expires_at_s: now / 1000 + 60,
        outcome: idem_core::store::Outcome::Ok,
        data: Some("1".into()),
        codec: idem_core::store::Codec::Json,
    };
    assert_eq!(
        store.complete(&held, &completion).await.unwrap(),
        Written::Refused(None)
    );
    assert_eq!(store.release(&held).await.unwrap(), Written::Refused(None));
    let text = logs.text();
    assert_eq!(text.matches("vanished").count(), 2, "{text}");
    let id = id.to_string();
    for expected in [
        "WARN",
        "idem",
        "maxmemory-policy allkeys-lru",
        id.as_str(),
        "complete",
        "release",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
}

/// A request that fails at build (the server is gone) keeps the redis error as its
/// source, and names the store, the request and the prefix.
#[tokio::test]
#[ignore = "starts its own redis-server (scripts/test runs it)"]
async fn a_failed_request_at_build_keeps_the_redis_error_and_names_the_request() {
    let server = OwnServer::start(&[]);
    let connection = server.connection().await;
    drop(server);
    let failed = RedisStore::builder(connection)
        .prefix("gone:")
        .build()
        .await;
    match failed {
        Err(error @ SetupError::Request { .. }) => {
            let message = error.to_string();
            for expected in ["Redis", "SCRIPT LOAD", "gone:"] {
                assert!(message.contains(expected), "{expected}: {message}");
            }
            assert!(error
                .source()
                .and_then(|source| source.downcast_ref::<redis::RedisError>())
                .is_some());
        }
        other => panic!("expected a failed request, got {other:?}"),
    }
}
