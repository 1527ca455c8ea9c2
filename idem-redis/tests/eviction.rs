//! The builder refuses a server that may evict live records. (Its own test binary: it
//! changes the server's configuration for a moment, and puts it back.)

mod common;

use idem_redis::{RedisStore, SetupError};

#[tokio::test]
#[ignore = "needs the Redis server that scripts/test checks"]
async fn a_server_that_may_evict_live_records_is_refused_with_the_fix() {
    let mut admin = common::connection().await;
    let get = |name: &'static str| {
        let mut admin = admin.clone();
        async move {
            let pair: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query_async(&mut admin)
                .await
                .unwrap();
            pair[1].clone()
        }
    };
    let (policy, maxmemory) = (get("maxmemory-policy").await, get("maxmemory").await);
    let set = |name: &'static str, value: String| {
        let mut admin = admin.clone();
        async move {
            redis::cmd("CONFIG")
                .arg("SET")
                .arg(name)
                .arg(value)
                .query_async::<()>(&mut admin)
                .await
                .unwrap()
        }
    };
    set("maxmemory-policy", "volatile-lru".into()).await;
    set("maxmemory", "1gb".into()).await;
    let refused = RedisStore::builder(common::connection().await)
        .build()
        .await;
    // Unchecked, or with noeviction, the same server is accepted.
    let unchecked = RedisStore::builder(common::connection().await)
        .check_eviction(false)
        .build()
        .await;
    set("maxmemory-policy", "noeviction".into()).await;
    let noeviction = RedisStore::builder(common::connection().await)
        .build()
        .await;
    set("maxmemory-policy", policy).await;
    set("maxmemory", maxmemory).await;
    let _ = &mut admin;

    match refused {
        Err(error @ SetupError::EvictionPolicy { .. }) => {
            let message = error.to_string();
            assert!(message.contains("volatile-lru"), "{message}");
            assert!(message.contains("noeviction"), "{message}");
        }
        other => panic!("expected the eviction policy to be refused, got {other:?}"),
    }
    assert!(unchecked.is_ok());
    assert!(noeviction.is_ok());
}
