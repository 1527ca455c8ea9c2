//! A client for a local SQS-compatible server (moto), shared by `sqs-worker` and its
//! test: static credentials, a region and the endpoint (the SDK's default credential
//! chain would probe the instance metadata address off AWS).

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};

/// A client for the server at `endpoint`.
pub fn local(endpoint: &str) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "static"))
            .endpoint_url(endpoint)
            .build(),
    )
}
