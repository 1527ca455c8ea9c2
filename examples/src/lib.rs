//! Code the examples share, kept in a library so that `examples/tests` can test it.

pub mod cfn;

use aws_sdk_dynamodb::config::BehaviorVersion;
use idem_dynamo::{DynamoStore, SetupError};

/// A DynamoDB client: for a local server (`endpoint`), static credentials, a region and
/// the endpoint, since the default credential chain would probe the instance metadata
/// address and time out off AWS; without one, real AWS with the default credential
/// chain and region.
pub async fn dynamo_client(endpoint: Option<&str>) -> aws_sdk_dynamodb::Client {
    match endpoint {
        Some(endpoint) => idem_dynamo::local_client(endpoint),
        None => aws_sdk_dynamodb::Client::new(
            &aws_config::load_defaults(BehaviorVersion::latest()).await,
        ),
    }
}

/// The store on `table` at `endpoint` (or real AWS), the table created first when
/// `create` says so. The TTL check runs on real AWS only: local servers may report TTL
/// as disabled.
pub async fn dynamo_store(
    endpoint: Option<&str>,
    table: &str,
    create: bool,
) -> Result<DynamoStore, SetupError> {
    let builder =
        DynamoStore::builder(dynamo_client(endpoint).await, table).check_ttl(endpoint.is_none());
    if create {
        match builder.create_table().await {
            Ok(ttl) => println!("created table `{table}` (TTL: {ttl:?})"),
            Err(SetupError::TableExists { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    builder.build().await
}
