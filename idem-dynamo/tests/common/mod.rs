//! What every test against a local DynamoDB server shares: the servers' addresses
//! (which `scripts/test` starts and exports), clients, and tables.
#![allow(dead_code)]

pub mod scripted;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::Client;
use idem_dynamo::testkit::RequestCounter;
use idem_dynamo::{DynamoStore, DynamoStoreBuilder, SetupError};

/// Why a test is ignored by a plain `cargo test`.
pub const NEEDS_SERVERS: &str = "needs the local DynamoDB servers that scripts/test starts";

/// One of the two local DynamoDB-compatible servers.
#[derive(Debug, Clone, Copy)]
pub enum Server {
    /// moto's server: full API and the old item on conflict; not race-safe.
    Moto,
    /// dynalite: race-safe and fast; no old item on conflict, no TTL API.
    Dynalite,
}

impl Server {
    /// The server's endpoint, from the variable scripts/test exports.
    pub fn endpoint(self) -> String {
        let variable = match self {
            Server::Moto => "IDEM_TEST_MOTO",
            Server::Dynalite => "IDEM_TEST_DYNALITE",
        };
        std::env::var(variable).unwrap_or_else(|_| {
            panic!("{variable} is not set: run these tests through scripts/test, which starts the server")
        })
    }
}

/// A client for `server`: static credentials, a region and the endpoint (the default
/// credential chain would probe the instance metadata address and time out here).
/// With `counter`, SDK retries are off so every HTTP attempt is counted once.
pub fn client(server: Server, counter: Option<&RequestCounter>) -> Client {
    let mut config = idem_dynamo::local_config(&server.endpoint());
    if let Some(counter) = counter {
        config = config
            .retry_config(RetryConfig::disabled())
            .interceptor(counter.clone());
    }
    Client::from_conf(config.build())
}

/// A table name no other test binary or run uses.
pub fn unique_table(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("idem-{label}-{}-{nanos}", std::process::id())
}

/// Creates the builder's table unless it exists (tests of one binary share a table).
pub async fn ensure_table(builder: &DynamoStoreBuilder) {
    match builder.create_table().await {
        Ok(_) | Err(SetupError::TableExists { .. }) => {}
        Err(error) => panic!("cannot create the test table: {error}"),
    }
}

/// A store on `table` at `server` (created if missing), TTL check off (dynalite reports
/// TTL as disabled).
pub async fn store(server: Server, table: &str, counter: Option<&RequestCounter>) -> DynamoStore {
    let builder = DynamoStore::builder(client(server, counter), table).check_ttl(false);
    ensure_table(&builder).await;
    builder
        .build()
        .await
        .expect("the store builds on its own table")
}
