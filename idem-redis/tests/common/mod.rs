//! What every test against the machine's Redis shares: its URL (which `scripts/test`
//! checks and exports), a store under a prefix no other test uses, and the deletion of
//! that prefix's keys when the store is dropped.
#![allow(dead_code)]

pub mod own_cluster;
pub mod own_server;

use std::sync::{Arc, Mutex};

use idem_core::testkit::WithCleanup;
use idem_redis::RedisStore;
use redis::aio::ConnectionManager;

/// The server's URL, from the variable scripts/test exports.
pub fn url() -> String {
    std::env::var("IDEM_TEST_REDIS").unwrap_or_else(|_| {
        panic!("IDEM_TEST_REDIS is not set: run these tests through scripts/test, which checks the server")
    })
}

pub async fn connection() -> ConnectionManager {
    connection_to(&url()).await
}

pub use own_server::resp3;

/// A connection manager to the server at `url`.
pub async fn connection_to(url: &str) -> ConnectionManager {
    let client = redis::Client::open(url).expect("a valid Redis URL");
    ConnectionManager::new(client)
        .await
        .unwrap_or_else(|e| panic!("the Redis server at {url} does not answer: {e}"))
}

/// The id of `connection` on its server (`CLIENT ID`).
pub async fn client_id(connection: &mut ConnectionManager) -> i64 {
    redis::cmd("CLIENT")
        .arg("ID")
        .query_async(connection)
        .await
        .unwrap()
}

/// A prefix no other test or run uses.
pub fn unique_prefix(label: &str) -> String {
    format!("idem-test:{label}:{}:", uuid::Uuid::new_v4().simple())
}

/// A store under its own prefix; its keys are deleted when it is dropped.
pub type TestStore = WithCleanup<RedisStore, Prefix>;

/// A key prefix whose keys are deleted when it is dropped.
pub struct Prefix(String);

/// `store`, its prefix's keys deleted when it is dropped.
pub fn cleaned(store: RedisStore) -> TestStore {
    let prefix = Prefix(store.prefix().to_owned());
    WithCleanup {
        store,
        cleanup: prefix,
    }
}

pub async fn store(label: &str) -> TestStore {
    store_over(connection().await, label).await
}

/// A store like [`store`] over a RESP3 connection.
pub async fn store_resp3(label: &str) -> TestStore {
    store_over(connection_to(&resp3(&url())).await, label).await
}

async fn store_over(connection: ConnectionManager, label: &str) -> TestStore {
    let store = RedisStore::builder(connection)
        .prefix(unique_prefix(label))
        .build()
        .await
        .expect("the machine's Redis keeps nothing it may evict");
    cleaned(store)
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let pattern = format!("{}*", self.0);
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

/// The events logged on this thread while the guard lives, as text: for a
/// current-thread test that calls the store itself.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Captures this thread's events until the guard is dropped.
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
