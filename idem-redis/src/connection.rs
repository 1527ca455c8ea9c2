//! What the store talks through: one server's connection manager, or a Redis Cluster's
//! connection. Both reconnect by themselves; the store never opens connections of its
//! own.

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{Cmd, RedisError, Value};

/// The connection a [`RedisStore`](crate::RedisStore) sends its commands on, given to
/// [`RedisStore::builder`](crate::RedisStore::builder) (which takes either kind through
/// `From`).
#[derive(Clone)]
#[non_exhaustive]
pub enum RedisConnection {
    /// One server (a primary, standalone or with replicas behind it): the `redis`
    /// crate's `ConnectionManager`, which reconnects after a lost connection.
    Server(ConnectionManager),
    /// A Redis Cluster: the `redis` crate's async cluster connection
    /// (`redis::cluster::ClusterClient::get_async_connection`). It sends each command to
    /// the master of its key's slot, follows `MOVED` and `ASK` redirects, refreshes the
    /// slot map after a failover or a reshard, and reconnects to nodes by itself.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedisConnection::Server(_) => "RedisConnection::Server",
            RedisConnection::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl From<ConnectionManager> for RedisConnection {
    fn from(connection: ConnectionManager) -> Self {
        RedisConnection::Server(connection)
    }
}

impl From<ClusterConnection> for RedisConnection {
    fn from(connection: ClusterConnection) -> Self {
        RedisConnection::Cluster(connection)
    }
}

impl RedisConnection {
    /// Whether this is a cluster's connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConnection::Cluster(_))
    }

    /// Sends `command`, routed as the `redis` crate routes it (on a cluster: by its key).
    pub(crate) async fn query(&self, command: &Cmd) -> Result<Value, RedisError> {
        match self {
            RedisConnection::Server(connection) => {
                command.query_async(&mut connection.clone()).await
            }
            RedisConnection::Cluster(connection) => {
                command.query_async(&mut connection.clone()).await
            }
        }
    }

    /// Sends `command` to the master that holds `key` (on one server: to the server).
    pub(crate) async fn query_at_key(&self, command: Cmd, key: &[u8]) -> Result<Value, RedisError> {
        match self {
            RedisConnection::Server(connection) => {
                command.query_async(&mut connection.clone()).await
            }
            RedisConnection::Cluster(connection) => {
                let route = Route::with_key(key, SlotAddr::Master);
                connection
                    .clone()
                    .route_command(
                        command,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await
            }
        }
    }

    /// Sends `command` to the server, or to every master of a cluster: each node's
    /// answer or refusal (a server error) by its address (one server's is named
    /// `server`). A request that got no answer at all is the outer error.
    pub(crate) async fn query_every_master(
        &self,
        command: Cmd,
    ) -> Result<Vec<(String, Result<Value, RedisError>)>, RedisError> {
        match self {
            RedisConnection::Server(connection) => {
                match command.query_async(&mut connection.clone()).await {
                    Ok(answer) => Ok(vec![("server".to_owned(), Ok(answer))]),
                    Err(refused) if refused.code().is_some() => {
                        Ok(vec![("server".to_owned(), Err(refused))])
                    }
                    Err(error) => Err(error),
                }
            }
            RedisConnection::Cluster(connection) => {
                let answer = connection
                    .clone()
                    .route_command(
                        command,
                        RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
                    )
                    .await?;
                let Value::Map(by_node) = answer else {
                    return Err(RedisError::from((
                        redis::ErrorKind::UnexpectedReturnType,
                        "a command to every master answered no map of nodes",
                        format!("{answer:?}"),
                    )));
                };
                by_node
                    .into_iter()
                    .map(|(node, value)| {
                        let node = redis::from_redis_value::<String>(node)?;
                        let answer = match value {
                            Value::ServerError(refused) => Err(RedisError::from(refused)),
                            answer => Ok(answer),
                        };
                        Ok((node, answer))
                    })
                    .collect()
            }
        }
    }
}
