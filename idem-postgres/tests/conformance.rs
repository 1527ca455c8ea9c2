//! The whole store conformance suite on the machine's PostgreSQL: every rule, the
//! model, the engine race and a duplicate storm. Each test works in a schema of its own,
//! dropped at the end.

mod common;

idem_core::store_conformance!(
    factory = || async { common::store("conformance").await },
    atomic = true,
    ignore = "needs the PostgreSQL server that scripts/test checks",
);
