//! Setting up a [`RedisStore`]: the builder, and the check of the server's eviction
//! policy made when it is built.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use redis::{ErrorKind, RedisError, Value};

use crate::scripts::Scripts;
use crate::store::{RedisStore, DEFAULT_MAX_DATA_BYTES};

/// Why a [`RedisStore`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The server may evict live records: `maxmemory` is set and the policy is not
    /// `noeviction`.
    #[error(
        "the Redis server has maxmemory {maxmemory} with maxmemory-policy `{policy}`: once \
         memory is full it may evict a live idem record, and a duplicate would run again; set \
         `maxmemory-policy noeviction` (writes then fail when memory is full, and idem reports \
         a transient error before the body runs), or give idem a server without maxmemory"
    )]
    EvictionPolicy {
        /// The server's `maxmemory-policy`.
        policy: String,
        /// The server's `maxmemory`, in bytes.
        maxmemory: u64,
    },
    /// A request failed.
    #[error("Redis {operation} failed: {source}")]
    Request {
        /// The command.
        operation: &'static str,
        /// The `redis` crate's error.
        #[source]
        source: redis::RedisError,
    },
}

/// Builds a [`RedisStore`]: see [`RedisStore::builder`].
#[derive(Clone)]
pub struct RedisStoreBuilder {
    connection: ConnectionManager,
    prefix: String,
    max_data_bytes: usize,
    check_eviction: bool,
}

impl RedisStore {
    /// A builder over the user's connection manager (it reconnects by itself; the store
    /// never opens connections of its own).
    pub fn builder(connection: ConnectionManager) -> RedisStoreBuilder {
        RedisStoreBuilder {
            connection,
            prefix: "idem:".to_owned(),
            max_data_bytes: DEFAULT_MAX_DATA_BYTES,
            check_eviction: true,
        }
    }
}

impl RedisStoreBuilder {
    /// The prefix of every key the store writes (`idem:` by default), to share a server
    /// between services or tests.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The largest encoded value or error the store records (1 MiB by default). A larger
    /// one is completed as not stored: the call that ran gets its value, duplicates get
    /// `Error::ResultNotStored` until the record expires.
    pub fn max_data_bytes(mut self, max: usize) -> Self {
        self.max_data_bytes = max;
        self
    }

    /// Whether [`build`](Self::build) reads the server's `maxmemory` and
    /// `maxmemory-policy` (default `true`). Where `CONFIG GET` is refused (managed
    /// services), the check warns and passes; turning it off skips the request.
    pub fn check_eviction(mut self, check: bool) -> Self {
        self.check_eviction = check;
        self
    }

    /// Checks the eviction policy (unless turned off) and builds the store.
    pub async fn build(self) -> Result<RedisStore, SetupError> {
        if self.check_eviction {
            self.eviction_is_safe().await?;
        }
        Ok(self.build_unchecked())
    }

    /// Builds the store without any request.
    pub fn build_unchecked(self) -> RedisStore {
        RedisStore {
            connection: self.connection,
            prefix: self.prefix,
            max_data_bytes: self.max_data_bytes,
            scripts: Arc::new(Scripts::new()),
        }
    }

    /// Every idem key has an expiry, so any policy but `noeviction` (the `volatile-*`
    /// ones included) may evict a live record once `maxmemory` is reached.
    async fn eviction_is_safe(&self) -> Result<(), SetupError> {
        let mut connection = self.connection.clone();
        let config = async {
            let policy = config_get(&mut connection, "maxmemory-policy").await?;
            let maxmemory = config_get(&mut connection, "maxmemory").await?;
            Ok::<_, redis::RedisError>((policy, maxmemory))
        };
        let (policy, maxmemory) = match config.await {
            Ok(answers) => answers,
            Err(error) if error.code().is_some() => {
                // The server refused CONFIG (a managed service): say what to set.
                tracing::warn!(target: "idem", %error,
                    "cannot read the Redis eviction policy; make sure maxmemory-policy is noeviction (or maxmemory 0), or a live record may be evicted");
                return Ok(());
            }
            Err(source) => {
                return Err(SetupError::Request {
                    operation: "CONFIG GET",
                    source,
                })
            }
        };
        let policy = policy.unwrap_or_default();
        let maxmemory: u64 = maxmemory.and_then(|m| m.parse().ok()).unwrap_or(0);
        if maxmemory > 0 && policy != "noeviction" {
            return Err(SetupError::EvictionPolicy { policy, maxmemory });
        }
        Ok(())
    }
}

/// One parameter's value by `CONFIG GET`, `None` when the server does not know it.
async fn config_get(
    connection: &mut ConnectionManager,
    name: &str,
) -> Result<Option<String>, RedisError> {
    let answer: Value = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(connection)
        .await?;
    config_value(name, answer)
}

/// `name`'s value in a `CONFIG GET` answer: a flat array `[name, value]` over RESP2, a
/// map `{name: value}` over RESP3; `None` when the answer holds no such parameter.
fn config_value(name: &str, answer: Value) -> Result<Option<String>, RedisError> {
    let pairs: Vec<(Value, Value)> = match answer {
        Value::Map(pairs) => pairs,
        Value::Array(flat) => {
            let mut flat = flat.into_iter();
            let mut pairs = Vec::new();
            while let (Some(key), Some(value)) = (flat.next(), flat.next()) {
                pairs.push((key, value));
            }
            pairs
        }
        other => {
            return Err(RedisError::from((
                ErrorKind::UnexpectedReturnType,
                "CONFIG GET answered neither an array nor a map",
                format!("{other:?}"),
            )))
        }
    };
    for (key, value) in pairs {
        if redis::from_redis_value::<String>(key)? == name {
            return Ok(Some(redis::from_redis_value(value)?));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn config_get_is_read_from_a_resp2_array_and_from_a_resp3_map() {
        let resp2 = Value::Array(vec![bulk("maxmemory-policy"), bulk("allkeys-lru")]);
        let resp3 = Value::Map(vec![(bulk("maxmemory-policy"), bulk("allkeys-lru"))]);
        for answer in [resp2, resp3] {
            assert_eq!(
                config_value("maxmemory-policy", answer).unwrap().as_deref(),
                Some("allkeys-lru")
            );
        }
        assert_eq!(
            config_value("maxmemory", Value::Array(vec![])).unwrap(),
            None
        );
        assert_eq!(config_value("maxmemory", Value::Map(vec![])).unwrap(), None);
        assert!(config_value("maxmemory", Value::Int(3)).is_err());
    }
}
