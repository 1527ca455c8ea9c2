//! Where the records are: a store of idem's, opened from a URL or a DynamoDB table name
//! with the stores' own crates and the usual credentials.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use idem_core::Store;
use idem_dynamo::DynamoStore;
use idem_postgres::PgStore;
use idem_redis::RedisStore;
use redis::aio::ConnectionManager;
use sqlx::Connection as _;

use crate::error::CliError;

/// How long connecting to a store may take before the CLI gives up on it.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the records are, as the command line gives it (`--store` and the options that
/// name a table or prefix inside it).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Location {
    /// The store: `postgres://USER@HOST/DB`, `redis://HOST:PORT` (or `rediss://`), or a
    /// DynamoDB table as `dynamodb://TABLE` or its bare name.
    #[arg(long, env = "IDEM_STORE", value_name = "URL|TABLE")]
    pub store: String,
    /// PostgreSQL: the table (`idem_records` by default).
    #[arg(long)]
    pub table: Option<String>,
    /// PostgreSQL: the table's schema (the search path's first by default).
    #[arg(long)]
    pub schema: Option<String>,
    /// Redis: the key prefix (`idem:` by default); DynamoDB: the id prefix (none by
    /// default). As the application's store was built with.
    #[arg(long)]
    pub prefix: Option<String>,
    /// DynamoDB: an endpoint other than AWS's (DynamoDB Local, moto, dynalite). The
    /// SDK's own `AWS_ENDPOINT_URL` works too.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
}

