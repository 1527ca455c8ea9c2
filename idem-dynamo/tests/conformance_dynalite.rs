//! The store conformance suite on dynalite, whose conditional writes are atomic: the
//! racing cases run here.

mod common;

use common::{store, Server};
use std::sync::LazyLock;

static TABLE: LazyLock<String> = LazyLock::new(|| common::unique_table("conformance"));

idem_core::store_conformance!(
    factory = || async { store(Server::Dynalite, &TABLE, None).await },
    atomic = true,
    ignore = "needs the local DynamoDB servers that scripts/test starts",
);
