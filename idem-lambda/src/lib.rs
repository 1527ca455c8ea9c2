//! Queue and stream consumers on AWS Lambda, each message's effect exactly once: an
//! event of `aws_lambda_events` in, its partial batch response out.
//!
//! Lambda hands a function its messages in batches (SQS up to 10, or 10,000 with a
//! batching window; Kinesis and Kafka hundreds), and delivers each at least once: a
//! message comes back when its batch fails, when the function times out, or when its
//! visibility timeout passes while it is still being processed. Each module here turns
//! an event into an idem [`Batch`] (one guarded call per message, every key taken in
//! one store round trip where the store allows it) and the batch's outcomes into the
//! response that tells Lambda which messages to deliver again:
//!
//! | Event | Key the closure reads | Ordered group | Response |
//! |---|---|---|---|
//! | [`sqs`] | the message | FIFO `MessageGroupId` | [`SqsBatchResponse`](aws_lambda_events::event::sqs::SqsBatchResponse) |
//! | [`kinesis`] | the record | partition key | [`KinesisEventResponse`](aws_lambda_events::event::streams::KinesisEventResponse) |
//! | [`kafka`] | the record | topic partition | [`kafka::KafkaEventResponse`] |
//!
//! ```no_run
//! use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
//! use lambda_runtime::{service_fn, Error, LambdaEvent};
//!
//! /// The body's own error; idem's errors (a store failure, a lost lease) convert into it.
//! #[derive(Debug)]
//! enum ShipError {
//!     Carrier(String),
//!     Idem(idem::Error),
//! }
//!
//! impl From<idem::Error> for ShipError {
//!     fn from(error: idem::Error) -> Self {
//!         ShipError::Idem(error)
//!     }
//! }
//!
//! async fn ship(message: &SqsMessage) -> Result<(), ShipError> {
//!     match message.body.as_deref() {
//!         Some(_order) => Ok(()), // call the carrier
//!         None => Err(ShipError::Carrier("an empty message".into())), // delivered again
//!     }
//! }
//!
//! async fn handler(event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
//!     let event = event.payload;
//!     let outcomes = idem_lambda::sqs::batch("orders::ship", &event, |m| m.message_id.clone())
//!         .run(|_ctx, message| ship(message))
//!         .await;
//!     Ok(idem_lambda::sqs::response(&event, &outcomes))
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Error> {
//!     idem::Engine::new(idem::MemoryStore::new()).install()?; // a shared store in production
//!     lambda_runtime::run(service_fn(handler)).await
//! }
//! ```
//!
//! **Enable `ReportBatchItemFailures`** on the event source mapping
//! (`FunctionResponseTypes`): without it Lambda ignores the response, and a batch with
//! one failed message counts as processed (SQS deletes every message, a stream moves
//! past them).
//!
//! What comes back: every message that is not processed ([`BatchOutcome::is_processed`]:
//! its body failed, its key is in progress elsewhere, the store failed, its group
//! stopped before it, its key cannot be encoded) is reported failed, and Lambda
//! delivers it again; a processed one (ran and recorded, or replayed) is not. A message
//! whose key repeats an earlier message of the same batch is reported as that message
//! is; an identifier is reported once, however often it appears in the event. A
//! message whose key cannot be encoded is reported failed every time: give the queue a
//! dead-letter queue (`maxReceiveCount`), or it comes back until its retention ends. A
//! message that must be reported but has no identifier (no `messageId`, no
//! sequence number) is reported with an empty one, which Lambda takes as the whole
//! batch failed: every message is delivered again, and those processed replay.
//!
//! A redelivered message never runs its body twice: the first delivery's record
//! replays it, or, while the first is still running, it is in progress elsewhere and
//! reported failed again until the first completes (set the queue's visibility timeout
//! above the function's timeout, as AWS advises, so that this is rare).

#![warn(missing_docs)]

pub mod kafka;
pub mod kinesis;
pub mod sqs;

#[cfg(doc)]
use idem_core::Batch;
use idem_core::BatchOutcome;

/// The identifiers of the items to deliver again: each item's `identifier` (in order,
/// one per outcome) when its outcome is not processed, or a repeat's first item is not;
/// an empty identifier for such an item without one (which fails the whole batch). An
/// outcome missing for an item (fewer outcomes than items) counts as not processed.
fn failed_identifiers<'a, T, E>(
    outcomes: &[BatchOutcome<T, E>],
    identifiers: impl IntoIterator<Item = Option<&'a str>>,
) -> Vec<String> {
    let processed = |index: usize| match outcomes.get(index) {
        Some(BatchOutcome::Repeated { first }) => {
            outcomes.get(*first).is_some_and(BatchOutcome::is_processed)
        }
        Some(outcome) => outcome.is_processed(),
        None => false,
    };
    let mut failed: Vec<String> = Vec::new();
    for (index, identifier) in identifiers.into_iter().enumerate() {
        let identifier = identifier.unwrap_or_default();
        // Once each: the same message delivered twice in one event is one failure.
        if !processed(index) && !failed.iter().any(|known| known == identifier) {
            failed.push(identifier.to_owned());
        }
    }
    failed
}
