//! The custom-resource handler on the DynamoDB store over dynalite (which
//! scripts/test starts): its own binary, since the handler runs on the process-wide
//! engine.

mod common;

use idem::Engine;
use idem_dynamo::{DynamoStore, SetupError};

#[tokio::test]
#[ignore = "needs the local DynamoDB servers that scripts/test starts"]
async fn duplicates_on_the_dynamodb_store() {
    let endpoint = std::env::var("IDEM_TEST_DYNALITE")
        .expect("IDEM_TEST_DYNALITE is not set: run through scripts/test, which starts dynalite");
    let client = idem_dynamo::local_client(&endpoint);
    let table = format!("idem-cfn-{}", std::process::id());
    // dynalite has no TTL API, so the TTL check is off.
    let builder = DynamoStore::builder(client, &table).check_ttl(false);
    match builder.create_table().await {
        Ok(_) | Err(SetupError::TableExists { .. }) => {}
        Err(error) => panic!("cannot create the table: {error}"),
    }
    Engine::new(builder.build().await.unwrap())
        .install()
        .unwrap();
    common::lifecycle_with_duplicates("dynamo").await;
}
