//! The Redis and Valkey store of [idem](https://docs.rs/idem): one hash per record, one
//! server-side script per transition, expiry by the server.
//!
//! ```no_run
//! use idem_core::Engine;
//! use idem_redis::RedisStore;
//!
//! # async fn start() -> Result<(), Box<dyn std::error::Error>> {
//! let client = redis::Client::open("redis://127.0.0.1:6379")?;
//! let connection = redis::aio::ConnectionManager::new(client).await?;
//! // Refuses a server that may evict live records (see "Eviction" below).
//! let store = RedisStore::builder(connection).prefix("billing:").build().await?;
//! Engine::new(store).install()?;
//! # Ok(()) }
//! ```
//!
//! The store takes the caller's connection, a `ConnectionManager` for one server or a
//! cluster connection for a Redis Cluster ([`RedisConnection`]; see "Redis Cluster"
//! below): both reconnect by themselves, and the store never opens connections of its
//! own. The connection may speak RESP2
//! (the default) or RESP3 (`redis://host:6379/?protocol=resp3`): the store reads the
//! answers of both (`CONFIG GET` and `HGETALL` answer a map over RESP3).
//!
//! # Key layout
//! One hash per record at `{prefix}{namespace}#{digest}` (prefix `idem:` by default),
//! with the fields `state` (`INPROGRESS` / `COMPLETED`), `owner`, `fence`,
//! `lease_until_ms`, `expires_at_s`, `fingerprint`, `outcome`, `data`, `format` and
//! `codec`: the record of idem's protocol (`docs/protocol.md` in idem's repository),
//! numbers in decimal.
//!
//! The journal of steps lives in the same hash, so a record stays one key (one slot on
//! a cluster) and `HGETALL` reads it with the record: one field `s:<name>` per step,
//! `<position>:<outcome>:<codec length>:<codec>`, then `=` and the step's data as its
//! bytes (never base64) when it has data (`outcome` `started`, `ok` or `err`; `position`
//! the order of the step's first write), and a field `steps` counting the positions
//! handed out. A record written before steps existed has neither and reads with an
//! empty journal. An idem from before steps reads a record that has steps with a
//! decode error when a step's data are not UTF-8: while a rolling upgrade mixes builds,
//! a duplicate of a key in progress may meet that error on an old build (a completed
//! record has no steps).
//!
//! # The scripts
//! Each transition is one Lua script on the record's one key, called by its hash
//! (`EVALSHA`). A server that does not have it (a restart, `SCRIPT FLUSH`, a new or
//! newly promoted cluster node) answers `NOSCRIPT`, and the same call is sent again with
//! the script's text (`EVAL`, to the same node), which caches it there; no error reaches
//! the caller. One round trip each (two on the first call to a node without the script):
//! - **begin**: applied iff there is no record or it is free (completed and past its
//!   expiry, or in progress past its lease); increments the fence, writes the fields,
//!   removes outcome, data and fingerprint, and sets the key's expiry. Refused, it
//!   answers with the current record.
//! - **complete**, **extend**, **release**: applied iff the attempt holds the record
//!   (in progress, its owner and fence), extend also only while the lease is not
//!   released; each answers a refusal with the current record. Complete also deletes
//!   the journal's fields (looked for only when the record has `steps`); begin, extend
//!   and release keep them.
//! - **journal**: applied iff the attempt holds the record (complete's condition);
//!   writes the step's field, keeping its position if the step was journaled before,
//!   and nothing else; refused, it answers with the current record, steps included. A
//!   full server refuses it up front (`-OOM`, transient, as begin), and with
//!   [`RedisStoreBuilder::wait_for_replicas`] or
//!   [`wait_for_aof`](RedisStoreBuilder::wait_for_aof) an applied one is waited for
//!   like a completion. A step's data past
//!   [`max_data_bytes`](RedisStoreBuilder::max_data_bytes) is a permanent error (Redis
//!   bounds a hash only by memory).
//!
//! # Expiry
//! The key expires at the later of the lease's end and the record's expiry, so nothing
//! needs a sweeper, and a released or lapsed record keeps its fence until it expires.
//! Expiries are sent relative to the engine's clock (`PEXPIRE`), so a skew between the
//! engine's and the server's clocks does not move them.
//!
//! # Eviction
//! Every idem key has an expiry, so **any eviction policy but `noeviction`** (the
//! `volatile-*` ones included) may evict a live record once `maxmemory` is reached, and
//! a duplicate would then run the body again. [`RedisStoreBuilder::build`] reads
//! `maxmemory` and `maxmemory-policy` and refuses that combination
//! ([`SetupError::EvictionPolicy`]). Where `CONFIG GET` is refused (managed services),
//! `build` fails too ([`SetupError::EvictionPolicyUnknown`]) unless you set
//! `maxmemory-policy noeviction` in the service's settings and say so with
//! [`RedisStoreBuilder::assume_noeviction`]; a server that answers is checked whatever
//! was asserted. The policy `build` learnt ([`Eviction`]) stays in the store and is
//! named in its warnings (`tracing`, target `idem`): a begin refused for lack of memory,
//! and a record that vanished under its holder (complete, extend or release found no
//! record at all: evicted, lost in a restart or a failover, or deleted by hand).
//!
//! With `noeviction`, a full memory refuses writes, and idem reports a transient error
//! before the body runs: begin is a script the server refuses up front when memory is
//! full (`-OOM`), so no key is taken and no body runs that could not be guarded, while
//! complete, extend and release may still write (`allow-oom`), so an attempt whose body
//! ran is recorded, or gives its key back. A duplicate of a live record is answered as
//! usual from a read (a completed key replays, one in progress is in progress); only a
//! new or free key waits for memory. Script flags need Redis 7 or newer (or Valkey): [`RedisStoreBuilder::build`]
//! refuses an older server ([`SetupError::ScriptsUnsupported`]).
//!
//! # Durability
//! idem's guarantee lasts as long as its records do, and Redis answers a write once it
//! is in the primary's memory. What is not yet on disk, or on the replica that takes
//! over, can be lost:
//! - **A restart without persistence** (no AOF, or one from an RDB snapshot older than
//!   the last writes) loses every record written since. A completed key runs its body
//!   again on its next delivery (two callers are told it ran); a key in progress loses
//!   its lease, so a duplicate takes it while the first attempt still runs (two
//!   holders, two bodies); fences start again from 1, so fence numbers are reused, and
//!   a downstream system that rejects lower fences does not notice.
//! - **A failover to a replica that lagged** (replication is asynchronous) does the
//!   same to the writes the replica had not received.
//!
//! What bounds it, on the server and in the store:
//! - `appendonly yes` with `appendfsync always`: each write is on disk before Redis
//!   answers, so a restart loses nothing (one fsync per write). The default
//!   `appendfsync everysec` can lose about the last second of writes; RDB snapshots
//!   alone lose everything since the last one.
//! - [`RedisStoreBuilder::wait_for_replicas`]: `WAIT replicas timeout` after each
//!   applied completion, so the call returns once that many replicas have the
//!   completion (a failover to one of them keeps it). The server's
//!   `min-replicas-to-write` refuses writes outright when too few replicas are
//!   connected.
//! - [`RedisStoreBuilder::wait_for_aof`]: `WAITAOF local replicas timeout` (Redis 7.2 or
//!   newer; [`build`](RedisStoreBuilder::build) refuses an older server), once the
//!   completion is in the append-only file on disk locally and on that many replicas.
//!
//! Only completions and journal writes are waited for: begins, extends and releases
//! are not, so a failover can still lose a lease (two holders), never a completion or
//! a step's journaled result that the replicas acknowledged. A `WAIT` that reports fewer replicas than asked (a replica down or
//! lagging past the timeout), or that fails, is logged (`tracing` warning, target
//! `idem`), and the completion still counts: it is applied on the primary, and an
//! error would tell the engine that a recorded result was not recorded. `WAIT` is
//! neither consensus nor a bound on what a failover to a replica that missed the
//! completion loses; and if the connection manager reconnected between the completion
//! and its `WAIT`, the `WAIT` counts the new connection's writes (none) and answers at
//! once. `WAIT` also blocks the connection on the server: every call sharing the
//! connection manager waits behind it, up to its timeout, and one waiting past the
//! connection's response timeout (500 ms by default in the `redis` crate) fails with a
//! transient timeout: keep the `WAIT` timeout below it.
//!
//! # Batches
//! A [`Batch`](idem_core::Batch) (or an `idem-lambda` handler) of N keys sends its
//! begins as one pipeline of N begin scripts and its completions as one more: two
//! round trips instead of 2N, each script still on its one key and answered alone
//! (a script that meets `NOSCRIPT` is sent again with its text, one that meets `-OOM`
//! is answered from a read, as for a single call), then one `WAIT` for the batch if
//! the store waits (on a cluster, one on the master of each slot the batch completed
//! on, since each master counts only its own replicas). One script over many keys would be one round trip too, but fails
//! with `CROSSSLOT` on a cluster; on a cluster a pipeline must stay within one slot,
//! so there each script is sent alone, all at once, over the cluster connection's one
//! connection per node.
//!
//! # Redis Cluster
//! Give the builder a cluster connection:
//!
//! ```no_run
//! # async fn start() -> Result<(), Box<dyn std::error::Error>> {
//! let nodes = ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379", "redis://10.0.0.3:6379"];
//! let client = redis::cluster::ClusterClient::new(nodes)?;
//! let connection = client.get_async_connection().await?;
//! let store = idem_redis::RedisStore::builder(connection).build().await?;
//! # Ok(()) }
//! ```
//!
//! Each record is one key and each script touches that key only, so every call goes to
//! one slot, on the master that serves it; records spread over the cluster's slots. A
//! `{hash tag}` in the prefix (`prefix("{billing}:")`) puts every record of the store in
//! one slot, on one master: do that only if you want them together (a `MULTI` or a
//! script of your own over several records), since that master then takes all their load.
//!
//! The `redis` crate's cluster client routes each call by its key, follows `MOVED` and
//! `ASK` (a slot moving between masters while the store writes to it), refreshes its
//! slot map after a reshard or a failover, and resends a call whose connection broke;
//! a resent write that was applied is refused with the record showing it, which the
//! engine counts as applied. A redirect reaches the store only when the client gave up
//! on it (or when a single-node `ConnectionManager` is pointed at a cluster node, which
//! answers `MOVED` for every key it does not serve: use the cluster connection), and is
//! then a transient error. During a failover, writes to the slots of the lost master
//! fail (`CLUSTERDOWN`, a refused connection: transient) until a replica takes over.
//!
//! [`build`](RedisStoreBuilder::build) reads `maxmemory` and `maxmemory-policy` on every
//! master, and refuses the store if any one may evict (naming it); with
//! [`wait_for_aof`](RedisStoreBuilder::wait_for_aof) every master must be Redis 7.2 or
//! newer. Replicas are not read: give them the masters' settings, since one may be
//! promoted. [`wait_for_replicas`](RedisStoreBuilder::wait_for_replicas) sends `WAIT` to
//! the master that holds the completed record (after a batch, to each master that
//! holds one of its completed records).
//!
//! Durability is that of each master and its replicas, as under "Durability" above: a
//! manual `CLUSTER FAILOVER` (without `FORCE`) waits until the replica has every write
//! of its master, so it loses nothing; an automatic failover after a master died (or
//! `CLUSTER FAILOVER FORCE` / `TAKEOVER`) loses what that replica had not received
//! (completed keys run again, two holders possible), and `wait_for_replicas` narrows
//! that for completions.
//!
//! # Errors
//! A lost or refused connection, a timeout, `OOM`, `NOREPLICAS`, `MISCONF`, `BUSY`,
//! `LOADING`, `TRYAGAIN`,
//! `CLUSTERDOWN`, `MOVED`, `ASK`, `MASTERDOWN` and `READONLY` are transient; a wrong type
//! (`WRONGTYPE`), a script error or a missing permission permanent; a hash that cannot
//! be decoded malformed (the call gets a decode error; the body never runs over it).
//! Values larger than [`RedisStoreBuilder::max_data_bytes`] (1 MiB by default) are
//! completed as not stored. Every error names Redis, the operation, the record and the
//! store's key prefix, and one that the `redis` crate raised keeps it as its
//! `source()` (a store error's, and a [`SetupError`]'s).
//!
//! # What was tested
//! The conformance kit of idem (every rule, the model, the engine race and a duplicate
//! storm) over RESP2 and over RESP3, connections killed mid-call (`CLIENT KILL`), a
//! server whose memory is full (its own `redis-server` with a tiny `maxmemory`), one
//! that refuses `CONFIG`, `WAIT` with and without a replica, and expiry observed on the
//! server, against Redis 7.0 on one node.
//!
//! On a Redis Cluster of three masters with one replica each (Redis 7.0, started by the
//! tests on the local machine): the conformance kit over RESP2 and RESP3; the build's
//! checks on every master (one evicting master refuses the build, naming it); a
//! script cache flushed on every master, refilled on the key's master only by the call
//! that needed it; `MOVED` met through a single-node connection, transient; and a
//! duplicate storm (1,000 events, about a third delivered two or three times at once,
//! crashes, failures, clock jumps and injected store faults) during which 48 slots
//! holding its keys migrated to another master (`MIGRATING`/`IMPORTING`, `MIGRATE`: calls
//! could meet `ASK` and `MOVED`, which the client followed) and that master's replica took over by `CLUSTER
//! FAILOVER`: every invariant held on every key (at most one completion recorded, at
//! most one downstream resource, no body run beyond the attempts that recorded nothing,
//! every event served), and no error reached the store. Valkey was not tested.
#![warn(missing_docs)]

/// The `redis` crate this store is built on: give the store a connection of this
/// version (`idem_redis::redis::aio::ConnectionManager`).
pub use redis;

mod connection;
mod scripts;
mod setup;
mod store;

pub use connection::RedisConnection;
pub use setup::{Eviction, RedisStoreBuilder, SetupError};
pub use store::{RedisStore, DEFAULT_MAX_DATA_BYTES};
