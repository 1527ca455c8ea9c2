//! SQS: an [`SqsEvent`]'s messages as a [`Batch`], its outcomes as an
//! [`SqsBatchResponse`] listing the messages to deliver again.
//!
//! On a FIFO queue each message carries its `MessageGroupId`, and the messages of one
//! group are items of one group of the batch: they run one after another in the
//! order SQS delivered them, and the group stops at its first message that is not
//! processed; the rest of that group is reported failed without running, so SQS
//! delivers the group again from there, in order. Other groups go on.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use idem_core::{Batch, BatchOutcome, Namespace};
use serde::Serialize;

/// The attribute of a FIFO queue's message that names its group.
const MESSAGE_GROUP_ID: &str = "MessageGroupId";

/// A batch of one guarded call per message of `event`, in `namespace`, each keyed on
/// what `key` reads from its message (its `message_id`, the same on every delivery of
/// that message, or a business key from its body, the same when a producer sends the
/// same order twice). A FIFO queue's messages are grouped by their `MessageGroupId`.
///
/// Configure the batch further (its engine, TTL, lease, concurrency, error replay),
/// then [`run`](Batch::run) it and hand its outcomes to [`response`].
pub fn batch<'e, K: Serialize>(
    namespace: impl Into<Namespace>,
    event: &'e SqsEvent,
    key: impl Fn(&'e SqsMessage) -> K,
) -> Batch<&'e SqsMessage> {
    event
        .records
        .iter()
        .fold(Batch::new(namespace), |batch, message| {
            match message.attributes.get(MESSAGE_GROUP_ID) {
                Some(group) => batch.item_in_group(&key(message), group.as_str(), message),
                None => batch.item(&key(message), message),
            }
        })
}

/// The response to `event` after its [`batch`] ended in `outcomes`: every message that
/// is not processed, by its `messageId` (see the [crate documentation](crate) for what
/// counts).
pub fn response<T, E>(event: &SqsEvent, outcomes: &[BatchOutcome<T, E>]) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = crate::failed_identifiers(
        outcomes,
        event.records.iter().map(|m| m.message_id.as_deref()),
    )
    .into_iter()
    .map(|item_identifier| {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = item_identifier;
        failure
    })
    .collect();
    response
}
