//! Setting up a [`RedisStore`]: the builder, and the check of the server's eviction
//! policy made when it is built (kept in the store, for its warnings).

use std::sync::Arc;
use std::time::Duration;

use redis::{ErrorKind, RedisError, Value};

use crate::connection::RedisConnection;

use crate::scripts::Scripts;
use crate::store::{RedisStore, DEFAULT_MAX_DATA_BYTES};

/// Why a [`RedisStore`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The server may evict live records: `maxmemory` is set and the policy is not
    /// `noeviction`.
    #[error(
        "the Redis server has maxmemory {maxmemory} with maxmemory-policy `{policy}` (CONFIG \
         GET at build, store prefix `{prefix}`): once memory is full it may evict a live idem \
         record, and a duplicate would run again; set `maxmemory-policy noeviction` (writes \
         then fail when memory is full, and idem reports a transient error before the body \
         runs), or give idem a server without maxmemory"
    )]
    EvictionPolicy {
        /// The store's key prefix.
        prefix: String,
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
    /// [`RedisStoreBuilder::wait_for_aof`] was asked of a server older than Redis 7.2,
    /// which has no `WAITAOF`.
    #[error(
        "Redis {version} has no WAITAOF (it came with Redis 7.2; store prefix `{prefix}`): \
         upgrade the server, or use `wait_for_replicas` (WAIT) and `appendfsync always` instead"
    )]
    WaitAofUnsupported {
        /// The store's key prefix.
        prefix: String,
        /// The server's `redis_version` (`INFO server`).
        version: String,
    },
    /// The server cannot compile idem's scripts: they open with a Redis 7 shebang
    /// (`#!lua`, which sets how each meets a full memory), which older servers (Redis 6,
    /// KeyDB, older managed Redis) read as a syntax error.
    #[error(
        "the Redis server cannot compile idem's scripts (store prefix `{prefix}`): they use \
         Redis 7 script flags (`#!lua`); use Redis 7 or newer, or Valkey: {source}"
    )]
    ScriptsUnsupported {
        /// The store's key prefix.
        prefix: String,
        /// The server's answer to `SCRIPT LOAD`.
        #[source]
        source: redis::RedisError,
    },
    /// A request failed.
    #[error("Redis {operation} failed while building the store (key prefix `{prefix}`): {source}")]
    Request {
        /// The command.
        operation: &'static str,
        /// The store's key prefix.
        prefix: String,
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

/// What the store waits for after an applied completion or journal write: see
/// [`RedisStoreBuilder::wait_for_replicas`] and [`RedisStoreBuilder::wait_for_aof`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// `WAIT replicas timeout_ms`.
    Replicas { replicas: u32, timeout_ms: u64 },
    /// `WAITAOF local replicas timeout_ms`.
    Aof {
        local: bool,
        replicas: u32,
        timeout_ms: u64,
    },
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Durability::Replicas {
                replicas,
                timeout_ms,
            } => write!(f, "WAIT {replicas} {timeout_ms}"),
            Durability::Aof {
                local,
                replicas,
                timeout_ms,
            } => write!(f, "WAITAOF {} {replicas} {timeout_ms}", u8::from(*local)),
        }
    }
}

/// A timeout in whole milliseconds, at least 1 (`WAIT` and `WAITAOF` wait forever on 0).
fn wait_timeout_ms(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
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
    connection: RedisConnection,
    prefix: String,
    max_data_bytes: usize,
    eviction: EvictionCheck,
    durability: Option<Durability>,
}

