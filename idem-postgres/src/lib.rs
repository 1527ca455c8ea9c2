//! The PostgreSQL store of [idem](https://docs.rs/idem): one row per record, one
//! statement per transition, and a completion that can commit in the body's own
//! transaction.
#![warn(missing_docs)]

mod error;
mod sql;
mod store;
mod transaction;

pub use store::{NameError, PgStore, PgStoreBuilder, DEFAULT_MAX_DATA_BYTES, DEFAULT_TABLE};
pub use transaction::PgTransaction;