/// An opened store: the store crate's own type, for the [`Store`] trait, and what
/// listing needs beside it (a pool, a connection or a client of the same database).
// One per process: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Target {
    /// PostgreSQL, through `idem-postgres`.
    Postgres(PgStore),
    /// Redis, through `idem-redis`, and the connection it was built on (for `SCAN`).
    Redis(RedisStore, ConnectionManager),
    /// DynamoDB, through `idem-dynamo`, and its client and id prefix (for `Scan`).
    Dynamo(DynamoStore, Client, String),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Target {
    /// Connects to the store `location` names and checks it is there: PostgreSQL's
    /// table exists, Redis answers `PING`, DynamoDB's table exists with the key schema
    /// of `idem-dynamo` (its `DescribeTable`, with the stores' credentials chain:
    /// `aws_config`'s defaults).
    pub async fn connect(location: &Location) -> Result<Target, CliError> {
        let url = location.store.trim();
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        let connecting = async {
            match scheme {
                Some("postgres" | "postgresql") => Self::connect_postgres(url, location).await,
                Some("redis" | "rediss") => Self::connect_redis(url, location).await,
                Some("dynamodb") => {
                    let table = &url["dynamodb://".len()..];
                    Self::connect_dynamo(table, location).await
                }
                Some(other) => Err(CliError::usage(format!(
                    "unknown store `{other}://`: use postgres://, redis://, rediss://, dynamodb://TABLE or a DynamoDB table name"
                ))),
                None => Self::connect_dynamo(url, location).await,
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(answer) => answer,
            Err(_) => Err(CliError::store(format!(
                "{} did not answer within {} s",
                redact(url),
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    async fn connect_postgres(url: &str, location: &Location) -> Result<Target, CliError> {
        let options: sqlx::postgres::PgConnectOptions = url.parse().map_err(|e| {
            CliError::usage(format!("`{}` is not a PostgreSQL URL", redact(url))).with_source(e)
        })?;
        // One connection first: a refused or failed connection is told at once (a pool
        // would retry it until its acquire timeout).
        let cannot = |e| {
            CliError::store(format!("cannot connect to PostgreSQL at {}", redact(url)))
                .with_source(e)
        };
        let first = sqlx::postgres::PgConnection::connect_with(&options)
            .await
            .map_err(cannot)?;
        let _ = sqlx::Connection::close(first).await;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(cannot)?;
        let mut builder = PgStore::builder(pool);
        if let Some(table) = &location.table {
            builder = builder.table(table);
        }
        if let Some(schema) = &location.schema {
            builder = builder.schema(schema);
        }
        let store = builder
            .build()
            .map_err(|e| CliError::usage(e.to_string()).with_source(e))?;
        Target::postgres(store).await
    }

    /// A target over an application's PostgreSQL store, checking that its table exists.
    pub async fn postgres(store: PgStore) -> Result<Target, CliError> {
        let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(store.table())
            .fetch_one(store.pool())
            .await
            .map_err(|e| {
                CliError::store(format!(
                    "PostgreSQL: cannot look up the table {}",
                    store.table()
                ))
                .with_source(e)
            })?;
        if found.is_none() {
            return Err(CliError::store(format!(
                "PostgreSQL has no table {} (check --table and --schema; the application creates it with PgStore::migrate)",
                store.table()
            )));
        }
        Ok(Target::Postgres(store))
    }

    async fn connect_redis(url: &str, location: &Location) -> Result<Target, CliError> {
        let client = redis::Client::open(url).map_err(|e| {
            CliError::usage(format!("`{}` is not a Redis URL", redact(url))).with_source(e)
        })?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| {
                CliError::store(format!("cannot connect to Redis at {}", redact(url)))
                    .with_source(e)
            })?;
        let prefix = location
            .prefix
            .clone()
            .unwrap_or_else(|| "idem:".to_owned());
        Target::redis(connection, prefix).await
    }

    /// A target over a Redis connection and the key prefix the application's store uses
    /// (`idem:` by default). Builds the store without its eviction check: an operator
    /// reads and frees records whatever the policy.
    pub async fn redis(connection: ConnectionManager, prefix: String) -> Result<Target, CliError> {
        let mut ping = connection.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut ping)
            .await
            .map_err(|e| CliError::store("Redis does not answer PING").with_source(e))?;
        let store = RedisStore::builder(connection.clone())
            .prefix(prefix)
            .build_unchecked();
        Ok(Target::Redis(store, connection))
    }

    async fn connect_dynamo(table: &str, location: &Location) -> Result<Target, CliError> {
        if table.is_empty() {
            return Err(CliError::usage("no DynamoDB table named: dynamodb://TABLE"));
        }
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(endpoint) = &location.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        let config = loader.load().await;
        let client = Client::new(&config);
        Target::dynamo(client, table, location.prefix.clone().unwrap_or_default()).await
    }

    /// A target over a DynamoDB client (built with the credentials the application's
    /// store uses), its table and id prefix. Checks the table's existence and key
    /// schema (`DescribeTable`); not its TTL or replication, which matter to guarded
    /// calls, not to an operator.
    pub async fn dynamo(client: Client, table: &str, prefix: String) -> Result<Target, CliError> {
        let store = DynamoStore::builder(client.clone(), table)
            .prefix(prefix.clone())
            .check_ttl(false)
            .allow_eventually_consistent_replicas()
            .build()
            .await
            .map_err(|e| CliError::store(e.to_string()).with_source(e))?;
        Ok(Target::Dynamo(store, client, prefix))
    }

    /// The store, for its [`Store`] operations.
    pub fn store(&self) -> &dyn Store {
        match self {
            Target::Postgres(store) => store,
            Target::Redis(store, _) => store,
            Target::Dynamo(store, _, _) => store,
        }
    }

    /// The store and where in it, for messages: `PostgreSQL table "idem_records"`.
    pub fn describe(&self) -> String {
        match self {
            Target::Postgres(store) => format!("PostgreSQL table {}", store.table()),
            Target::Redis(store, _) => format!("Redis keys `{}*`", store.prefix()),
            Target::Dynamo(store, _, prefix) if prefix.is_empty() => {
                format!("DynamoDB table `{}`", store.table())
            }
            Target::Dynamo(store, _, prefix) => {
                format!(
                    "DynamoDB table `{}` (ids prefixed `{prefix}`)",
                    store.table()
                )
            }
        }
    }
}

/// A URL with its password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((credentials, host)) = rest.rsplit_once('@') {
            if let Some((user, _password)) = credentials.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://u:pw@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            super::redact("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
