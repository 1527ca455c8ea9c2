//! Setting up a [`RedisStore`]: the builder, and the check of the server's eviction
//! policy made when it is built.

use std::sync::Arc;

use redis::aio::ConnectionManager;

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
            let policy: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory-policy")
                .query_async(&mut connection)
                .await?;
            let maxmemory: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory")
                .query_async(&mut connection)
                .await?;
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
        let policy = policy.get(1).cloned().unwrap_or_default();
        let maxmemory: u64 = maxmemory.get(1).and_then(|m| m.parse().ok()).unwrap_or(0);
        if maxmemory > 0 && policy != "noeviction" {
            return Err(SetupError::EvictionPolicy { policy, maxmemory });
        }
        Ok(())
    }
}
