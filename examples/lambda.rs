//! The CloudFormation custom resource of `idem_examples::cfn` on AWS Lambda, with its
//! records in DynamoDB (table from `IDEM_TABLE`, default `idempotency`).
//!
//! Build and deploy it as any Rust Lambda (for example with cargo-lambda); locally,
//! `examples/tests/cfn.rs` drives the same handler with fixture events.

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use idem::Engine;
use idem_dynamo::DynamoStore;
use idem_examples::cfn::{Cloud, Handler, Request};
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let table = std::env::var("IDEM_TABLE").unwrap_or_else(|_| "idempotency".into());
    let store = DynamoStore::builder(aws_sdk_dynamodb::Client::new(&config), table)
        .build()
        .await?;
    Engine::new(store).install()?;
    let handler = Arc::new(Handler {
        cloud: Arc::new(Cloud::default()),
        http: reqwest::Client::new(),
        // Under the function's timeout, so an unanswered duplicate can still return.
        wait: Duration::from_secs(20),
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Request>| {
        let handler = handler.clone();
        async move {
            handler
                .handle(event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}
