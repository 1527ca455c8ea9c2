//! The DynamoDB store.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use idem_core::store::{
    Attempt, Begin, Completion, Limits, Record, Renewal, State, StoreError, Written, CODEC_JSON,
    FORMAT,
};
use idem_core::Store;

use crate::item::{decode, n, s, Expression};
use crate::names::{AttributeNames, KeyLayout};

/// DynamoDB's largest item, in bytes, read conservatively: AWS documents "400 KB"
/// (names and values together), and moto refuses items over 405,000 bytes.
const MAX_ITEM_BYTES: usize = 400_000;
/// Room kept in an item for everything but `data`: attribute names, the id, the
/// fingerprint, numbers.
const ITEM_OVERHEAD_BYTES: usize = 4 * 1024;

/// Error codes DynamoDB answers when a later try may succeed: throttling, server faults
/// and write conflicts (AWS's list of retryable DynamoDB errors). Any answer with a 5xx
/// status is transient too, whatever its code, or without one.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "TransactionConflictException",
    "TransactionInProgressException",
    "ReplicatedWriteConflictException",
    "LimitExceededException",
];

/// idem's records in a DynamoDB table: see the [crate documentation](crate).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    pub(crate) client: Client,
    pub(crate) table: String,
    pub(crate) names: AttributeNames,
    pub(crate) layout: KeyLayout,
    pub(crate) prefix: String,
}

impl DynamoStore {
    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The item key of a record id.
    fn key(&self, id: &str) -> HashMap<String, AttributeValue> {
        let mut stored = String::with_capacity(self.prefix.len() + id.len());
        stored.push_str(&self.prefix);
        stored.push_str(id);
        match &self.layout {
            KeyLayout::PartitionKey => HashMap::from([(self.names.id.clone(), s(stored))]),
            KeyLayout::SortKey {
                attribute,
                partition_value,
            } => HashMap::from([
                (self.names.id.clone(), s(partition_value.clone())),
                (attribute.clone(), s(stored)),
            ]),
        }
    }

