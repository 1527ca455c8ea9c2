//! Where the records are: a store of idem's, opened from a URL or a DynamoDB table name
//! with the stores' own crates and the usual credentials.

use std::time::Duration;

use idem_core::Store;
use idem_dynamo::{AttributeNames, DynamoStore, DynamoStoreBuilder};
use idem_postgres::PgStore;
use idem_redis::{RedisConnection, RedisStore};
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
    /// DynamoDB: an attribute name other than the default, as `FIELD=NAME`, once per
    /// attribute the application's store renames (`AttributeNames`): id, expiration,
    /// in_progress_expiration, status, data, validation, owner, fence, outcome, format,
    /// codec, steps.
    #[arg(long = "attribute", value_name = "FIELD=NAME")]
    pub attributes: Vec<String>,
    /// DynamoDB: Powertools' sort-key layout, as `SORT_ATTRIBUTE=PARTITION_VALUE`: every
    /// record's partition key holds PARTITION_VALUE and its id is in SORT_ATTRIBUTE (as
    /// `DynamoStoreBuilder::sort_key`).
    #[arg(long, value_name = "ATTRIBUTE=VALUE")]
    pub sort_key: Option<String>,
    /// Redis: the store is a Redis Cluster; `--store` is the URL of one of its nodes (the
    /// others are found from it).
    #[arg(long)]
    pub cluster: bool,
}

impl Location {
    /// The DynamoDB attribute names `--attribute` gives, over the defaults; a usage
    /// error names an unknown field or a malformed option.
    pub fn attribute_names(&self) -> Result<AttributeNames, CliError> {
        let mut names = AttributeNames::default();
        for given in &self.attributes {
            let (field, name) = split_pair(given, "--attribute", "FIELD=NAME")?;
            let slot = match field {
                "id" => &mut names.id,
                "expiration" => &mut names.expiration,
                "in_progress_expiration" => &mut names.in_progress_expiration,
                "status" => &mut names.status,
                "data" => &mut names.data,
                "validation" => &mut names.validation,
                "owner" => &mut names.owner,
                "fence" => &mut names.fence,
                "outcome" => &mut names.outcome,
                "format" => &mut names.format,
                "codec" => &mut names.codec,
                "steps" => &mut names.steps,
                other => {
                    return Err(CliError::usage(format!(
                        "--attribute: no field `{other}`; the fields are id, expiration, in_progress_expiration, status, data, validation, owner, fence, outcome, format, codec, steps"
                    )))
                }
            };
            *slot = name.to_owned();
        }
        Ok(names)
    }

    /// A DynamoDB store builder for `table` with this location's prefix, attribute
    /// names and key layout.
    pub fn dynamo_builder(
        &self,
        client: aws_sdk_dynamodb::Client,
        table: &str,
    ) -> Result<DynamoStoreBuilder, CliError> {
        let mut builder = DynamoStore::builder(client, table).names(self.attribute_names()?);
        if let Some(prefix) = &self.prefix {
            builder = builder.prefix(prefix);
        }
        if let Some(given) = &self.sort_key {
            let (attribute, partition_value) =
                split_pair(given, "--sort-key", "ATTRIBUTE=PARTITION_VALUE")?;
            builder = builder.sort_key(attribute, partition_value);
        }
        Ok(builder)
    }

    /// The options that apply to one kind of store only, refused for another kind
    /// (`kind` is what `--store` names), so that a misplaced option is not ignored.
    fn check_options_for(&self, kind: StoreKind) -> Result<(), CliError> {
        let misplaced = |option: &str, belongs: &str| {
            Err(CliError::usage(format!(
                "{option} applies to {belongs} stores only, and --store names a {} store",
                kind.name()
            )))
        };
        if kind != StoreKind::Dynamo {
            if !self.attributes.is_empty() {
                return misplaced("--attribute", "DynamoDB");
            }
            if self.sort_key.is_some() {
                return misplaced("--sort-key", "DynamoDB");
            }
            if self.endpoint_url.is_some() {
                return misplaced("--endpoint-url", "DynamoDB");
            }
        }
        if kind != StoreKind::Redis && self.cluster {
            return misplaced("--cluster", "Redis");
        }
        if kind != StoreKind::Postgres {
            if self.table.is_some() {
                return misplaced("--table", "PostgreSQL");
            }
            if self.schema.is_some() {
                return misplaced("--schema", "PostgreSQL");
            }
        }
        if kind == StoreKind::Postgres && self.prefix.is_some() {
            return misplaced("--prefix", "Redis and DynamoDB");
        }
        Ok(())
    }
}

/// The kinds of store `--store` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Postgres,
    Redis,
    Dynamo,
}

impl StoreKind {
    fn name(self) -> &'static str {
        match self {
            StoreKind::Postgres => "PostgreSQL",
            StoreKind::Redis => "Redis",
            StoreKind::Dynamo => "DynamoDB",
        }
    }
}

/// `given` split at its first `=` into two non-empty parts, or a usage error naming
/// `option` and its `form`.
fn split_pair<'a>(
    given: &'a str,
    option: &str,
    form: &str,
) -> Result<(&'a str, &'a str), CliError> {
    match given.split_once('=') {
        Some((left, right)) if !left.is_empty() && !right.is_empty() => Ok((left, right)),
        _ => Err(CliError::usage(format!(
            "{option} takes {form}, not `{given}`"
        ))),
    }
}