impl RedisStore {
    /// A builder over the user's connection: one server's
    /// `redis::aio::ConnectionManager`, or a Redis Cluster's
    /// `redis::cluster_async::ClusterConnection` (see "Redis Cluster" in the
    /// [crate documentation](crate)). Both reconnect by themselves; the store never
    /// opens connections of its own.
    pub fn builder(connection: impl Into<RedisConnection>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            connection: connection.into(),
            prefix: "idem:".to_owned(),
            max_data_bytes: DEFAULT_MAX_DATA_BYTES,
            eviction: EvictionCheck::Verify,
            durability: None,
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

    /// After each applied completion (and each applied journal write of a step), sends
    /// `WAIT replicas timeout` on the same connection: the call returns once `replicas`
    /// replicas acknowledged the write, or the timeout passed (see "Durability" in the
    /// [crate documentation](crate)). Replaces [`wait_for_aof`](Self::wait_for_aof).
    ///
    /// Fewer replicas than asked (a replica down or lagging, the timeout passed) or a
    /// failed `WAIT` is logged (`tracing` warning, target `idem`) and the completion
    /// still counts: it is applied on the primary, and reporting it as failed would
    /// tell the engine a recorded result was not recorded. What stays is the risk the
    /// option narrows: a failover before a replica has it loses it.
    ///
    /// `WAIT` blocks the connection on the server: every call sharing the connection
    /// manager waits behind it, up to `timeout`, and a call that waits past the
    /// connection's response timeout fails with a transient timeout. Keep `timeout`
    /// below that response timeout (500 ms by default in the `redis` crate; a `WAIT` cut
    /// by it is logged like a short one) and well below the engine's store timeout (5 s by
    /// default), which cuts the whole completion. A zero timeout is sent as 1 ms
    /// (`WAIT` waits forever on 0).
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.durability = Some(Durability::Replicas {
            replicas,
            timeout_ms: wait_timeout_ms(timeout),
        });
        self
    }

    /// After each applied completion or journal write, sends `WAITAOF local replicas
    /// timeout` (Redis 7.2 or newer, checked by [`build`](Self::build) from `INFO
    /// server`): the call returns once the write is in the append-only file on disk on
    /// the primary (`local`, which needs `appendonly yes` there) and on `replicas`
    /// replicas, or the timeout passed. A shortfall or a failed `WAITAOF` is logged and
    /// the write still counts, and it blocks the connection, as for
    /// [`wait_for_replicas`](Self::wait_for_replicas), which it replaces.
    pub fn wait_for_aof(mut self, local: bool, replicas: u32, timeout: Duration) -> Self {
        self.durability = Some(Durability::Aof {
            local,
            replicas,
            timeout_ms: wait_timeout_ms(timeout),
        });
        self
    }

    /// Checks the eviction policy and builds the store: a server that may evict a live
    /// record is refused ([`SetupError::EvictionPolicy`]), and so is one that refuses
    /// `CONFIG GET` unless [`assume_noeviction`](Self::assume_noeviction) was given
    /// ([`SetupError::EvictionPolicyUnknown`]). With
    /// [`wait_for_aof`](Self::wait_for_aof), a server older than Redis 7.2 is refused
    /// ([`SetupError::WaitAofUnsupported`]).
    pub async fn build(self) -> Result<RedisStore, SetupError> {
        self.scripts_compile().await?;
        if let Some(Durability::Aof { .. }) = self.durability {
            self.waitaof_is_supported().await?;
        }
        let eviction = match self.eviction {
            EvictionCheck::Skip => Eviction::NotChecked,
            EvictionCheck::Verify | EvictionCheck::VerifyOrAssume => {
                self.eviction_is_safe().await?
            }
        };
        Ok(self.build_with(eviction))
    }

