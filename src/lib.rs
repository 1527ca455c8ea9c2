//! idem: run side-effecting async functions exactly once per key.
#![warn(missing_docs)]
pub use idem_core::*;
