//! Kafka (Amazon MSK or self-managed): a [`KafkaEvent`]'s records as a [`Batch`], its
//! outcomes as a [`KafkaEventResponse`].
//!
//! The event holds the records by topic partition; the records of one partition are
//! items of one group, in offset order: they run one after another, and the partition
//! stops at its first record that is not processed. Lambda's partial batch response for
//! Kafka event sources (provisioned mode, `ReportBatchItemFailures`) names each failed
//! record as `<topic>-<partition>-<offset>`: the identifier Middy's
//! `event-batch-response` documents for Amazon MSK and self-managed Kafka; AWS's own
//! Kafka pages describe the setting but show no response, so check it against your
//! event source mapping before relying on it.

use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
use idem_core::{Batch, BatchOutcome, Namespace};
use serde::{Deserialize, Serialize};

/// The records of `event` in the order the batch takes them: by topic partition (its
/// name's order), each partition's records by offset.
pub fn records(event: &KafkaEvent) -> Vec<&KafkaRecord> {
    let mut partitions: Vec<_> = event.records.iter().collect();
    partitions.sort_by(|a, b| a.0.cmp(b.0));
    partitions
        .into_iter()
        .flat_map(|(_, records)| {
            let mut records: Vec<&KafkaRecord> = records.iter().collect();
            records.sort_by_key(|record| record.offset);
            records
        })
        .collect()
}

/// A record's name in the partial batch response: `<topic>-<partition>-<offset>`.
pub fn item_identifier(record: &KafkaRecord) -> Option<String> {
    let topic = record.topic.as_deref()?;
    Some(format!("{topic}-{}-{}", record.partition, record.offset))
}

/// A batch of one guarded call per record of `event` (in the order of [`records`]), in
/// `namespace`, each keyed on what `key` reads from its record (its topic, partition
/// and offset, the same on every delivery of that record, or a business key from its
/// value), grouped by topic partition. Run it, then hand its outcomes to [`response`].
pub fn batch<'e, K: Serialize>(
    namespace: impl Into<Namespace>,
    event: &'e KafkaEvent,
    key: impl Fn(&'e KafkaRecord) -> K,
) -> Batch<&'e KafkaRecord> {
    records(event)
        .into_iter()
        .fold(Batch::new(namespace), |batch, record| {
            let partition = format!(
                "{}-{}",
                record.topic.as_deref().unwrap_or_default(),
                record.partition
            );
            batch.item_in_group(&key(record), partition, record)
        })
}

/// The partial batch response of a Kafka event source: the records to deliver again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaEventResponse {
    /// One entry per record to deliver again.
    pub batch_item_failures: Vec<KafkaBatchItemFailure>,
}

/// A record to deliver again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBatchItemFailure {
    /// The record, as `<topic>-<partition>-<offset>` ([`item_identifier`]).
    pub item_identifier: String,
}

/// The response to `event` after its [`batch`] ended in `outcomes`: every record that is
/// not processed (see the [crate documentation](crate)).
pub fn response<T, E>(event: &KafkaEvent, outcomes: &[BatchOutcome<T, E>]) -> KafkaEventResponse {
    let identifiers: Vec<Option<String>> =
        records(event).into_iter().map(item_identifier).collect();
    KafkaEventResponse {
        batch_item_failures: crate::failed_identifiers(
            outcomes,
            identifiers.iter().map(Option::as_deref),
        )
        .into_iter()
        .map(|item_identifier| KafkaBatchItemFailure { item_identifier })
        .collect(),
    }
}
