//! An SQS consumer on AWS Lambda with `idem-lambda`: each order message ships once,
//! whatever SQS redelivers, with its record in DynamoDB (table from `IDEM_TABLE`,
//! default `idempotency`). The response names the messages to deliver again; enable
//! `ReportBatchItemFailures` on the event source mapping. On a FIFO queue the messages
//! of one group ship in order, and a group stops at its first failure.
//!
//! Build and deploy it as any Rust Lambda (for example with cargo-lambda);
//! `idem-lambda/tests/events.rs` drives the same helpers with fixture events.

use aws_config::BehaviorVersion;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use idem::Engine;
use idem_dynamo::DynamoStore;
use lambda_runtime::{service_fn, Error, LambdaEvent};

/// The order a message carries.
#[derive(serde::Deserialize)]
struct Order {
    id: String,
    cents: u64,
}

/// The side effect: here a log line; in production the call to the warehouse, passing
/// the context's token as its idempotency key.
async fn ship(ctx: idem::Context, message: &SqsMessage) -> Result<String, idem::Error> {
    let order: Order = serde_json::from_str(message.body.as_deref().unwrap_or_default())
        .map_err(|e| idem::Error::Config(format!("not an order: {e}")))?;
    println!(
        "shipping {} ({} cents), token {}",
        order.id,
        order.cents,
        ctx.token()
    );
    Ok(order.id)
}

async fn handler(event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    let event = event.payload;
    // Keyed on the order in the body: a producer that sends the same order twice ships
    // it once, as does SQS redelivering one message.
    let outcomes = idem_lambda::sqs::batch("orders::ship", &event, |message| {
        serde_json::from_str::<Order>(message.body.as_deref().unwrap_or_default())
            .map(|order| order.id)
            .ok()
    })
    .run(ship)
    .await;
    Ok(idem_lambda::sqs::response(&event, &outcomes))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let table = std::env::var("IDEM_TABLE").unwrap_or_else(|_| "idempotency".into());
    let store = DynamoStore::builder(aws_sdk_dynamodb::Client::new(&config), table)
        .build()
        .await?;
    Engine::new(store).install()?;
    lambda_runtime::run(service_fn(handler)).await
}
