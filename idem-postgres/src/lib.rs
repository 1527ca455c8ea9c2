//! The PostgreSQL store of [idem](https://docs.rs/idem): one row per record, one
//! statement per transition, and a completion that can commit in the body's own
//! transaction, so that a database effect happens **exactly once**.
//!
//! ```no_run
//! use idem_core::{Call, Engine, Error};
//! use idem_postgres::{PgStore, PgTransaction};
//!
//! # async fn start() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::PgPool::connect("postgres://app@127.0.0.1/app").await?;
//! let store = PgStore::builder(pool).schema("billing").build()?;
//! store.migrate().await?; // or run `store.migration()` with your own tool
//! let engine = Engine::new(store);
//!
//! // The ledger row and idem's record commit together, or neither does.
//! let receipt: i64 = Call::new("payments::charge", "order-7")
//!     .engine(&engine)
//!     .run_in_transaction(async |ctx, tx: &mut PgTransaction| {
//!         sqlx::query("INSERT INTO billing.ledger (order_id, cents) VALUES ($1, $2)")
//!             .bind("order-7")
//!             .bind(1250_i64)
//!             .execute(&mut **tx)
//!             .await
//!             .map_err(|e| Error::Config(e.to_string()))?; // your own error type in real code
//!         Ok::<_, Error>(ctx.fence() as i64)
//!     })
//!     .await?;
//! # let _ = receipt;
//! # Ok(()) }
//! ```
//!
//! The attribute says the same: `tx` is bound in the body, and callers call
//! `charge(order)`.
//!
//! ```no_run
//! use idem::{idempotent, Error};
//! use idem_postgres::PgTransaction;
//!
//! #[idempotent(key = order_id, transaction(tx: PgTransaction))]
//! async fn charge(order_id: String, cents: i64) -> Result<i64, Error> {
//!     sqlx::query("INSERT INTO billing.ledger (order_id, cents) VALUES ($1, $2)")
//!         .bind(&order_id)
//!         .bind(cents)
//!         .execute(&mut **tx)
//!         .await
//!         .map_err(|e| Error::Config(e.to_string()))?; // your own error type in real code
//!     Ok(cents)
//! }
//! ```
//!
//! The store takes the application's `PgPool`; the only connections it opens itself
//! are its heartbeats' (two at most, by default, with the pool's connect options:
//! [`PgStoreBuilder::heartbeat_connections`]), so that a lease is never lost for want of
//! a pooled connection while bodies hold them all. Queries are built at run time (sqlx prepares each statement once per connection), so
//! building never needs a database. The `tls` feature turns on sqlx's rustls.
//!
//! # The table
//! [`PgStore::migrate`] creates it (and the schema, when one is named) if it does not
//! exist, under an advisory lock so that many processes may run it at once;
//! [`PgStore::migration`] gives the same SQL for a migration tool of your own. For the
//! default table:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS "idem_records" (
//!     id             text    PRIMARY KEY,  -- {namespace}#{digest}
//!     state          text    NOT NULL,     -- INPROGRESS | COMPLETED
//!     owner          text    NOT NULL,     -- the attempt's random id
//!     fence          bigint  NOT NULL,     -- incremented by every begin
//!     lease_until_ms bigint  NOT NULL,     -- epoch ms; 0 once released
//!     expires_at_s   bigint  NOT NULL,     -- epoch s
//!     fingerprint    text,
//!     outcome        text,                 -- ok | err | not_stored
//!     data           text,                 -- the recorded value or error, JSON
//!     data_bytes     bytea,                -- the recorded value, codec bytes
//!     format         integer NOT NULL,
//!     codec          text    NOT NULL,     -- json | bytes
//!     step_names     text[],               -- the journal of steps: one element per
//!     step_outcomes  text[],               --   step, in first-write order; ok | err |
//!     step_codecs    text[],               --   NULL while started; json | bytes;
//!     step_data      bytea[]               --   the step's data as it is
//! );
//! ALTER TABLE "idem_records" ADD COLUMN IF NOT EXISTS data_bytes bytea,
//!     ADD COLUMN IF NOT EXISTS step_names text[], ADD COLUMN IF NOT EXISTS step_outcomes text[],
//!     ADD COLUMN IF NOT EXISTS step_codecs text[], ADD COLUMN IF NOT EXISTS step_data bytea[];
//! CREATE INDEX IF NOT EXISTS "idem_records_expires_at_s" ON "idem_records" (expires_at_s);
//! CREATE SEQUENCE IF NOT EXISTS "idem_records_fence";  -- the lock-held form's fences
//! ```
//!
//! ## Upgrading a table made before the lock-held form
//! The lock-held form (`lock_held(true)`) takes its fences from the sequence
//! `"{table}_fence"`, which earlier builds did not create: run the new version's
//! [`PgStore::migrate`] (or its `CREATE SEQUENCE IF NOT EXISTS`) before turning it on.
//! Without it every such `run_in_transaction` fails with a permanent store error naming
//! the sequence, and no body runs; plain calls and the default clock-lease form are not
//! affected. Turn it on only once no process of an older build runs against the table:
//! the two forms on one key can hand out equal fences (§3.6 of `docs/protocol.md`).
//!
//! ## Upgrading a table made before steps
//! The journal of steps (`Context::step`) is kept in the record's row, in the four
//! `step_*` arrays, which tables made by earlier builds lack. As for the bytes codec
//! below: run the new version's [`PgStore::migrate`] (or its `ALTER TABLE ... ADD COLUMN
//! IF NOT EXISTS`, a catalogue change, no rewrite) **before** deploying it: on a table
//! without the columns every statement of the new version fails with a permanent store
//! error naming the statement, and no body runs. Rows written before read with an empty
//! journal; earlier builds ignore the columns. A record an earlier build completes keeps
//! whatever journal its row had (that build does not know to empty it), so a begin that
//! takes over a completed row starts with an empty journal, whatever the row holds.
//!
//! ## Upgrading a table made before the bytes codec
//! A value that serializes as bytes (`bytes::Bytes`, `Vec<u8>`, an `idem-http`
//! response) is recorded as `bytea` in the `data_bytes` column, which tables made by
//! earlier builds lack. Roll an upgrade in this order:
//! 1. Add the column first, from a migration tool or by running the new version's
//!    [`PgStore::migrate`]: `ALTER TABLE "schema"."idem_records" ADD COLUMN IF NOT
//!    EXISTS data_bytes bytea` (the store's [`table`](PgStore::table), qualified by its
//!    schema). It changes the catalogue only (no rewrite, a brief lock); earlier builds
//!    ignore the column.
//! 2. Then deploy the new version. On a table without the column, **every** call of the
//!    new version fails (duplicates of JSON records included: each statement reads the
//!    column) with a permanent store error that names this statement; no body runs. So
//!    migrate before the deploy, not after.
//! 3. While old and new processes run side by side, an old one that meets a record the
//!    new one wrote as bytes answers `Error::Decode` for it (its replay refuses the
//!    codec); it never runs the body again. JSON records read the same in both.
//!
//! # One statement per transition
//! Each operation is one statement, one round trip: a new key costs two (begin, then
//! complete), a duplicate one.
//! - **begin** is `INSERT ... ON CONFLICT (id) DO UPDATE ... WHERE <the row is free>`:
//!   free means completed and past its expiry, or in progress past its lease, at the
//!   engine's clock. It increments the fence in place.
//! - **complete**, **extend** and **release** are `UPDATE ... WHERE` the attempt holds
//!   the row (in progress, its owner and fence; extend also only while not released).
//! - A write that is refused returns the row as it is now, in the same statement: it is
//!   read `FOR UPDATE`, which under READ COMMITTED gives the newest committed version
//!   (the one the write waited for), not the statement's older snapshot. The one row it
//!   cannot give is one the snapshot never saw: when two begins race on a new key, the
//!   loser's insert waits for the winner's, and then reads the row in a second
//!   statement (only that race costs a second round trip).
//!
//! # The journal of steps
//! A step's entry ([`Store::journal`](idem_core::Store::journal)) is one statement:
//! complete's `UPDATE ... WHERE` the attempt holds the row, assigning the step's
//! elements of the four arrays at its name's position, or one past the end (so an entry
//! is replaced in place, or appended). Every statement that returns the record (a read,
//! a refused write) returns its journal, from the same row version; begin keeps it,
//! every completion sets the arrays to `NULL` in its own update. In a
//! [`PgTransaction`] (a database step) the same statement runs on the body's
//! transaction, so the step's rows and its entry commit together, or neither does. Why
//! arrays in the row and not `jsonb` or a child table: bytes stay `bytea`, never base64,
//! and a refused write's row, read `FOR UPDATE`, is the newest committed version with
//! its own journal (a child table's rows would come from the statement's older
//! snapshot, and each completion would cost a `DELETE` on it). A journal past
//! PostgreSQL's 1 GB field is refused with a permanent store error saying so.
//!
//! # Batches
//! A [`Batch`](idem_core::Batch) (or an `idem-lambda` handler) of N keys costs two
//! statements, not 2N: **begin_batch** is begin's insert over `unnest` of one array
//! per field, each row judged free at its own request's clock, and **complete_batch**
//! is complete's update over `unnest`. Both take their row locks in id order (the insert
//! from its input sorted by id, whose conflicts lock rows in that order; the update
//! after a `SELECT ... ORDER BY id FOR UPDATE` of the same rows), so two batches that
//! share keys, in any order, wait for each other and never deadlock. Each item's answer
//! is the single statement's; a key whose row the statement's snapshot could not see
//! (inserted by a concurrent begin) is read in one more statement, as a single begin's
//! would be.
//!
//! # Exactly once, in one transaction
//! With [`Call::run_in_transaction`](idem_core::Call::run_in_transaction) the body gets
//! a transaction on the pool as a [`PgTransaction`]; the completion is written in it and
//! committed with the body's writes, so the two commit together or not at all.
//!
//! ## The lease is the transaction
//! With [`PgStoreBuilder::lock_held(true)`](PgStoreBuilder::lock_held) the transaction
//! also holds the key (`docs/protocol.md` §3.6): it is opened first, at the call's
//! [isolation level](idem_core::Call::isolation), and one statement inserts the
//! record's row in progress, or updates it if it is free, leaving it locked until the
//! transaction ends. That row lock is the lease: nothing renews it and no clock ends it.
//! - A duplicate of a completed record is refused by the record as last committed,
//!   read without a lock, and replays it: duplicates, however many at once, never wait
//!   for one another.
//! - A duplicate of a running call meets the locked row and answers
//!   [`Error::InProgress`](idem_core::Error::InProgress) after 1 ms (the statement sets
//!   its own `lock_timeout`), or with [`wait`](idem_core::Call::wait) waits for the
//!   commit (then replays) or the rollback (then takes the key), holding a pooled
//!   connection no longer than its wait.
//! - A body error, a panic or a dropped future rolls back, and the key is free at once.
//! - A process that dies mid-body frees the key when PostgreSQL ends its session: at
//!   once when the process's socket is closed by its kernel (a crash, a SIGKILL; the
//!   `idem-ledger` test measures it), after the server's TCP keepalives
//!   (`tcp_keepalives_idle`, `tcp_keepalives_interval`, `tcp_keepalives_count`) when the
//!   client's host vanishes. A process that is paused keeps its session, and so the key,
//!   until it resumes, or until the server's `idle_in_transaction_session_timeout` (or
//!   `statement_timeout`, for a body stuck in a statement) ends the session. Set them
//!   for the role that runs your bodies if you need a bound, and above your slowest
//!   body: they end a legitimately slow body the same way. The store sets none of them
//!   itself (they would bound your bodies behind your back); it sets only its own
//!   statements' `lock_timeout`.
//! - The fence comes from a sequence (`"{table}_fence"`, made by the migration), drawn
//!   once the row is held and added to the row's: a rolled-back or crashed attempt's
//!   fence is never handed out again, and attempts queued on one key get fences in the
//!   order they take it.
//! - An error chosen by [`replay_errors`](idem_core::Call::replay_errors) is recorded
//!   after the rollback the same way, in a fresh transaction (hold, completion, commit):
//!   a crash or a failure in between leaves the key free, never held by a lease.
//! - Serialization failures and deadlocks roll everything back; in the completion or the
//!   commit they are a transient store error with the database's error as its source,
//!   and in the body the body's own error. Under REPEATABLE READ and SERIALIZABLE a
//!   duplicate that waited meets one when the holder commits, and begins again in a
//!   fresh transaction that replays.
//!
//! It is not the default, for reasons of deployment: it needs the sequence the
//! migration makes (see above), and no process of an older build on the same table
//! (whose transactions take keys under a clock lease: the two forms on one key can hand
//! out equal fences). Once both hold, turn it on: the transactional form already holds a
//! pooled connection for the whole body, and with it the clock lease adds only what can
//! go wrong: a heartbeat that needs a second connection (and lapses when the pool has
//! none), a row
//! update during the body (which makes every REPEATABLE READ or SERIALIZABLE completion
//! after the first heartbeat fail with a serialization error), a crash that blocks the
//! key for the whole lease, and a committed begin before the body (one more round trip
//! and commit). What it gives up: the attempt is invisible while it runs (its row is
//! uncommitted: [`PgStore::read`](idem_core::Store::read) and `idem list` show the
//! record as it was before it; the lock shows in `pg_locks`), a plain
//! [`run`](idem_core::Call::run) on the same key waits on the lock for the commit (or
//! fails with a transient store error after the engine's store timeout), the transaction holds back the vacuum horizon while the body
//! runs, `max_duration` and [`Context::lease_lost`](idem_core::Context::lease_lost)
//! mean nothing (a paused holder keeps the key, as said above), and a duplicate of a
//! completed call costs three round trips (`BEGIN`, the hold refused with the record,
//! `ROLLBACK`) where the clock-lease form's costs one; a first call costs four in both
//! (`tests/lock_held.rs` counts them), but one commit fewer held by the transaction.
//! The engine's [local cache](idem_core::EngineBuilder::local_cache) answers repeated
//! duplicates with none.
//! The clock lease, the default, is described next.
//!
//! ## Under a clock lease
//! By default (`lock_held(false)`) the key is taken as a plain call's (the lease is committed
//! at once, so duplicates see the call in progress), then the transaction is opened and
//! handed to the body. The completion is written in it, conditional on the attempt
//! still holding the key, and committed with the body's writes:
//! - a duplicate that arrives meanwhile waits on the completion's row lock, then sees
//!   the completed record;
//! - a lost lease (another attempt took over) refuses the completion: everything the
//!   body wrote is rolled back, and the call returns `Error::LeaseLost`;
//! - a body error or a panic rolls back, then releases the key (or records the error);
//! - a process that dies before the commit leaves nothing of the body behind;
//! - a commit whose answer is lost is settled by the record: read, then released if
//!   the read does not show the completion (a commit still in flight holds the row's
//!   lock, so the release waits for it and is refused with the completion).
//!
//! Releases use other connections of the pool, and heartbeats the store's own
//! ([`PgStoreBuilder::heartbeat_connections`]): a pool whose connections the bodies'
//! transactions all hold makes new calls wait to begin (back-pressure, bounded by the
//! store timeout, before any body runs), never a running call lose its lease. The
//! isolation level applies here too, but a body that runs
//! past a third of the lease has its row renewed by a heartbeat, and under REPEATABLE
//! READ or SERIALIZABLE its completion then fails with a serialization error.
//!
//! # Expiry
//! Expired rows are free by the predicates above, so nothing needs to delete them for
//! the guarantee. [`PgStore::purge_expired`] gives their space back, in batches that
//! skip the rows live calls hold locked, from a periodic job of yours.
//!
//! # Errors
//! Serialization failures, deadlocks, lost connections, a full server, pool timeouts
//! and statement timeouts are transient; a missing table or permission and a violated
//! constraint are permanent, and each message names the table; a row that cannot be
//! decoded is malformed (the call gets a decode error; the body never runs over it).
//! Values larger than [`PgStoreBuilder::max_data_bytes`] (1 MiB by default) are
//! completed as not stored, before the commit.
//!
//! # Testing your handlers
//! [`testing::TestSchema`] gives a test a schema of its own (the pool's `search_path`,
//! so your body's unqualified tables are the test's), a migrated store and an engine,
//! and drops the schema at the end: a transactional handler is tested with its
//! production body in a few lines.
//!
//! # What was tested
//! Against PostgreSQL 15 on one node: idem's conformance kit (every rule, the model,
//! the engine race and a duplicate storm); the lock-held form (a duplicate in progress
//! at once, a waiting duplicate replaying under each isolation level with a body past
//! the old heartbeat interval, rolled-back, panicking and cancelled attempts freeing
//! the key under ever higher fences, a serialization failure retryable with its source,
//! a plain call waiting for a held key's commit, a recorded error, twenty concurrent
//! duplicates of a completed key all replaying, a recorded error whose completion fails
//! leaving the key free, attempts queued on one key getting fences in the order they
//! take it); the clock-lease
//! form (commit, rollback, lost lease, a begin waiting on an uncommitted completion, a
//! lost commit answer); worker processes killed mid-body and between completion and
//! commit, on both forms (exactly one ledger row per key), and a key free within
//! milliseconds of its holder's SIGKILL; the cleanup, and the errors above.
#![warn(missing_docs)]

mod error;
mod sql;
mod store;
pub mod testing;
mod transaction;

pub use store::{
    NameError, PgStore, PgStoreBuilder, DEFAULT_HEARTBEAT_CONNECTIONS, DEFAULT_MAX_DATA_BYTES,
    DEFAULT_TABLE,
};
pub use transaction::PgTransaction;
