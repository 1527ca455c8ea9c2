//! The store conformance suite on moto, in both key layouts. moto's conditional writes
//! are not atomic under concurrency (a property of that server, not of the store), so
//! its racing cases are left to dynalite.

mod common;

use std::sync::LazyLock;

use common::{client, ensure_table, Server};
use idem_dynamo::DynamoStore;

static TABLE: LazyLock<String> = LazyLock::new(|| common::unique_table("conformance"));
static SORTED: LazyLock<String> = LazyLock::new(|| common::unique_table("conformance-sk"));

mod partition_key {
    use super::*;

    idem_core::store_conformance!(
        factory = || async { common::store(Server::Moto, &TABLE, None).await },
        atomic = false,
        ignore = "needs the local DynamoDB servers that scripts/test starts",
    );
}

mod sort_key_with_prefix {
    use super::*;

    async fn store() -> DynamoStore {
        let builder = DynamoStore::builder(client(Server::Moto, None), SORTED.as_str())
            .sort_key("sort_key", "idempotency#conformance")
            .prefix("svc/");
        ensure_table(&builder).await;
        builder.build().await.expect("TTL is enabled on moto")
    }

    idem_core::store_conformance!(
        factory = || async { store().await },
        atomic = false,
        ignore = "needs the local DynamoDB servers that scripts/test starts",
    );
}
