//! What every test against the machine's Redis shares: its URL (which `scripts/test`
//! checks and exports), a store under a prefix no other test uses, and the deletion of
//! that prefix's keys when the store is dropped.
#![allow(dead_code)]

use std::ops::Deref;

use idem_core::store::{
    async_trait, Attempt, Begin, Completion, Limits, Record, Renewal, Store, StoreError, Written,
};
use idem_redis::RedisStore;
use redis::aio::ConnectionManager;

/// The server's URL, from the variable scripts/test exports.
pub fn url() -> String {
    std::env::var("IDEM_TEST_REDIS").unwrap_or_else(|_| {
        panic!("IDEM_TEST_REDIS is not set: run these tests through scripts/test, which checks the server")
    })
}

pub async fn connection() -> ConnectionManager {
    let client = redis::Client::open(url()).expect("a valid Redis URL");
    ConnectionManager::new(client)
        .await
        .unwrap_or_else(|e| panic!("the Redis server at {} does not answer: {e}", url()))
}

/// A prefix no other test or run uses.
pub fn unique_prefix(label: &str) -> String {
    format!("idem-test:{label}:{}:", uuid::Uuid::new_v4().simple())
}

/// A store under its own prefix; its keys are deleted when it is dropped.
pub struct TestStore(pub RedisStore);

impl Deref for TestStore {
    type Target = RedisStore;
    fn deref(&self) -> &RedisStore {
        &self.0
    }
}

pub async fn store(label: &str) -> TestStore {
    let store = RedisStore::builder(connection().await)
        .prefix(unique_prefix(label))
        .build()
        .await
        .expect("the machine's Redis keeps nothing it may evict");
    TestStore(store)
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let pattern = format!("{}*", self.0.prefix());
        let Ok(client) = redis::Client::open(url()) else {
            return;
        };
        let Ok(mut connection) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = match redis::cmd("KEYS").arg(&pattern).query(&mut connection) {
            Ok(keys) => keys,
            Err(_) => return,
        };
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut connection);
        }
    }
}

#[async_trait]
impl Store for TestStore {
    fn limits(&self) -> Limits {
        self.0.limits()
    }
    async fn begin(&self, request: &Begin) -> Result<Written<u64>, StoreError> {
        self.0.begin(request).await
    }
    async fn complete(&self, a: &Attempt, c: &Completion) -> Result<Written<()>, StoreError> {
        self.0.complete(a, c).await
    }
    async fn extend(&self, a: &Attempt, r: &Renewal) -> Result<Written<()>, StoreError> {
        self.0.extend(a, r).await
    }
    async fn release(&self, a: &Attempt) -> Result<Written<()>, StoreError> {
        self.0.release(a).await
    }
    async fn read(&self, id: &str) -> Result<Option<Record>, StoreError> {
        self.0.read(id).await
    }
    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.0.delete(id).await
    }
}
