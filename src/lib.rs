//! # idem
//!
//! Run a side-effecting async function **exactly once per key**, although the events
//! that call it arrive at least once.
//!
//! Lambda, SQS, EventBridge, Kafka consumers, webhook senders and retrying HTTP clients
//! all deliver some events twice. A handler that creates a resource, charges a card or
//! sends a mail then does it twice. idem records each key's outcome in a store with
//! conditional writes: the first call runs the body, every duplicate gets the recorded
//! result back.
//!
//! ```
//! use idem::{idempotent, Engine, Error, MemoryStore};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct CfnEvent { request_id: String, size: u32 }
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Group { name: String }
//!
//! #[idempotent(key = event.request_id, ttl = "24h")]
//! async fn create_group(event: CfnEvent) -> Result<Group, Error> {
//!     // Runs once per request id; duplicates get the recorded Group back.
//!     Ok(Group { name: format!("group-of-{}", event.size) })
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Error> {
//! // Once at start-up. The in-memory store is process-local: use a shared store
//! // (DynamoDB) wherever duplicates can reach more than one process.
//! Engine::new(MemoryStore::new()).install()?;
//!
//! let event = || CfnEvent { request_id: "req-1".into(), size: 3 };
//! let first = create_group(event()).await?;
//! assert_eq!(create_group(event()).await?, first); // replayed, not created again
//! # Ok(()) }
//! ```
//!
//! The guarantee and its limits (clock skew, a crash between the side effect and the
//! record, fencing across deletions, pseudonymous keys), the record, every outcome and
//! the store contract are written down once, in `docs/protocol.md` in idem's
//! repository. The function API that the attribute fills in is [`Call`].
//!
//! This crate's root is for application code. Store authors use [`store`] (the
//! [`Store`](store::Store) trait, its requests and answers, the record) and [`key`]
//! (the frozen formats), and depend on `idem-core` at an exact version.
//!
//! # The `#[idempotent]` attribute
//!
//! `#[idempotent(key = <expr>, ...)]` goes on an `async fn` returning a `Result<T, E>`
//! (aliases such as `anyhow::Result<T>` and `std::io::Result<T>` included) where
//! `T: Serialize + DeserializeOwned` (the value is recorded and replayed) and
//! `E: From<idem::Error>` (idem's own errors, such as [`Error::InProgress`], come back
//! through it). The signature stays as written; the body runs at most once per key.
//! Every misuse is a compile error that says what to write instead.
//!
//! It works on free functions, inherent methods, methods of trait impls (native
//! `async fn` and `#[async_trait]`), generic functions, `impl Trait` arguments,
//! explicit lifetimes and destructured parameters. The body may use `?` and `return`.
//! The generated future is `Send` whenever the body's is.
//!
//! Inside the body, [`Context::current`] gives the attempt's token (to pass downstream
//! as an idempotency key) and fencing number. It is a task-local: it is `None` inside
//! tasks the body spawns.
//!
//! ## `key` (required)
//! Any expression over the arguments, `self` and items in scope, of a type that
//! implements `Serialize`; tuples make composite keys. It is evaluated once, before the
//! body, so the body may move what it borrows. Floats and empty values (`""`, `None`,
//! `[]`, `{}`) are refused at run time ([`Error::InvalidKey`]), and so is a tuple key
//! with an empty part: two requests whose key part is missing must not share a record.
//! ```
//! # use idem::{idempotent, Error};
//! #[idempotent(key = (tenant, order_id))]
//! async fn ship(tenant: String, order_id: u64) -> Result<u64, Error> {
//!     Ok(order_id)
//! }
//! ```
//!
//! ## `optional_key`
//! `optional_key = true` makes a missing key legitimate: when the key (or a part of a
//! tuple key) is empty, the body runs **unguarded**, with a warning event, instead of
//! failing. For an `Idempotency-Key` header that clients may leave out. Inside the body,
//! [`Context::is_guarded`] tells the two apart.
//! ```
//! # use idem::{idempotent, Error};
//! #[idempotent(key = (tenant, idempotency_key), optional_key = true)]
//! async fn pay(tenant: String, idempotency_key: Option<String>) -> Result<u64, Error> {
//!     Ok(42)
//! }
//! ```
//!
//! ## `report`
//! `report = true` tells the caller how the value was obtained: the function returns
//! `Result<`[`Report<T>`](Report)`, E>` while its body still returns `Result<T, E>`. The
//! report says whether the body ran or the value was replayed ([`Source`]), under which
//! fence, and until when the record replays it: for an `Idempotent-Replayed` header,
//! metrics, or tests. The function API's [`Call::run_reported`] is the same.
//! ```
//! # use idem::{idempotent, Error, Report, Source};
//! #[idempotent(key = order_id, report = true)]
//! async fn create_order(order_id: u64) -> Result<Report<u64>, Error> {
//!     Ok(order_id)
//! }
//! # async fn handler() -> Result<(), Error> {
//! let report = create_order(7).await?;
//! let replayed = report.source == Source::Replayed; // e.g. `Idempotent-Replayed: true`
//! # let _ = replayed; Ok(()) }
//! ```
//!
//! ## `transaction`
//! `transaction(tx: PgTransaction)` runs the body in a transaction of the engine's store
//! (a store with a [`store::Transaction`] type, such as `idem_postgres::PgTransaction`),
//! bound as `tx: &mut PgTransaction` in the body: the body's writes in `tx` and idem's
//! record commit together or not at all, so a database effect happens exactly once,
//! crashes included. A lost lease or a failed body rolls the writes back. The signature
//! stays as written: callers do not pass the transaction, idem opens it after taking
//! the key. The function API's [`Call::run_in_transaction`] is the same. (This crate
//! does not depend on a database driver: the example compiles in `idem-postgres`'s crate
//! docs and runs in its `tests/attribute.rs`.)
//! ```text
//! use idem_postgres::PgTransaction;
//!
//! #[idempotent(key = order.id, transaction(tx: PgTransaction))]
//! async fn charge(order: Order) -> Result<Receipt, MyError> {
//!     sqlx::query("INSERT INTO ledger (order_id, cents) VALUES ($1, $2)")
//!         .bind(&order.id)
//!         .bind(order.cents)
//!         .execute(&mut **tx)
//!         .await?;
//!     Ok(Receipt::for_order(&order))
//! }
//! ```
//!
//! ## `name`
//! The namespace of the records, `module_path::function` by default. Required on
//! methods with a `self` receiver: the attribute cannot see the impl's type. Associated
//! functions without `self` look like free functions, and every instantiation of a
//! generic function shares one namespace. Changing the name (or the module) starts
//! afresh: records under the old name are not found. `#` is not allowed.
//! ```
//! # use idem::{idempotent, Error};
//! struct Billing;
//! impl Billing {
//!     #[idempotent(key = invoice, name = "Billing::charge")]
//!     async fn charge(&self, invoice: u64) -> Result<u64, Error> {
//!         Ok(invoice)
//!     }
//! }
//! ```
//!
//! ## `ttl`, `lease`, `max_duration`
//! How long a completed record is replayed (default 1 h, counted from completion); how
//! long a lease lasts without a heartbeat (default 30 s; heartbeats renew it every
//! `lease / 3`); how long heartbeats keep a running body's lease (default 15 min). Each
//! takes a duration literal (`"500ms"`, `"30s"`, `"15m"`, `"24h"`, `"7days"`) or a
//! [`Duration`](std::time::Duration) expression. A ttl is at least 1 s (records expire
//! on whole seconds) and a lease at least 30 ms: a literal below these is refused at
//! compile time, by the engine's own rule
//! ([`protocol::ttl_refusal`](idem_core::protocol::ttl_refusal)). A lease must also be
//! longer than 1.5 x the engine's store timeout (5 s by default, so 7.5 s), since its
//! first heartbeat may take the whole timeout: only the engine knows it, so a shorter
//! lease is refused when the call runs ([`Error::Config`]).
//! ```
//! # use idem::{idempotent, Error};
//! # use std::time::Duration;
//! const LEASE: Duration = Duration::from_secs(60);
//!
//! #[idempotent(key = id, ttl = "7days", lease = LEASE, max_duration = "1h")]
//! async fn rebuild_index(id: u64) -> Result<(), Error> {
//!     Ok(())
//! }
//! ```
//!
//! ## `wait`
//! A duplicate that finds the first call in progress gets [`Error::InProgress`] at
//! once, unless it may wait: then it polls (50 ms doubling to 1 s, jittered) until it
//! can replay the outcome, or takes over if the first call's lease lapses.
//! ```
//! # use idem::{idempotent, Error};
//! #[idempotent(key = request_id, wait = "25s")]
//! async fn respond(request_id: String) -> Result<String, Error> {
//!     Ok(request_id)
//! }
//! ```
//!
//! ## `fingerprint`
//! A payload to compare: a duplicate whose key matches but whose fingerprint differs
//! gets [`Error::PayloadMismatch`] instead of the first call's result (a client reusing
//! an idempotency key for a different request).
//! ```
//! # use idem::{idempotent, Error};
//! # #[derive(serde::Serialize)] struct Payment { amount: u64, currency: String }
//! #[idempotent(key = idempotency_key, fingerprint = payment)]
//! async fn pay(idempotency_key: String, payment: Payment) -> Result<u64, Error> {
//!     Ok(payment.amount)
//! }
//! ```
//!
//! ## `replay_errors`
//! By default a body's `Err` releases the key so a retry runs the body again. A
//! predicate `fn(&E) -> bool` chooses errors to record and replay instead (a declined
//! card should stay declined); it requires `E: Serialize + DeserializeOwned`.
//! ```
//! # use idem::{idempotent, Error};
//! # use serde::{Deserialize, Serialize};
//! #[derive(Debug, Serialize, Deserialize)]
//! enum PayError { Declined, Unavailable, Idem(String) }
//!
//! impl From<Error> for PayError {
//!     fn from(error: Error) -> Self { PayError::Idem(error.to_string()) }
//! }
//!
//! #[idempotent(key = card, replay_errors = |e| matches!(e, PayError::Declined))]
//! async fn charge(card: String) -> Result<u64, PayError> {
//!     Err(PayError::Declined)
//! }
//! ```
//!
//! An error type that is recorded can keep idem's own errors as a `#[from]` variant,
//! although [`Error`] is not serializable: mark that variant `#[serde(skip)]` and leave
//! it out of the predicate. idem's errors (in progress, store unavailable, lease lost)
//! are then never recorded, only passed to the caller, and the recorded variants
//! replay as they were:
//! ```
//! # use idem::{idempotent, Engine, Error, MemoryStore};
//! # use serde::{Deserialize, Serialize};
//! #[derive(Debug, thiserror::Error, Serialize, Deserialize)]
//! enum PayError {
//!     #[error("card declined: {0}")]
//!     Declined(String),
//!     #[error(transparent)]
//!     #[serde(skip)]
//!     Idem(#[from] Error),
//! }
//!
//! #[idempotent(key = card, replay_errors = |e| matches!(e, PayError::Declined(_)))]
//! async fn charge(card: String) -> Result<u64, PayError> {
//!     Err(PayError::Declined("insufficient funds".into()))
//! }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # Engine::new(MemoryStore::new()).scope(async {
//! let first = charge("card-1".into()).await;
//! let replayed = charge("card-1".into()).await; // the recorded decline, body not run
//! assert!(matches!(replayed, Err(PayError::Declined(reason)) if reason == "insufficient funds"));
//! # let _ = first; }).await;
//! # }
//! ```
//!
//! ## `engine`
//! The engine to run on, instead of the one installed with [`Engine::install`] (with
//! none installed and none given, calls fail with [`Error::NoEngine`]; idem never falls
//! back to an in-memory store silently). Any expression that gives an `Engine` or a
//! reference to one.
//! ```
//! # use idem::{idempotent, Engine, Error, MemoryStore};
//! use std::sync::LazyLock;
//! static AUDIT: LazyLock<Engine> = LazyLock::new(|| Engine::new(MemoryStore::new()));
//!
//! #[idempotent(key = id, engine = AUDIT)]
//! async fn audit(id: u64) -> Result<u64, Error> {
//!     Ok(id)
//! }
//! ```
//!
//! ## `crate`
//! The path to `idem` where it is re-exported under another name.
//! ```
//! # use idem::{idempotent, Error};
//! mod platform { pub(crate) use ::idem as dedup; }
//!
//! #[idempotent(key = id, crate = platform::dedup)]
//! async fn handle(id: u64) -> Result<u64, Error> {
//!     Ok(id)
//! }
//! ```
//!
//! # Steps: each effect once, when the body has several
//!
//! A body with several effects (charge the card, create the resource, send the mail)
//! that crashes after the first would run all of them again in the next attempt.
//! [`step`] (or [`Context::step`]) journals each step's result in the key's record
//! before the body goes on; a later attempt of the same key (the first crashed, lost
//! its lease, or failed with an error that released the key) gets the journaled results
//! back and runs only the steps that did not finish. Inside a step,
//! [`Context::token`] is the step's own key, which `idem-http`'s client middleware
//! sends downstream, so a step run again after a crash before its journal write sends
//! the same key. [`Step::at_most_once`] turns that re-run into
//! [`Error::StepUncertain`] (for a downstream that takes no key), which
//! [`Step::on_uncertain`] reconciles.
//! ```
//! # use idem::{idempotent, step, Engine, Error, MemoryStore};
//! # async fn charge_card(_order: u64, _key: &str) -> Result<String, Error> { Ok("ch_1".into()) }
//! # async fn create_shipment(_order: u64, _key: &str) -> Result<u64, Error> { Ok(9) }
//! # async fn send_mail(_order: u64) -> Result<(), Error> { Ok(()) }
//! #[idempotent(key = order)]
//! async fn place(order: u64) -> Result<(String, u64), Error> {
//!     let key = || idem::Context::current().unwrap().token().to_owned();
//!     // A crash after this step: the next attempt gets "ch_1" back, charges nothing.
//!     let charge = step("charge", async { charge_card(order, &key()).await }).await?;
//!     let shipment = step("ship", async { create_shipment(order, &key()).await }).await?;
//!     step("mail", send_mail(order)).at_most_once().await?;
//!     Ok((charge, shipment))
//! }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Error> {
//! # Engine::new(MemoryStore::new()).scope(async {
//! assert_eq!(place(7).await?, ("ch_1".to_owned(), 9));
//! # Ok(()) }).await }
//! ```
//! One store round trip per step (an at-most-once step two), none for a body without
//! steps; an attempt that takes a key over reads the journal once. Steps are not a
//! workflow engine: no timers, no sleeps across days, no fan-out; the journal lives as
//! long as the record's attempt, and a completion empties it. `docs/protocol.md`
//! (steps) has the rules.
//!
//! # Testing your code
//!
//! [`Engine::install`] is once per process, so tests do not install: each test runs its
//! code inside [`Engine::scope`], which gives the calls in it (attribute and [`Call`]
//! alike) an engine of their own. A [`ManualClock`] moves time across leases and TTLs
//! by hand; [`MemoryStore::clear`] empties a store shared between cases.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use idem::{idempotent, EngineBuilder, Error, ManualClock, MemoryStore};
//!
//! #[idempotent(key = order_id, ttl = "1h")]
//! async fn send_receipt(order_id: u64) -> Result<u64, Error> {
//!     Ok(order_id)
//! }
//!
//! // #[tokio::test]
//! async fn receipts_are_sent_once_per_hour() {
//!     let clock = ManualClock::default();
//!     let store = Arc::new(MemoryStore::new());
//!     let engine = EngineBuilder::from_arc(store.clone()).clock(clock.clone()).build().unwrap();
//!     engine
//!         .scope(async {
//!             send_receipt(7).await.unwrap();
//!             send_receipt(7).await.unwrap(); // replayed
//!             clock.advance(Duration::from_secs(3601));
//!             send_receipt(7).await.unwrap(); // the record expired: runs again
//!         })
//!         .await;
//!     assert_eq!(store.len(), 1);
//! }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
//! #     .block_on(receipts_are_sent_once_per_hour());
//! ```
//!
//! To run bodies as if idem were not there (local development, a test of the body
//! alone), set `IDEM_DISABLED=1` or build the engine with
//! [`EngineBuilder::disabled`]: every call then runs its body unguarded, and one warning
//! says so when the engine is built.
//!
//! # Errors from `std::io` and `anyhow`
//! `anyhow::Result<T>` works as it is (`idem::Error` is `std::error::Error + Send +
//! Sync + 'static`), and idem ships `From<idem::Error> for std::io::Error`, which the
//! orphan rule keeps users from writing.
//! ```
//! # use idem::idempotent;
//! #[idempotent(key = path)]
//! async fn import(path: String) -> std::io::Result<usize> {
//!     Ok(path.len())
//! }
//! ```
#![warn(missing_docs)]

pub use idem_core::{
    key, step, store, Batch, BatchOutcome, Call, Clock, Context, Defaults, Engine, EngineBuilder,
    Error, ErrorPolicy, Isolation, LocalCache, ManualClock, MemoryStore, Namespace, NoErrorReplay,
    Recordable, ReplayErrors, Report, Sleep, Source, Step, SystemClock, DEFAULT_BATCH_CONCURRENCY,
    DEFAULT_CAPACITY, DISABLED_VARIABLE,
};

/// Runs an `async fn` at most once per key; duplicates get the recorded result. See the
/// [crate documentation](crate#the-idempotent-attribute) for every option.
pub use idem_macros::idempotent;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
