//! Setting up a [`RedisStore`]: the builder, and the check of the server's eviction
//! policy made when it is built (kept in the store, for its warnings).

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
    /// The server refused `CONFIG GET` (managed services rename or forbid `CONFIG`), so
    /// its eviction policy cannot be checked, and the user did not assert it with
    /// [`RedisStoreBuilder::assume_noeviction`].
    #[error(
        "Redis refused CONFIG GET maxmemory-policy (store prefix `{prefix}`): idem cannot \
         check that the server never evicts a live record, and an evicted record runs its \
         body again; set `maxmemory-policy noeviction` on the server (or keep maxmemory 0) \
         and state it with `RedisStoreBuilder::assume_noeviction()`: {source}"
    )]
    EvictionPolicyUnknown {
        /// The store's key prefix.
        prefix: String,
        /// The server's refusal.
        #[source]
        source: redis::RedisError,
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

/// What [`RedisStoreBuilder::build`] knew of the server's eviction policy: kept in the
/// store and named in its warnings (a begin refused for lack of memory, a record that
/// vanished under its holder).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Eviction {
    /// Read from the server by `CONFIG GET` (and found safe).
    Read {
        /// The server's `maxmemory-policy`.
        policy: String,
        /// The server's `maxmemory`, in bytes (0: no limit).
        maxmemory: u64,
    },
    /// The server refused `CONFIG GET`; the user asserted `noeviction` with
    /// [`RedisStoreBuilder::assume_noeviction`].
    Asserted,
    /// Not checked: the store was built by
    /// [`build_unchecked`](RedisStoreBuilder::build_unchecked) or with
    /// `check_eviction(false)`.
    NotChecked,
}

impl std::fmt::Display for Eviction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Eviction::Read { policy, maxmemory } => {
                write!(f, "maxmemory-policy {policy} (maxmemory {maxmemory})")
            }
            Eviction::Asserted => {
                f.write_str("noeviction as asserted by the user (the server refused CONFIG GET)")
            }
            Eviction::NotChecked => f.write_str("unknown (not checked at build)"),
        }
    }
}

/// How `build` checks the eviction policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EvictionCheck {
    /// Read it; a refused `CONFIG GET` fails the build.
    Verify,
    /// Read it; a refused `CONFIG GET` is taken as `noeviction`, as the user asserted.
    VerifyOrAssume,
    /// No request (the deprecated `check_eviction(false)`).
    Skip,
}

/// Builds a [`RedisStore`]: see [`RedisStore::builder`].
#[derive(Clone)]
pub struct RedisStoreBuilder {
    connection: ConnectionManager,
    prefix: String,
    max_data_bytes: usize,
    eviction: EvictionCheck,
}

impl RedisStore {
    /// A builder over the user's connection manager (it reconnects by itself; the store
    /// never opens connections of its own).
    pub fn builder(connection: ConnectionManager) -> RedisStoreBuilder {
        RedisStoreBuilder {
            connection,
            prefix: "idem:".to_owned(),
            max_data_bytes: DEFAULT_MAX_DATA_BYTES,
            eviction: EvictionCheck::Verify,
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

    /// States that the server never evicts a live record (`maxmemory-policy
    /// noeviction`, or `maxmemory 0`), for a server that refuses `CONFIG GET` (managed
    /// services: ElastiCache, Memorystore, Azure Cache and others rename or forbid
    /// `CONFIG`). [`build`](Self::build) still reads the policy where the server answers,
    /// and refuses an evicting one whatever was asserted: the assertion only stands in
    /// for an answer the server will not give. Without it, a refused `CONFIG GET` fails
    /// the build ([`SetupError::EvictionPolicyUnknown`]).
    ///
    /// Set the policy in the service's parameter group or console before asserting it:
    /// under any other policy a full memory may evict a live record, and a duplicate of
    /// its key then runs the body again.
    pub fn assume_noeviction(mut self) -> Self {
        self.eviction = EvictionCheck::VerifyOrAssume;
        self
    }

    /// Whether [`build`](Self::build) reads the server's `maxmemory` and
    /// `maxmemory-policy` (default `true`); `false` skips the request, as before.
    ///
    /// Deprecated: turning the check off was the way to build on a server that refuses
    /// `CONFIG`, and it silenced a server that answers too. Use
    /// [`assume_noeviction`](Self::assume_noeviction), which checks wherever the server
    /// answers and states the policy where it does not; a build that must make no
    /// request at all has [`build_unchecked`](Self::build_unchecked). This method keeps
    /// its meaning until it is removed in a later release.
    #[deprecated(
        since = "0.1.0",
        note = "use `assume_noeviction()` (checks where the server answers, asserts where it refuses CONFIG) or `build_unchecked()`"
    )]
    pub fn check_eviction(mut self, check: bool) -> Self {
        self.eviction = if check {
            EvictionCheck::Verify
        } else {
            EvictionCheck::Skip
        };
        self
    }

    /// Checks the eviction policy and builds the store: a server that may evict a live
    /// record is refused ([`SetupError::EvictionPolicy`]), and so is one that refuses
    /// `CONFIG GET` unless [`assume_noeviction`](Self::assume_noeviction) was given
    /// ([`SetupError::EvictionPolicyUnknown`]).
    pub async fn build(self) -> Result<RedisStore, SetupError> {
        let eviction = match self.eviction {
            EvictionCheck::Skip => Eviction::NotChecked,
            EvictionCheck::Verify | EvictionCheck::VerifyOrAssume => {
                self.eviction_is_safe().await?
            }
        };
        Ok(self.build_with(eviction))
    }

    /// Builds the store without any request (the eviction policy is not checked).
    pub fn build_unchecked(self) -> RedisStore {
        self.build_with(Eviction::NotChecked)
    }

    fn build_with(self, eviction: Eviction) -> RedisStore {
        RedisStore {
            connection: self.connection,
            prefix: self.prefix,
            max_data_bytes: self.max_data_bytes,
            scripts: Arc::new(Scripts::new()),
            eviction: Arc::new(eviction),
        }
    }

    /// Every idem key has an expiry, so any policy but `noeviction` (the `volatile-*`
    /// ones included) may evict a live record once `maxmemory` is reached.
    async fn eviction_is_safe(&self) -> Result<Eviction, SetupError> {
        let mut connection = self.connection.clone();
        let config = async {
            let policy = config_get(&mut connection, "maxmemory-policy").await?;
            let maxmemory = config_get(&mut connection, "maxmemory").await?;
            Ok::<_, redis::RedisError>((policy, maxmemory))
        };
        let (policy, maxmemory) = match config.await {
            Ok(answers) => answers,
            // The server refused CONFIG (a managed service): the user's word, or an error.
            Err(error) if error.code().is_some() => {
                if self.eviction == EvictionCheck::VerifyOrAssume {
                    tracing::info!(target: "idem", prefix = %self.prefix, %error,
                        "Redis refused CONFIG GET; maxmemory-policy noeviction is taken as asserted (assume_noeviction)");
                    return Ok(Eviction::Asserted);
                }
                return Err(SetupError::EvictionPolicyUnknown {
                    prefix: self.prefix.clone(),
                    source: error,
                });
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
        Ok(Eviction::Read { policy, maxmemory })
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