    /// Builds the store without any request (neither the eviction policy nor, for
    /// [`wait_for_aof`](Self::wait_for_aof), the server's version is checked: an
    /// unknown `WAITAOF` is then logged after each completion).
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
            durability: self.durability,
            waiting: Arc::default(),
        }
    }

    /// Loads begin's script (`SCRIPT LOAD`), which fails to compile on a server older
    /// than Redis 7 ([`SetupError::ScriptsUnsupported`]). A server that refuses `SCRIPT`
    /// itself is not judged here: the scripts are loaded by the calls that run them.
    async fn scripts_compile(&self) -> Result<(), SetupError> {
        let mut command = redis::cmd("SCRIPT");
        command.arg("LOAD").arg(crate::scripts::begin_source());
        let answers = self
            .connection
            .query_every_master(command)
            .await
            .map_err(|source| SetupError::Request {
                operation: "SCRIPT LOAD",
                prefix: self.prefix.clone(),
                source,
            })?;
        for (node, answer) in answers {
            match answer {
                Ok(_) => {}
                Err(source) if cannot_compile(&source) => {
                    return Err(SetupError::ScriptsUnsupported {
                        prefix: self.prefix.clone(),
                        source,
                    })
                }
                Err(error) => {
                    tracing::debug!(target: "idem", prefix = %self.prefix, %node, %error,
                        "SCRIPT LOAD refused; the scripts are loaded when first run");
                }
            }
        }
        Ok(())
    }

    /// `WAITAOF` came with Redis 7.2: the version is read from `INFO server`, on every
    /// master of a cluster (the oldest decides).
    async fn waitaof_is_supported(&self) -> Result<(), SetupError> {
        let request = |source| SetupError::Request {
            operation: "INFO server",
            prefix: self.prefix.clone(),
            source,
        };
        let mut command = redis::cmd("INFO");
        command.arg("server");
        let answers = self
            .connection
            .query_every_master(command)
            .await
            .map_err(request)?;
        for (node, answer) in answers {
            let info: String =
                redis::from_redis_value(answer.map_err(request)?).map_err(|e| request(e.into()))?;
            let version = info
                .lines()
                .find_map(|line| line.strip_prefix("redis_version:"))
                .unwrap_or("unknown")
                .trim()
                .to_owned();
            if !version_at_least(&version, (7, 2)) {
                let version = if self.connection.is_cluster() {
                    format!("{version} (master {node})")
                } else {
                    version
                };
                return Err(SetupError::WaitAofUnsupported {
                    prefix: self.prefix.clone(),
                    version,
                });
            }
        }
        Ok(())
    }

    /// Every idem key has an expiry, so any policy but `noeviction` (the `volatile-*`
    /// ones included) may evict a live record once `maxmemory` is reached. On a
    /// cluster, every master is read, and every one must be safe.
    async fn eviction_is_safe(&self) -> Result<Eviction, SetupError> {
        let request = |source| SetupError::Request {
            operation: "CONFIG GET",
            prefix: self.prefix.clone(),
            source,
        };
        let mut command = redis::cmd("CONFIG");
        // One request for both (a pattern: Redis before 7 takes one parameter only).
        command.arg("GET").arg("maxmemory*");
        let answers = self
            .connection
            .query_every_master(command)
            .await
            .map_err(request)?;
        let cluster = self.connection.is_cluster();
        let mut policies: Vec<String> = Vec::new();
        let mut largest = 0;
        for (node, answer) in answers {
            let read = answer.and_then(|answer| {
                let policy = config_value("maxmemory-policy", answer.clone())?;
                let maxmemory = config_value("maxmemory", answer)?;
                Ok((policy, maxmemory))
            });
            let (policy, maxmemory) = match read {
                Ok(answers) => answers,
                // The server refused CONFIG (a managed service): the user's word, or an
                // error. Any other answer (LOADING, BUSY, a failover...) is a failed
                // request: the server would answer later, and must be read then.
                Err(error) if refuses_config(&error) => {
                    if self.eviction == EvictionCheck::VerifyOrAssume {
                        tracing::info!(target: "idem", prefix = %self.prefix, %node, %error,
                            "Redis refused CONFIG GET; maxmemory-policy noeviction is taken as asserted (assume_noeviction)");
                        if !policies.iter().any(|p| p == "asserted") {
                            policies.push("asserted".to_owned());
                        }
                        continue;
                    }
                    return Err(SetupError::EvictionPolicyUnknown {
                        prefix: self.prefix.clone(),
                        source: error,
                    });
                }
                Err(source) => return Err(request(source)),
            };
            let Some(policy) = policy else {
                // A server that answers CONFIG GET without the parameter cannot be read.
                if self.eviction == EvictionCheck::VerifyOrAssume {
                    if !policies.iter().any(|p| p == "asserted") {
                        policies.push("asserted".to_owned());
                    }
                    continue;
                }
                return Err(SetupError::EvictionPolicyUnknown {
                    prefix: self.prefix.clone(),
                    source: RedisError::from((
                        ErrorKind::UnexpectedReturnType,
                        "CONFIG GET answered no maxmemory-policy",
                    )),
                });
            };
            let maxmemory: u64 = maxmemory.and_then(|m| m.parse().ok()).unwrap_or(0);
            if maxmemory > 0 && policy != "noeviction" {
                return Err(SetupError::EvictionPolicy {
                    prefix: self.prefix.clone(),
                    policy: if cluster {
                        format!("{policy}` on master `{node}")
                    } else {
                        policy
                    },
                    maxmemory,
                });
            }
            largest = largest.max(maxmemory);
            if !policies.contains(&policy) {
                policies.push(policy);
            }
        }
        if policies == ["asserted"] {
            return Ok(Eviction::Asserted);
        }
        Ok(Eviction::Read {
            policy: policies.join(", "),
            maxmemory: largest,
        })
    }
}

