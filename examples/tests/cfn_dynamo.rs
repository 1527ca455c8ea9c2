//! The custom-resource handler on the DynamoDB store over dynalite (which
//! scripts/test starts): its own binary, since the handler runs on the process-wide
//! engine.

mod common;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use idem::Engine;
use idem_dynamo::{DynamoStore, SetupError};

#[tokio::test]
#[ignore = "needs the local DynamoDB servers that scripts/test starts"]
async fn duplicates_on_the_dynamodb_store() {
    let endpoint = std::env::var("IDEM_TEST_DYNALITE")
        .expect("IDEM_TEST_DYNALITE is not set: run through scripts/test, which starts dynalite");
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .endpoint_url(endpoint)
            .build(),
    );
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
