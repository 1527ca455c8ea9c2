//! The whole store conformance suite on dynalite, whose conditional writes are atomic:
//! the rules, the model, the engine race and a duplicate storm (smaller than in memory:
//! every store call is an HTTP request to a server on the same two cores).

mod common;

use common::{store, Server};
use idem_core::testkit::Sizes;
use std::sync::LazyLock;

static TABLE: LazyLock<String> = LazyLock::new(|| common::unique_table("conformance"));

idem_core::store_conformance!(
    factory = || async { store(Server::Dynalite, &TABLE, None).await },
    atomic = true,
    sizes = Sizes {
        storm_events: 800,
        storm_concurrency: 24,
        ..Sizes::default()
    },
    ignore = "needs the local DynamoDB servers that scripts/test starts",
);
