//! The builder refuses a server that may evict live records, over RESP2 and RESP3 (where
//! `CONFIG GET` answers a map). Against a `redis-server` the test starts itself: the
//! machine's shared server's configuration is never changed.

mod common;

use common::own_server::OwnServer;
use idem_redis::{RedisStore, SetupError};
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
    // Unchecked, or with noeviction, the same server is accepted.
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

    match refused {
        Err(error @ SetupError::EvictionPolicy { .. }) => {
            let message = error.to_string();
            assert!(message.contains("volatile-lru"), "{message}");
            assert!(message.contains("1073741824"), "{message}");
            assert!(message.contains("noeviction"), "{message}");
        }
        other => panic!("expected the eviction policy to be refused, got {other:?}"),
    }
    assert!(unchecked.is_ok(), "{unchecked:?}");
    assert!(noeviction.is_ok(), "{noeviction:?}");
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
