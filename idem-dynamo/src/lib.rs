//! The DynamoDB store of idem.
#![warn(missing_docs)]

mod item;
mod names;
mod store;

pub use names::{AttributeNames, KeyLayout};
pub use store::{DynamoStore, DynamoStoreBuilder, SetupError, TtlSetup};

#[cfg(feature = "testkit")]
pub mod testkit;
