//! The engine of [idem](https://docs.rs/idem): run a side-effecting async function
//! exactly once per key, although the events that call it arrive at least once.
//!
//! Most users depend on the `idem` crate, which re-exports this one and adds the
//! `#[idempotent]` attribute. This crate holds every rule: the [`Engine`], the
//! function API ([`Call`]), the [`Store`] trait, the in-process [`MemoryStore`], the
//! errors, and (feature `testkit`) the store conformance suite.
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
//! For one key, within its retention window (the TTL):
//! 1. At most one caller holds the key's lease at any instant, enforced by the store's
//!    conditional writes (not by in-process locks), provided the callers' clocks differ
//!    by less than `lease - lease / 3 - one store request's latency`.
//! 2. Once a call completes and its outcome is recorded, every later call with the key
//!    gets that outcome without running the body, until the record expires.
//! 3. A body that fails (returns `Err`, or panics) releases the key, so a retry runs it
//!    again. Errors are recorded and replayed only where [`Call::replay_errors`] says so.
//! 4. A caller that crashes keeps the key only until its lease expires; the next caller
//!    then takes over with a higher fencing number. While a body runs, heartbeats renew
//!    its lease every `lease / 3`, up to `max_duration`. Heartbeats are polled in the same
//!    future as the body: a body that blocks its thread starves them.
//! 5. Only the attempt that holds the current fence can record a completion; a stale
//!    one gets [`Error::LeaseLost`] with its value.
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
#![warn(missing_docs)]

mod call;
mod clock;
mod context;
mod engine;
mod error;
mod key;
mod memory;
mod record;
mod store;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use call::{Call, ErrorPolicy, NoErrorReplay, ReplayErrors};
pub use clock::{Clock, ManualClock, Sleep, SystemClock};
pub use context::Context;
pub use engine::{Defaults, Engine, EngineBuilder};
pub use error::Error;
pub use key::{canonical_json, canonical_key, check_namespace, digest, record_id, KeyError};
pub use memory::{MemoryStore, DEFAULT_CAPACITY};
pub use record::{ceil_secs, Outcome, Record, State, CODEC_JSON, FORMAT};
pub use store::{
    Attempt, Begin, Completion, Lease, Limits, Store, StoreError, StoreErrorKind, Written,
};

/// Re-exported for stores and generated code.
pub use async_trait::async_trait;
