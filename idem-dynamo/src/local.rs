//! Clients for local DynamoDB-compatible servers.

use aws_sdk_dynamodb::config::{BehaviorVersion, Builder, Credentials, Region};
use aws_sdk_dynamodb::Client;

/// The configuration of a client for a local DynamoDB-compatible server (DynamoDB
/// Local, moto, dynalite) at `endpoint`: static credentials, a region and the endpoint.
///
/// The SDK's default credential chain would probe the instance metadata address and
/// time out off AWS; a local server accepts any credentials. Add settings (a retry
/// policy, an interceptor) before `build()`; in production, load the configuration with
/// `aws_config` instead.
///
/// ```
/// let config = idem_dynamo::local_config("http://127.0.0.1:8000").build();
/// let client = aws_sdk_dynamodb::Client::from_conf(config);
/// # let _ = client;
/// ```
pub fn local_config(endpoint: &str) -> Builder {
    aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "static"))
        .endpoint_url(endpoint)
}

/// A client for a local DynamoDB-compatible server at `endpoint`: see
/// [`local_config`].
pub fn local_client(endpoint: &str) -> Client {
    Client::from_conf(local_config(endpoint).build())
}
