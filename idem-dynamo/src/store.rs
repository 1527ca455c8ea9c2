//! The DynamoDB store: the `Store` trait mapped onto the requests of `requests.rs`
//! and their answers.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::Client;
use idem_core::store::{
    Attempt, Begin, Completion, Limits, Record, Renewal, StepRecord, StoreError, Written,
};
use idem_core::{RecordId, Store};

use crate::item::decode;
use crate::names::{AttributeNames, KeyLayout};
use crate::requests::{self, Update};

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

    /// The client the store sends its requests with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The prefix put before every record id (empty by default).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The table's attribute names.
    pub fn names(&self) -> &AttributeNames {
        &self.names
    }

    /// Where the record id goes: the partition key, or Powertools' sort key.
    pub fn key_layout(&self) -> &KeyLayout {
        &self.layout
    }

    /// What an error of `operation` on `id` names.
    fn context<'a>(&'a self, operation: &'static str, id: &'a RecordId) -> Context<'a> {
        Context {
            operation,
            id,
            table: &self.table,
        }
    }

    /// Sends one conditional UpdateItem; a failed condition returns the current record
    /// (the old item in the response, or one consistent read when the server sent none).
    async fn update(
        &self,
        id: &RecordId,
        request: Update,
    ) -> Result<Written<UpdateItemOutput>, StoreError> {
        let context = self.context(request.operation, id);
        let result = self.update_item(id, request).send().await;
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
                    Some(item) if !item.is_empty() => Ok(Written::Refused(Some(Arc::new(decode(
                        &self.names,
                        context,
                        item,
                    )?)))),
                    // No old item: the record is absent, or the server ignores the flag.
                    _ => Ok(Written::Refused(self.get(context).await?)),
                }
            }
            Err(error) if context.operation == "journal" && item_too_large(&error) => {
                Err(StoreError::permanent(format!(
                    "{context}: the journal is too large: DynamoDB refused the step because \
                     the item (the record with its journal of steps) would exceed its 400 KB \
                     item size; journal smaller step values (an id), and keep the rest \
                     elsewhere"
                ))
                .with_source(error))
            }
            Err(error) => Err(store_error(context, "UpdateItem", error)),
        }
    }

    /// One strongly consistent GetItem of the context's record, for its operation.
    async fn get(&self, context: Context<'_>) -> Result<Option<Arc<Record>>, StoreError> {
        let output = self
            .get_item(context.id)
            .send()
            .await
            .map_err(|e| store_error(context, "GetItem", e))?;
        match output.item() {
            Some(item) if !item.is_empty() => {
                Ok(Some(Arc::new(decode(&self.names, context, item)?)))
            }
            _ => Ok(None),
        }
    }

    /// A write whose answer holds nothing to read: applied or refused.
    async fn write(&self, id: &RecordId, request: Update) -> Result<Written<()>, StoreError> {
        Ok(self.update(id, request).await?.map(|_| ()))
    }

    /// The takeover of a free record: applied, the fence read back from the updated
    /// attributes.
    async fn take_over(&self, request: &Begin) -> Result<Written<u64>, StoreError> {
        match self
            .update(&request.id, requests::take_over(&self.names, request))
            .await?
        {
            Written::Applied(output) => {
                let fence = output
                    .attributes()
                    .and_then(|new| new.get(&self.names.fence))
                    .and_then(|value| value.as_n().ok())
                    .and_then(|value| value.parse().ok())
                    .ok_or_else(|| {
                        StoreError::permanent(format!(
                            "{}: the UpdateItem answer holds no fence",
                            self.context("begin", &request.id)
                        ))
                    })?;
                Ok(Written::Applied(fence))
            }
            Written::Refused(current) => Ok(Written::Refused(current)),
        }
    }
}

/// Whether DynamoDB refused a write because the item would outgrow its size limit
/// (`ValidationException`, "Item size has exceeded the maximum allowed size", or "Item
/// size to update has exceeded ..." for an update).
fn item_too_large<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    error.code() == Some("ValidationException")
        && error
            .message()
            .is_some_and(|message| message.contains("exceeded the maximum allowed size"))
}

/// What a store error names: the store (DynamoDB), the operation (begin, complete,
/// extend, release, journal, read, delete), the record and the table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    pub operation: &'static str,
    pub id: &'a RecordId,
    pub table: &'a str,
}

impl std::fmt::Display for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DynamoDB {} of `{}` on table `{}`",
            self.operation, self.id, self.table
        )
    }
}

/// Classes an SDK error: throttling, server faults (any 5xx, with or without an error
/// code), write conflicts and transport failures are transient (the SDK's retry policy
/// has already retried them); the rest (validation, permissions, a missing table) are
/// permanent.
/// The message names the context and the request (`UpdateItem`, `GetItem`,
/// `DeleteItem`); the SDK's error is kept as the `source()`.
fn store_error<E>(
    context: Context<'_>,
    request: &'static str,
    error: SdkError<E, HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = format!(
        "{context}: {request} failed: {}",
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
        let new_key = requests::begin_new(&self.names, request);
        match self.write(&request.id, new_key).await? {
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
        let request = requests::complete(&self.names, attempt, completion);
        self.write(&attempt.id, request).await
    }

    async fn extend(
        &self,
        attempt: &Attempt,
        renewal: &Renewal,
    ) -> Result<Written<()>, StoreError> {
        let request = requests::extend(&self.names, attempt, renewal);
        self.write(&attempt.id, request).await
    }

    async fn release(&self, attempt: &Attempt) -> Result<Written<()>, StoreError> {
        let request = requests::release(&self.names, attempt);
        self.write(&attempt.id, request).await
    }

    async fn journal(
        &self,
        attempt: &Attempt,
        step: &StepRecord,
    ) -> Result<Written<()>, StoreError> {
        let request = requests::journal(&self.names, attempt, step);
        self.write(&attempt.id, request).await
    }

    async fn read(&self, id: &RecordId) -> Result<Option<Arc<Record>>, StoreError> {
        self.get(self.context("read", id)).await
    }

    async fn delete(&self, id: &RecordId) -> Result<(), StoreError> {
        self.delete_item(id)
            .send()
            .await
            .map_err(|e| store_error(self.context("delete", id), "DeleteItem", e))?;
        Ok(())
    }
}
