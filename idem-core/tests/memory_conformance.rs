//! The store conformance suite against the in-memory store: every rule of the store
//! contract, the property test against the reference model, the 64-task engine race
//! and a duplicate storm of 3,000 events.

use idem_core::testkit::Sizes;
use idem_core::MemoryStore;

idem_core::store_conformance!(
    factory = || async { MemoryStore::new() },
    atomic = true,
    sizes = Sizes {
        storm_events: 3000,
        ..Sizes::default()
    },
);
