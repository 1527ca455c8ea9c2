//! The operator CLI of [idem](https://docs.rs/idem): `idem inspect`, `list`, `forget`
//! and `purge` on the records of a DynamoDB, PostgreSQL or Redis store. This library is
//! what the `idem` binary runs; its functions are public for tests and for tools of
//! your own.
//!
//! ```text
//! export IDEM_STORE=postgres://app@db/app      # or redis://host:6379, dynamodb://TABLE, TABLE
//! idem inspect billing::charge '"order-7"'     # the key's JSON, encoded as the engine does
//! idem inspect --id 'billing::charge#3f1a…'    # or the record id
//! idem list --state in-progress --older-than 10m
//! idem forget billing::charge '"order-7"'      # the next call runs the body again
//! idem purge --expired                         # PostgreSQL only: the others expire records themselves
//! ```
//!
//! Every command takes `--json` for a script's use, and `--store` (or `IDEM_STORE`).
//!
//! # The store
//! `--store` is a URL, or a DynamoDB table's name:
//! - `postgres://…` (or `postgresql://`): sqlx's URL (its `PG*` variables and
//!   `~/.pgpass` too); the table is `idem_records` unless `--table` and `--schema` say
//!   otherwise, and it must exist.
//! - `redis://…` or `rediss://…`: the keys under `--prefix` (`idem:` by default). With
//!   `--cluster`, the URL is one node of a Redis Cluster: records are read and written
//!   through the cluster's connection (by slot), and listing scans every master. A
//!   cluster node named without `--cluster` is refused, since the CLI would see only
//!   that node's keys.
//! - `dynamodb://TABLE` or `TABLE`: the table, with the AWS SDK's default credentials
//!   chain and region (`aws_config`: environment, profile, SSO, web identity, container
//!   and instance roles), ids under `--prefix` (none by default), Powertools' attribute
//!   names in the partition-key layout (`idem-dynamo`'s defaults). A table whose store
//!   was built otherwise is named as it was built: `--attribute FIELD=NAME` once per
//!   renamed attribute (`AttributeNames`' fields: `--attribute id=pk --attribute
//!   data=payload`), `--sort-key ATTRIBUTE=PARTITION_VALUE` for Powertools' sort-key
//!   layout. `--endpoint-url` (or `AWS_ENDPOINT_URL`) for a local server.
//!
//! An option of one kind of store given with another (`--table` with a Redis URL,
//! `--cluster` with DynamoDB) is refused rather than ignored.
//!
//! Records are read and written through each store's own crate and the
//! [`Store`](idem_core::Store) trait, with the store's conditions: `read`, `begin`,
//! `release`. Only listing queries the database directly, since the trait cannot list.
//!
//! # The key
//! KEY is the key's JSON: `'"order-7"'`, `42`, `'["tenant-1","req-7"]'` (a tuple key),
//! `'{"id":7}'` (a struct key). It is encoded and digested by `idem_core::key`, so the
//! record id is the engine's ([`key::record_id`]); floats and empty keys are refused as
//! the engine refuses them. Integers must fit in 64 bits. An engine built with a
//! secret (`EngineBuilder::secret`) has HMAC digests: give the CLI the same bytes in
//! `IDEM_SECRET`, or a file's path in `--secret-file` / `IDEM_SECRET_FILE` (one trailing
//! line break is dropped). The secret itself is never an argument, which other users
//! of the machine could read.
//!
//! # Forget
//! `idem forget` frees a record so that the key's next call runs its body again, and
//! keeps its **fence**: the next call's fence is higher than any the key had, so a
//! downstream system that checks fences still fences off an old attempt. Deleting the
//! record would reset the fence to 1 (`docs/protocol.md`, §1 and §6), which is why
//! forget never deletes. Every write is one of the store contract's own conditional
//! writes, so no store needed a new operation:
//!
//! - **In progress**: the record is released in its holder's name, [`Store::release`](idem_core::Store::release)
//!   with the owner and fence just read. That is the write the holder itself makes on a
//!   failure, conditional on both, so it is refused if anyone took the key over since.
//!   A live lease (a body that may still be running) is refused unless `--force`. After
//!   a forced release, a body still running keeps its fence: it may still record its
//!   outcome, until a new call takes the key over (with fence + 1), which fences it
//!   off. The record's journal of steps is kept, as the holder's own release keeps
//!   it: the next call gets the finished steps' values back and does not run them again
//!   (an at-most-once step found started still answers `StepUncertain`). `idem inspect`
//!   shows the journal (each step's name, `ok`, `err` or `started`, and its size).
//! - **Completed**: the contract has no write that frees a completed record: `release`,
//!   `complete` and `extend` need a record in progress, and `begin` refuses a live one.
//!   But `begin`'s condition is "free at the request's `now`", and the store never reads
//!   a clock: the time is the caller's. Forget sends `begin` at the instant the record
//!   itself becomes free, its own expiry (or now, if that has passed), with a fresh
//!   owner, and releases that attempt at once. The record is then in progress, released,
//!   without its outcome, at fence + 1; the next call takes it with fence + 2. The begin
//!   is refused by anything written after the read: an attempt that took the key over
//!   after the record expired holds a lease (or a completion) that ends after that
//!   instant, as long as callers' clocks are within the protocol's margin (§3.5). The
//!   one write it does not see is a record deleted and begun again in between (an
//!   operator's `delete`), which resets fencing anyway; forget then says so. Should the
//!   CLI die between the two writes, the key stays held until 1 ms after the instant the
//!   record would have expired anyway: never longer than without forget.
//!
//! The alternative, a new store operation "set lease 0 where the record is completed
//! with this owner and fence", would have been exact but needed a change in every store
//! and in the contract, for what two existing writes already do.
//!
//! # Listing
//! `idem list` shows records by state and age. A record keeps no start time, so
//! `--older-than D` means: its last lease ended at least `D` ago ([`ops::Filter`]). On
//! PostgreSQL it is one query (a full scan of the table: there is no index on the
//! state); on Redis a `SCAN` over the prefix (on a cluster, on every master), each key
//! read through the store; on DynamoDB a `Scan` of the whole table (in the sort-key
//! layout a `Query` of the partition every record shares), whose cost is printed as a
//! warning first ([`ops::list_warning`]). A progress bar counts the records examined when
//! standard error is a terminal.
//!
//! # Purge
//! `idem purge --expired` deletes PostgreSQL's expired rows with
//! `PgStore::purge_expired`, in batches (a progress bar counts them). Redis and
//! DynamoDB expire records themselves (key expiry, TTL): there it says so and does
//! nothing.
//!
//! # Exit codes
//! `0` done; `1` the store failed or could not be reached; `2` a usage error (a key,
//! namespace, secret or option refused); `3` refused (a live lease without `--force`, a
//! record that changed since it was read); `4` no such record.
#![warn(missing_docs)]

mod error;
pub mod key;
pub mod ops;
pub mod output;
pub mod target;

pub use error::{CliError, ErrorKind};
pub use target::{Location, Target};
