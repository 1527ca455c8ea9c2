//! The engine of [idem](https://docs.rs/idem): run a side-effecting async function
//! exactly once per key, although the events that call it arrive at least once.
//!
//! Most users depend on the `idem` crate, which re-exports this one and adds the
//! `#[idempotent]` attribute. This crate holds every rule: the [`Engine`], the
//! function API ([`Call`]), the in-process [`MemoryStore`] and the errors. The protocol
//! they implement (the record, its transitions, every outcome, the frozen formats, the
//! store contract) is written down once, in `docs/protocol.md` at the root of idem's
//! repository.
//!
//! # Two audiences
//! - **Application code** uses the crate root: [`Engine`], [`Call`], [`Context`],
//!   [`Error`], [`MemoryStore`], the clocks.
//! - **Store authors** use [`store`] (the [`Store`] trait, its requests and answers,
//!   the [`Record`](store::Record) and its predicates, the error kinds), [`key`] (the
//!   frozen key and token formats) and, with the feature `testkit`, the conformance kit
//!   `testkit`, whose `store_conformance!` is a store's definition of done. That
//!   surface follows the engine and may change in a minor release: a store crate
//!   depends on this one at an exact version (`idem-core = "=0.1.0"`), as sqlx's
//!   drivers pin `sqlx-core`.
//!
//! # The problem
//! Lambda, SQS, EventBridge, Kafka consumers, webhook senders and retrying HTTP clients
//! all deliver some events twice. A handler that creates a resource, charges a card or
//! sends a mail then does it twice.
//!
//! # The fix
//! ```
//! use idem_core::{Call, Engine, Error, MemoryStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Error> {
//! Engine::new(MemoryStore::new()).install()?;
//!
//! async fn charge(request_id: &str, cents: u64) -> Result<String, Error> {
//!     Call::new("billing::charge", request_id)
//!         .run(|ctx| async move {
//!             // ctx.token() is the idempotency key to hand the payment provider.
//!             Ok(format!("charged {cents} with key {}", &ctx.token()[..8]))
//!         })
//!         .await
//! }
//!
//! let first = charge("req-1", 500).await?;
//! let duplicate = charge("req-1", 500).await?; // replayed: the body did not run
//! assert_eq!(first, duplicate);
//! # Ok(()) }
//! ```
//!
//! # The guarantee, and its limits
//! For one key, within its retention window (the TTL), the body runs to completion at
//! most once and every later call gets the recorded outcome; a body that fails releases
//! the key; a crashed caller's key is taken over when its lease lapses; only the
//! attempt holding the current fence can record. The precise statement, with its clock
//! margin (`lease - lease / 3 - one store request's latency`), is section 1 of
//! `docs/protocol.md`. Heartbeats are polled in the same future as the body: a body
//! that blocks its thread starves them.
//!
//! **What no entry check can cover**: a crash after the side effect but before the
//! completion is recorded. The next attempt runs the body again. Pass
//! [`Context::token`] downstream as the idempotency key of the API the body calls
//! (a payment provider's `Idempotency-Key`, a cloud API's client token): dedup at the
//! entry plus a key passed downstream is what makes the side effect exactly-once end to
//! end.
//!
//! **Fencing across deletions**: fencing numbers grow while a record exists, and a
//! record outlives its last lease by at least the TTL. A body that hangs longer than that
//! after losing its lease, or an operator's [`Store::delete`], can see a fence number
//! reused.
//!
//! **Keys are pseudonymous**: records hold a SHA-256 digest of the key, not the key; a
//! guessable key can be recomputed from it. Where keys carry personal data, set
//! [`EngineBuilder::secret`] (HMAC-SHA-256).
//!
//! **The in-memory store is process-local**: it deduplicates within one process only.
//! Use a shared store (DynamoDB, `idem-dynamo`) wherever duplicates can reach more than
//! one process.
//!
//! # Events and metrics
//! Every event has the target `idem` and the fields `namespace` and `digest` (never the
//! key); a call's outcome is the field `outcome`, one of `ran`, `ran_not_recorded`,
//! `replayed`, `in_progress`, `payload_mismatch`, `released`, `lease_lost`,
//! `store_error`, `unguarded`. The body runs inside an INFO span `idem` with
//! `namespace`, `digest` and `fence`, so the body's own events carry them.
//!
//! | level | event |
//! |---|---|
//! | DEBUG | one per call with its `outcome` (a release with the body's `error`, as [`Call::describe_errors`] writes it; the attribute uses `Display`, else `Debug`); `waiting for the attempt in progress` (a duplicate with `wait`); `took the key over from an earlier attempt` (`fence` > 1); `released` |
//! | WARN | a heartbeat late, refused or failed; the body past `max_duration`; a completion refused (lease lost); a release refused or failed; an error or value too large to record; a missing key under `optional_key`; idem disabled (once, when the engine is built) |
//! | ERROR | executed but not recorded (the store failed at completion, resends included); a value that cannot be encoded |
//!
//! With the feature `metrics`, through the [`metrics`](https://docs.rs/metrics) crate
//! (install any exporter), labelled by `namespace`:
//!
//! | metric | kind | other labels |
//! |---|---|---|
//! | `idem_calls_total` | counter | `outcome` (as above) |
//! | `idem_store_errors_total` | counter | `operation` (`begin`, `complete`, `extend`, `release`, and a [`Batch`]'s `begin_batch`, `complete_batch`), `class` (`transient`, `permanent`, `malformed`, `timeout`) |
//! | `idem_store_latency_seconds` | histogram | `operation` |
//! | `idem_wait_seconds` | histogram | (how long a duplicate with `wait` waited) |
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cache;
mod call;
mod clock;
mod codec;
mod context;
mod engine;
mod error;
pub mod key;
mod memory;
mod observe;
pub mod protocol;
mod step;
pub mod store;

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;

pub use cache::LocalCache;
pub use call::{
    Batch, BatchOutcome, Call, Described, ErrorPolicy, Namespace, NoErrorReplay, Recordable,
    ReplayErrors, Report, Source, DEFAULT_BATCH_CONCURRENCY,
};
pub use clock::{Clock, ManualClock, Sleep, SystemClock};
pub use codec::replayed_bytes;
pub use codec::Encoded;
pub use context::Context;
pub use engine::{Defaults, Engine, EngineBuilder, DISABLED_VARIABLE};
pub use error::Error;
pub use key::RecordId;
pub use memory::{MemoryStore, DEFAULT_CAPACITY};
pub use step::{step, Step};
pub use store::{Isolation, Store};
