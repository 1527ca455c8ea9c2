//! The store conformance suite against the in-memory store.

use idem_core::MemoryStore;

idem_core::store_conformance!(factory = || async { MemoryStore::new() }, atomic = true);