    fn decode(
        &self,
        id: &str,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<Record, StoreError> {
        decode(&self.names, id, item)
    }

    /// The condition of complete, extend and release: the attempt holds the record.
    fn held_by(&self, expression: &mut Expression, attempt: &Attempt) -> String {
        let status = expression.name("#status", &self.names.status);
        let in_progress = expression.value(":inprogress", s(State::InProgress.as_str()));
        let owner = expression.name("#owner", &self.names.owner);
        let owner_value = expression.value(":owner", s(attempt.owner.as_str()));
        let fence = expression.name("#fence", &self.names.fence);
        let fence_value = expression.value(":fence", n(attempt.fence));
        format!("{status} = {in_progress} AND {owner} = {owner_value} AND {fence} = {fence_value}")
    }

    /// Sends one conditional UpdateItem; a failed condition returns the current record
    /// (the old item in the response, or one consistent read when the server sent none).
    async fn update(
        &self,
        operation: &'static str,
        id: &str,
        update: String,
        condition: String,
        expression: Expression,
        return_new: bool,
    ) -> Result<Written<UpdateItemOutput>, StoreError> {
        let (names, values) = expression.into_parts();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(id)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values)
            .set_return_values(return_new.then_some(ReturnValue::UpdatedNew))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Written::Applied(output)),
            Err(SdkError::ServiceError(error))
                if matches!(
                    error.err(),
                    UpdateItemError::ConditionalCheckFailedException(_)
                ) =>
            {
                let old = match error.err() {
                    UpdateItemError::ConditionalCheckFailedException(failed) => failed.item(),
                    _ => None,
                };
                match old {
                    Some(item) if !item.is_empty() => {
                        Ok(Written::Refused(Some(self.decode(id, item)?)))
                    }
                    // No old item: the record is absent, or the server ignores the flag.
                    _ => Ok(Written::Refused(self.read(id).await?)),
                }
            }
            Err(error) => Err(store_error(operation, error)),
        }
    }

    /// The attempt's own fields as `SET` assignments: status, owner, lease, expiry and
    /// the fingerprint when the call has one.
    fn attempt_fields(&self, e: &mut Expression, request: &Begin) -> String {
        let names = &self.names;
        let status = e.name("#status", &names.status);
        let in_progress = e.value(":inprogress", s(State::InProgress.as_str()));
        let owner = e.name("#owner", &names.owner);
        let owner_value = e.value(":owner", s(request.owner.as_str()));
        let lease = e.name("#lease", &names.in_progress_expiration);
        let lease_value = e.value(":lease", n(request.lease_until_ms));
        let expiration = e.name("#expiration", &names.expiration);
        let expiration_value = e.value(":expiration", n(request.expires_at_s));
        let mut fields = format!(
            "{status} = {in_progress}, {owner} = {owner_value}, {lease} = {lease_value}, \
             {expiration} = {expiration_value}"
        );
        if let Some(fingerprint) = &request.fingerprint {
            let validation = e.name("#validation", &names.validation);
            let value = e.value(":validation", s(fingerprint.as_str()));
            fields.push_str(&format!(", {validation} = {value}"));
        }
        fields
    }

    /// Begin on a key with no item: the attempt's fields, fence 1.
    async fn begin_new(&self, request: &Begin) -> Result<Written<()>, StoreError> {
        let mut e = Expression::default();
        let fields = self.attempt_fields(&mut e, request);
        let fence = e.name("#fence", &self.names.fence);
        let one = e.value(":one", n(1));
        let update = format!("SET {fields}, {fence} = {one}");
        let id = e.name("#id", &self.names.id);
        let condition = format!("attribute_not_exists({id})");
        Ok(self
            .update(
                "UpdateItem (begin)",
                &request.id,
                update,
                condition,
                e,
                false,
            )
            .await?
            .map(|_| ()))
    }

    /// Begin on a key whose item may exist and be free: the next fence, read back, and
    /// the old attempt's outcome, data, format, codec and fingerprint cleared.
    async fn take_over(&self, request: &Begin) -> Result<Written<u64>, StoreError> {
        let mut e = Expression::default();
        let names = &self.names;
        let fields = self.attempt_fields(&mut e, request);
        let fence = e.name("#fence", &names.fence);
        let zero = e.value(":zero", n(0));
        let one = e.value(":one", n(1));
        let set = format!("SET {fields}, {fence} = if_not_exists({fence}, {zero}) + {one}");
        let mut remove = [
            e.name("#data", &names.data),
            e.name("#outcome", &names.outcome),
            e.name("#format", &names.format),
            e.name("#codec", &names.codec),
        ]
        .join(", ");
        if request.fingerprint.is_none() {
            remove.push_str(&format!(", {}", e.name("#validation", &names.validation)));
        }
        // The free predicate, over attributes the fields named already.
        let status = e.name("#status", &names.status);
        let in_progress = e.value(":inprogress", s(State::InProgress.as_str()));
        let lease = e.name("#lease", &names.in_progress_expiration);
        let expiration = e.name("#expiration", &names.expiration);
        let completed = e.value(":completed", s(State::Completed.as_str()));
        let update = format!("{set} REMOVE {remove}");
        let id = e.name("#id", &names.id);
        let now_s = e.value(":now_s", n(request.now_ms / 1000));
        let now_ms = e.value(":now_ms", n(request.now_ms));
        let condition = format!(
            "attribute_not_exists({id}) OR ({status} = {completed} AND {expiration} <= {now_s}) \
             OR ({status} = {in_progress} AND {lease} <= {now_ms})"
        );
        match self
            .update(
                "UpdateItem (begin)",
                &request.id,
                update,
                condition,
                e,
                true,
            )
            .await?
        {
            Written::Applied(output) => {
                let fence = output
                    .attributes()
                    .and_then(|new| new.get(&names.fence))
                    .and_then(|value| value.as_n().ok())
                    .and_then(|value| value.parse().ok())
                    .ok_or_else(|| {
                        StoreError::permanent(format!(
                            "DynamoDB's answer to begin on `{}` holds no fence",
                            request.id
                        ))
                    })?;
                Ok(Written::Applied(fence))
            }
            Written::Refused(current) => Ok(Written::Refused(current)),
        }
    }

    async fn held_update(
        &self,
        operation: &'static str,
        attempt: &Attempt,
        mut expression: Expression,
        update: String,
        also: Option<String>,
    ) -> Result<Written<()>, StoreError> {
        let mut condition = self.held_by(&mut expression, attempt);
        if let Some(also) = also {
            condition = format!("{condition} AND {also}");
        }
        Ok(self
            .update(operation, &attempt.id, update, condition, expression, false)
            .await?
            .map(|_| ()))
    }
}