/// An opened store: the store crate's own type, for the [`Store`] trait, and what
/// listing needs beside it (a pool, a connection or a client of the same database).
// One per process: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum Target {
    /// PostgreSQL, through `idem-postgres`.
    Postgres(PgStore),
    /// Redis, through `idem-redis`, and the connection it was built on (for `SCAN`: on
    /// a cluster, of every master).
    Redis(RedisStore, RedisConnection),
    /// DynamoDB, through `idem-dynamo` (whose client, prefix, attribute names and key
    /// layout `Scan` and `Query` use).
    Dynamo(DynamoStore),
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
        let kind = match scheme {
            Some("postgres" | "postgresql") => StoreKind::Postgres,
            Some("redis" | "rediss") => StoreKind::Redis,
            Some("dynamodb") | None => StoreKind::Dynamo,
            Some(other) => {
                return Err(CliError::usage(format!(
                    "unknown store `{other}://`: use postgres://, redis://, rediss://, dynamodb://TABLE or a DynamoDB table name"
                )))
            }
        };
        location.check_options_for(kind)?;
        let connecting = async {
            match kind {
                StoreKind::Postgres => Self::connect_postgres(url, location).await,
                StoreKind::Redis => Self::connect_redis(url, location).await,
                StoreKind::Dynamo => {
                    let table = url.strip_prefix("dynamodb://").unwrap_or(url);
                    Self::connect_dynamo(table, location).await
                }
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
        let cannot = |e| {
            CliError::store(format!("cannot connect to Redis at {}", redact(url))).with_source(e)
        };
        let connection: RedisConnection = if location.cluster {
            let client = redis::cluster::ClusterClientBuilder::new([url])
                .connection_timeout(Duration::from_secs(3))
                .response_timeout(Duration::from_secs(5))
                .retries(1)
                .build()
                .map_err(|e| {
                    CliError::usage(format!("`{}` is not a Redis URL", redact(url))).with_source(e)
                })?;
            client.get_async_connection().await.map_err(cannot)?.into()
        } else {
            let client = redis::Client::open(url).map_err(|e| {
                CliError::usage(format!("`{}` is not a Redis URL", redact(url))).with_source(e)
            })?;
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(3)))
                .set_response_timeout(Some(Duration::from_secs(5)))
                .set_number_of_retries(1);
            ConnectionManager::new_with_config(client, config)
                .await
                .map_err(cannot)?
                .into()
        };
        let prefix = location
            .prefix
            .clone()
            .unwrap_or_else(|| "idem:".to_owned());
        Target::redis(connection, prefix).await
    }

    /// A target over a Redis connection (one server's, or a cluster's) and the key
    /// prefix the application's store uses (`idem:` by default). Builds the store
    /// without its eviction check: an operator reads and frees records whatever the
    /// policy. A single-server connection to a cluster node is refused: it would see
    /// only that node's keys.
    pub async fn redis(
        connection: impl Into<RedisConnection>,
        prefix: String,
    ) -> Result<Target, CliError> {
        let connection = connection.into();
        let ping = redis::cmd("PING");
        let answer = match &connection {
            RedisConnection::Server(server) => {
                ping.query_async::<String>(&mut server.clone()).await
            }
            RedisConnection::Cluster(cluster) => {
                ping.query_async::<String>(&mut cluster.clone()).await
            }
            _ => {
                return Err(CliError::usage(
                    "a kind of Redis connection this CLI does not know",
                ))
            }
        };
        answer.map_err(|e| CliError::store("Redis does not answer PING").with_source(e))?;
        if let RedisConnection::Server(server) = &connection {
            // A user whose ACL denies INFO is not told apart: the check is skipped.
            let info: Option<String> = redis::cmd("INFO")
                .arg("cluster")
                .query_async(&mut server.clone())
                .await
                .ok();
            if info.is_some_and(|info| info.contains("cluster_enabled:1")) {
                return Err(CliError::usage(
                    "this Redis is a cluster node: add --cluster, or the CLI would see only this node's keys",
                ));
            }
        }
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
        let client = aws_sdk_dynamodb::Client::new(&config);
        Target::dynamo(location.dynamo_builder(client, table)?).await
    }

    /// A target over a DynamoDB store built as the application's is (its client's
    /// credentials, table, id prefix, attribute names and key layout). Checks the
    /// table's existence and key schema (`DescribeTable`); not its TTL or replication,
    /// which matter to guarded calls, not to an operator.
    pub async fn dynamo(builder: DynamoStoreBuilder) -> Result<Target, CliError> {
        let store = builder
            .check_ttl(false)
            .allow_eventually_consistent_replicas()
            .build()
            .await
            .map_err(|e| CliError::store(e.to_string()).with_source(e))?;
        Ok(Target::Dynamo(store))
    }

    /// The store, for its [`Store`] operations.
    pub fn store(&self) -> &dyn Store {
        match self {
            Target::Postgres(store) => store,
            Target::Redis(store, _) => store,
            Target::Dynamo(store) => store,
        }
    }

    /// The store and where in it, for messages: `PostgreSQL table "idem_records"`.
    pub fn describe(&self) -> String {
        match self {
            Target::Postgres(store) => format!("PostgreSQL table {}", store.table()),
            Target::Redis(store, connection) if connection.is_cluster() => {
                format!("Redis Cluster keys `{}*`", store.prefix())
            }
            Target::Redis(store, _) => format!("Redis keys `{}*`", store.prefix()),
            Target::Dynamo(store) if store.prefix().is_empty() => {
                format!("DynamoDB table `{}`", store.table())
            }
            Target::Dynamo(store) => {
                format!(
                    "DynamoDB table `{}` (ids prefixed `{}`)",
                    store.table(),
                    store.prefix()
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
