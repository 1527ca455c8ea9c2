//! Kinesis Data Streams: a [`KinesisEvent`]'s records as a [`Batch`], its outcomes as a
//! [`KinesisEventResponse`].
//!
//! Kinesis keeps the records of one partition key in order within a shard, and Lambda
//! hands a function the records of one shard. The records of one partition key are
//! items of one group: they run one after another, and the key's records stop at its
//! first that is not processed. Lambda restarts the shard from the lowest sequence
//! number reported, so every record after it is delivered again, and those processed
//! replay.

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use idem_core::{Batch, BatchOutcome, Namespace};
use serde::Serialize;

/// A batch of one guarded call per record of `event`, in `namespace`, each keyed on
/// what `key` reads from its record (its `event_id` or its sequence number, the same on
/// every delivery of that record, or a business key from its data), grouped by
/// partition key. Run it, then hand its outcomes to [`response`].
pub fn batch<'e, K: Serialize>(
    namespace: impl Into<Namespace>,
    event: &'e KinesisEvent,
    key: impl Fn(&'e KinesisEventRecord) -> K,
) -> Batch<&'e KinesisEventRecord> {
    event
        .records
        .iter()
        .fold(Batch::new(namespace), |batch, record| {
            batch.item_in_group(&key(record), record.kinesis.partition_key.as_str(), record)
        })
}

/// The response to `event` after its [`batch`] ended in `outcomes`: every record that is
/// not processed, by its sequence number (see the [crate documentation](crate)).
pub fn response<T, E>(
    event: &KinesisEvent,
    outcomes: &[BatchOutcome<T, E>],
) -> KinesisEventResponse {
    let mut response = KinesisEventResponse::default();
    response.batch_item_failures = crate::failed_identifiers(
        outcomes,
        event
            .records
            .iter()
            .map(|r| Some(r.kinesis.sequence_number.as_str()).filter(|s| !s.is_empty())),
    )
    .into_iter()
    .map(|item_identifier| {
        let mut failure = KinesisBatchItemFailure::default();
        failure.item_identifier = Some(item_identifier);
        failure
    })
    .collect();
    response
}