/// Classes an SDK error: throttling, server faults (any 5xx, with or without an error
/// code), write conflicts and transport failures are transient (the SDK's retry policy
/// has already retried them); the rest (validation, permissions, a missing table) are
/// permanent.
fn store_error<E>(operation: &'static str, error: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = format!(
        "DynamoDB {operation} failed: {}",
        DisplayErrorContext(&error)
    );
    let transient = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            service.raw().status().is_server_error()
                || error
                    .code()
                    .is_some_and(|code| TRANSIENT_CODES.contains(&code))
        }
        _ => false,
    };
    let classified = if transient {
        StoreError::transient(message)
    } else {
        StoreError::permanent(message)
    };
    classified.with_source(error)
}

#[async_trait]
impl Store for DynamoStore {
    fn limits(&self) -> Limits {
        let key_bytes = match self.layout {
            KeyLayout::PartitionKey => 2048,
            KeyLayout::SortKey { .. } => 1024,
        };
        Limits {
            max_id_bytes: key_bytes - self.prefix.len().min(key_bytes),
            max_data_bytes: MAX_ITEM_BYTES - ITEM_OVERHEAD_BYTES,
        }
    }

    async fn begin(&self, request: &Begin) -> Result<Written<u64>, StoreError> {
        // The common case first: a new key, with the lean request (no attribute to
        // clear, fence 1, no answer to read). A refusal brings the current record: a
        // live one is the answer; a free one (lapsed, released, expired) is taken over
        // with the full request, which clears what the old attempt left.
        match self.begin_new(request).await? {
            Written::Applied(()) => Ok(Written::Applied(1)),
            Written::Refused(Some(record)) if record.is_live(request.now_ms) => {
                Ok(Written::Refused(Some(record)))
            }
            Written::Refused(_) => self.take_over(request).await,
        }
    }

    async fn complete(
        &self,
        attempt: &Attempt,
        completion: &Completion,
    ) -> Result<Written<()>, StoreError> {
        let mut e = Expression::default();
        let names = &self.names;
        let status = e.name("#status", &names.status);
        let completed = e.value(":completed", s(State::Completed.as_str()));
        let outcome = e.name("#outcome", &names.outcome);
        let outcome_value = e.value(":outcome", s(completion.outcome.as_str()));
        let expiration = e.name("#expiration", &names.expiration);
        let expiration_value = e.value(":expiration", n(completion.expires_at_s));
        let data = e.name("#data", &names.data);
        let format = e.name("#format", &names.format);
        let format_value = e.value(":format", n(FORMAT.into()));
        let codec = e.name("#codec", &names.codec);
        let codec_value = e.value(":codec", s(CODEC_JSON));
        let mut update = format!(
            "SET {status} = {completed}, {outcome} = {outcome_value}, {expiration} = {expiration_value}, \
             {format} = {format_value}, {codec} = {codec_value}"
        );
        match &completion.data {
            Some(value) => {
                let value = e.value(":data", s(value.as_str()));
                update.push_str(&format!(", {data} = {value}"));
            }
            None => update.push_str(&format!(" REMOVE {data}")),
        }
        self.held_update("UpdateItem (complete)", attempt, e, update, None)
            .await
    }

    async fn extend(
        &self,
        attempt: &Attempt,
        renewal: &Renewal,
    ) -> Result<Written<()>, StoreError> {
        let mut e = Expression::default();
        let lease_name = e.name("#lease", &self.names.in_progress_expiration);
        let lease_value = e.value(":lease", n(renewal.lease_until_ms));
        let expiration = e.name("#expiration", &self.names.expiration);
        let expiration_value = e.value(":expiration", n(renewal.expires_at_s));
        let update = format!("SET {lease_name} = {lease_value}, {expiration} = {expiration_value}");
        // A heartbeat that lands after the release must not revive the lease.
        let zero = e.value(":zero", n(0));
        let not_released = format!("{lease_name} > {zero}");
        self.held_update(
            "UpdateItem (extend)",
            attempt,
            e,
            update,
            Some(not_released),
        )
        .await
    }

    async fn release(&self, attempt: &Attempt) -> Result<Written<()>, StoreError> {
        let mut e = Expression::default();
        let lease = e.name("#lease", &self.names.in_progress_expiration);
        let zero = e.value(":zero", n(0));
        let update = format!("SET {lease} = {zero}");
        self.held_update("UpdateItem (release)", attempt, e, update, None)
            .await
    }

    async fn read(&self, id: &str) -> Result<Option<Record>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        match output.item() {
            Some(item) if !item.is_empty() => Ok(Some(self.decode(id, item)?)),
            _ => Ok(None),
        }
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(self.key(id)))
            .send()
            .await
            .map_err(|e| store_error("DeleteItem", e))?;
        Ok(())
    }
}
