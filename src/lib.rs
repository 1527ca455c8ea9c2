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
//! use idem::{Call, Engine, Error, MemoryStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Error> {
//! // Once at start-up. The in-memory store is process-local: use a shared store
//! // (DynamoDB) wherever duplicates can reach more than one process.
//! Engine::new(MemoryStore::new()).install()?;
//!
//! async fn create_group(request_id: &str) -> Result<String, Error> {
//!     Call::new("groups::create", request_id)
//!         .run(|ctx| async move {
//!             // Pass ctx.token() downstream as the cloud API's idempotency key.
//!             Ok(format!("group-{}", &ctx.token()[..12]))
//!         })
//!         .await
//! }
//!
//! let first = create_group("req-1").await?;
//! assert_eq!(create_group("req-1").await?, first); // replayed, not created again
//! # Ok(()) }
//! ```
//!
//! The guarantee, its limits (clock skew, a crash between the side effect and the
//! record, fencing across deletions, pseudonymous keys) and every setting are described
//! in [`idem_core`], which this crate re-exports.
#![warn(missing_docs)]

pub use idem_core::*;

pub use idem_macros::idempotent;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;