/// Whether `error` is a script that does not compile (`ERR Error compiling script`).
fn cannot_compile(error: &RedisError) -> bool {
    error.code() == Some("ERR") && error.to_string().contains("compiling script")
}

/// Whether `error` is the server refusing `CONFIG` itself (an unknown or renamed
/// command, `ERR`; an ACL without it, `NOPERM`), as managed services do, rather than a
/// "not now" answer.
fn refuses_config(error: &RedisError) -> bool {
    matches!(error.code(), Some("ERR" | "NOPERM"))
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

/// Whether a `major.minor.patch` version is `least` or newer (unreadable: no).
fn version_at_least(version: &str, least: (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|part| part.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= least,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::server_error;

    #[test]
    fn a_script_that_does_not_compile_is_told_from_other_refusals() {
        let redis_6 = server_error(
            "ERR Error compiling script (new function): user_script:1: unexpected symbol near '#'",
        );
        assert!(cannot_compile(&redis_6));
        for other in [
            "NOPERM this user has no permissions to run the 'script|load' command",
            "BUSY Redis is busy running a script",
            "ERR unknown command 'SCRIPT'",
        ] {
            assert!(!cannot_compile(&server_error(other)), "{other}");
        }
    }

    #[test]
    fn only_a_refused_config_is_taken_as_refused() {
        for refused in [
            "ERR unknown command 'CONFIG', with args beginning with: 'GET' 'maxmemory-policy'",
            "NOPERM this user has no permissions to run the 'config|get' command",
        ] {
            assert!(refuses_config(&server_error(refused)), "{refused}");
        }
        for not_now in [
            "LOADING Redis is loading the dataset in memory",
            "BUSY Redis is busy running a script",
            "MASTERDOWN Link with MASTER is down",
        ] {
            assert!(!refuses_config(&server_error(not_now)), "{not_now}");
        }
    }

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

    #[test]
    fn waitaof_needs_redis_7_2() {
        for (version, supported) in [
            ("7.0.15", false),
            ("6.2.14", false),
            ("7.2.0", true),
            ("7.4.2", true),
            ("8.0.1", true),
            ("unknown", false),
        ] {
            assert_eq!(version_at_least(version, (7, 2)), supported, "{version}");
        }
    }

    #[test]
    fn a_zero_wait_timeout_is_sent_as_one_millisecond() {
        assert_eq!(wait_timeout_ms(Duration::ZERO), 1);
        assert_eq!(wait_timeout_ms(Duration::from_millis(250)), 250);
    }
}
