//! The DynamoDB store.

use std::collections::HashMap;
use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TableDescription, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client;
use idem_core::{
    Attempt, Begin, Completion, Lease, Limits, Record, State, Store, StoreError, Written,
    CODEC_JSON, FORMAT,
};

use crate::item::{decode, n, s, Expression};
use crate::names::{AttributeNames, KeyLayout};

/// DynamoDB's largest item, in bytes, read conservatively: AWS documents "400 KB"
/// (names and values together), and moto refuses items over 405,000 bytes.
const MAX_ITEM_BYTES: usize = 400_000;
/// Room kept in an item for everything but `data`: attribute names, the id, the
/// fingerprint, numbers.
const ITEM_OVERHEAD_BYTES: usize = 4 * 1024;

/// Error codes DynamoDB answers when a later try may succeed.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionConflictException",
    "LimitExceededException",
];

/// Why a [`DynamoStore`] could not be built, or its table not created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The table does not exist.
    #[error(
        "the DynamoDB table `{table}` does not exist; create it (DynamoStoreBuilder::create_table, \
         or the CloudFormation/Terraform definitions in idem-dynamo's docs)"
    )]
    TableMissing {
        /// The table's name.
        table: String,
    },
    /// [`DynamoStoreBuilder::create_table`] found the table already there.
    #[error("the DynamoDB table `{table}` already exists")]
    TableExists {
        /// The table's name.
        table: String,
    },
    /// The table's key schema is not what the store was configured for.
    #[error(
        "the DynamoDB table `{table}` has the key schema {found}, but this store needs {expected}"
    )]
    KeySchema {
        /// The table's name.
        table: String,
        /// The schema found.
        found: String,
        /// The schema needed.
        expected: String,
    },
    /// TTL is not enabled on the expiration attribute.
    #[error(
        "TTL on the DynamoDB table `{table}` is {status}, not enabled on `{attribute}`: expired \
         records would never be deleted; enable TTL on `{attribute}`, or build the store with \
         `.check_ttl(false)` if it is managed elsewhere (or the role lacks DescribeTimeToLive)"
    )]
    TtlDisabled {
        /// The table's name.
        table: String,
        /// The attribute TTL should be on.
        attribute: String,
        /// What DynamoDB reported.
        status: String,
    },
    /// A request failed.
    #[error("DynamoDB {operation} on `{table}` failed: {message}")]
    Request {
        /// The table's name.
        table: String,
        /// The operation.
        operation: &'static str,
        /// The SDK's error, with its context.
        message: String,
    },
}

/// Whether [`DynamoStoreBuilder::create_table`] could enable TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlSetup {
    /// TTL is enabled on the expiration attribute.
    Enabled,
    /// The server has no TTL API (some local emulators); nothing was enabled.
    Unsupported,
}

/// idem's records in a DynamoDB table: see the [crate documentation](crate).
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    names: AttributeNames,
    layout: KeyLayout,
    prefix: String,
}

/// Builds a [`DynamoStore`]: see [`DynamoStore::builder`].
#[derive(Debug, Clone)]
pub struct DynamoStoreBuilder {
    client: Client,
    table: String,
    names: AttributeNames,
    layout: KeyLayout,
    prefix: String,
    check_ttl: bool,
}

impl DynamoStore {
    /// A builder over the user's client (the store never builds one) and table.
    pub fn builder(client: Client, table: impl Into<String>) -> DynamoStoreBuilder {
        DynamoStoreBuilder {
            client,
            table: table.into(),
            names: AttributeNames::default(),
            layout: KeyLayout::default(),
            prefix: String::new(),
            check_ttl: true,
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The item key of a record id.
    fn key(&self, id: &str) -> HashMap<String, AttributeValue> {
        let stored = format!("{}{id}", self.prefix);
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
        let status = expression.name("status", &self.names.status);
        let in_progress = expression.value("inprogress", s(State::InProgress.as_str()));
        let owner = expression.name("owner", &self.names.owner);
        let owner_value = expression.value("owner", s(attempt.owner.clone()));
        let fence = expression.name("fence", &self.names.fence);
        let fence_value = expression.value("fence", n(attempt.fence));
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
    ) -> Result<Result<UpdateItemOutput, Option<Record>>, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(id)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(expression.names())
            .set_expression_attribute_values(expression.values())
            .set_return_values(return_new.then_some(ReturnValue::UpdatedNew))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Ok(output)),
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
                    Some(item) if !item.is_empty() => Ok(Err(Some(self.decode(id, item)?))),
                    // No old item: the record is absent, or the server ignores the flag.
                    _ => Ok(Err(self.read(id).await?)),
                }
            }
            Err(error) => Err(store_error(operation, error)),
        }
    }

    async fn held_update(
        &self,
        operation: &'static str,
        attempt: &Attempt,
        mut expression: Expression,
        update: String,
    ) -> Result<Written<()>, StoreError> {
        let condition = self.held_by(&mut expression, attempt);
        Ok(
            match self
                .update(operation, &attempt.id, update, condition, expression, false)
                .await?
            {
                Ok(_) => Written::Applied(()),
                Err(current) => Written::Refused(current),
            },
        )
    }
}

impl DynamoStoreBuilder {
    /// Attribute names other than Powertools' defaults.
    pub fn names(mut self, names: AttributeNames) -> Self {
        self.names = names;
        self
    }

    /// A prefix put before every record id, to share a table between services.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Powertools' sort-key mode: the partition key holds `partition_value` for every
    /// record and the id goes in the sort key `attribute` (ids up to 1024 bytes).
    pub fn sort_key(
        mut self,
        attribute: impl Into<String>,
        partition_value: impl Into<String>,
    ) -> Self {
        self.layout = KeyLayout::SortKey {
            attribute: attribute.into(),
            partition_value: partition_value.into(),
        };
        self
    }

    /// Whether [`build`](Self::build) checks that TTL is enabled on the expiration
    /// attribute (default `true`; it needs `dynamodb:DescribeTimeToLive`). Turn it off
    /// where TTL is managed elsewhere, the role lacks that permission, or an emulator
    /// reports TTL as disabled.
    pub fn check_ttl(mut self, check: bool) -> Self {
        self.check_ttl = check;
        self
    }

    fn request_error<E, R>(&self, operation: &'static str, error: SdkError<E, R>) -> SetupError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: Debug + Send + Sync + 'static,
    {
        if error.code() == Some("ResourceNotFoundException") {
            return SetupError::TableMissing {
                table: self.table.clone(),
            };
        }
        SetupError::Request {
            table: self.table.clone(),
            operation,
            message: DisplayErrorContext(&error).to_string(),
        }
    }

    /// The table's description (DescribeTable).
    async fn describe(&self) -> Result<Option<TableDescription>, SetupError> {
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| self.request_error("DescribeTable", e))?;
        Ok(described.table().cloned())
    }

    /// The key schema this store needs, as (attribute, key type) pairs.
    fn expected_schema(&self) -> Vec<(String, KeyType)> {
        let mut schema = vec![(self.names.id.clone(), KeyType::Hash)];
        if let KeyLayout::SortKey { attribute, .. } = &self.layout {
            schema.push((attribute.clone(), KeyType::Range));
        }
        schema
    }

    /// Checks the table (its key schema, and TTL unless turned off) and builds the
    /// store. Needs `dynamodb:DescribeTable` (and `dynamodb:DescribeTimeToLive`).
    pub async fn build(self) -> Result<DynamoStore, SetupError> {
        let table = self.describe().await?;
        let types = table
            .as_ref()
            .map(|t| t.attribute_definitions())
            .unwrap_or_default();
        // Each key as `name KEYTYPE TYPE`, partition key first, as DescribeTable lists it.
        let found: Vec<String> = table
            .as_ref()
            .map(|t| t.key_schema())
            .unwrap_or_default()
            .iter()
            .map(|key| {
                let ty = types
                    .iter()
                    .find(|d| d.attribute_name() == key.attribute_name())
                    .map_or("?", |d| d.attribute_type().as_str());
                format!("{} {} {ty}", key.attribute_name(), key.key_type().as_str())
            })
            .collect();
        let expected: Vec<String> = self
            .expected_schema()
            .iter()
            .map(|(name, kind)| format!("{name} {} S", kind.as_str()))
            .collect();
        if found != expected {
            return Err(SetupError::KeySchema {
                table: self.table.clone(),
                found: format!("[{}]", found.join(", ")),
                expected: format!("[{}]", expected.join(", ")),
            });
        }
        if self.check_ttl {
            let ttl = self
                .client
                .describe_time_to_live()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| self.request_error("DescribeTimeToLive", e))?;
            let description = ttl.time_to_live_description();
            let status = description.and_then(|d| d.time_to_live_status());
            let attribute = description.and_then(|d| d.attribute_name());
            let enabled = matches!(
                status,
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            ) && attribute == Some(self.names.expiration.as_str());
            if !enabled {
                return Err(SetupError::TtlDisabled {
                    table: self.table.clone(),
                    attribute: self.names.expiration.clone(),
                    status: match (status, attribute) {
                        (Some(status), Some(attribute)) => {
                            format!("{} on `{attribute}`", status.as_str())
                        }
                        (Some(status), None) => status.as_str().to_owned(),
                        _ => "not reported".to_owned(),
                    },
                });
            }
        }
        Ok(self.build_unchecked())
    }

    /// Builds the store without any request: no check of the key schema or TTL. For
    /// callers that check the table elsewhere (or where a start-up request costs too
    /// much); a misconfigured table then fails on the first call instead.
    pub fn build_unchecked(self) -> DynamoStore {
        DynamoStore {
            client: self.client,
            table: self.table,
            names: self.names,
            layout: self.layout,
            prefix: self.prefix,
        }
    }

    /// Creates the table (on-demand capacity) with the key schema this store needs,
    /// waits until it is active, and enables TTL on the expiration attribute where the
    /// server has the TTL API. Needs `dynamodb:CreateTable`, `dynamodb:DescribeTable`
    /// and `dynamodb:UpdateTimeToLive`. For production, prefer the CloudFormation or
    /// Terraform definitions in the crate docs.
    pub async fn create_table(&self) -> Result<TtlSetup, SetupError> {
        let mut request = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest);
        for (attribute, kind) in self.expected_schema() {
            let build = |e: aws_sdk_dynamodb::error::BuildError| SetupError::Request {
                table: self.table.clone(),
                operation: "CreateTable",
                message: e.to_string(),
            };
            request = request
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(&attribute)
                        .key_type(kind)
                        .build()
                        .map_err(build)?,
                )
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(&attribute)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(build)?,
                );
        }
        request.send().await.map_err(|e| {
            if e.code() == Some("ResourceInUseException") {
                SetupError::TableExists {
                    table: self.table.clone(),
                }
            } else {
                self.request_error("CreateTable", e)
            }
        })?;
        for _ in 0..600 {
            let table = self.describe().await?;
            if table.and_then(|t| t.table_status().cloned()) == Some(TableStatus::Active) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let specification = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(&self.names.expiration)
            .build()
            .map_err(|e| SetupError::Request {
                table: self.table.clone(),
                operation: "UpdateTimeToLive",
                message: e.to_string(),
            })?;
        match self
            .client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(specification)
            .send()
            .await
        {
            Ok(_) => Ok(TtlSetup::Enabled),
            Err(error) if is_unsupported(&error) => {
                tracing::warn!(table = %self.table, "this DynamoDB server has no TTL API; TTL was not enabled");
                Ok(TtlSetup::Unsupported)
            }
            Err(error) => Err(self.request_error("UpdateTimeToLive", error)),
        }
    }
}

/// Whether the server answered that it does not know the operation.
fn is_unsupported<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    matches!(
        error.code(),
        Some("UnknownOperationException" | "UnrecognizedClientException" | "InvalidAction")
    )
}

/// Classes an SDK error: throttling, server faults and transport failures are transient
/// (the SDK's retry policy has already retried them); the rest are permanent.
fn store_error<E, R>(operation: &'static str, error: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: Debug + Send + Sync + 'static,
{
    let message = format!(
        "DynamoDB {operation} failed: {}",
        DisplayErrorContext(&error)
    );
    let transient = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(_) => error
            .code()
            .is_some_and(|code| TRANSIENT_CODES.contains(&code)),
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
        let mut e = Expression::default();
        let names = &self.names;
        let status = e.name("status", &names.status);
        let in_progress = e.value("inprogress", s(State::InProgress.as_str()));
        let completed = e.value("completed", s(State::Completed.as_str()));
        let owner = e.name("owner", &names.owner);
        let owner_value = e.value("owner", s(request.owner.clone()));
        let fence = e.name("fence", &names.fence);
        let zero = e.value("zero", n(0));
        let one = e.value("one", n(1));
        let lease = e.name("lease", &names.in_progress_expiration);
        let lease_value = e.value("lease", n(request.lease_until_ms));
        let expiration = e.name("expiration", &names.expiration);
        let expiration_value = e.value("expiration", n(request.expires_at_s));
        let format = e.name("format", &names.format);
        let format_value = e.value("format", n(FORMAT.into()));
        let codec = e.name("codec", &names.codec);
        let codec_value = e.value("codec", s(CODEC_JSON));
        let data = e.name("data", &names.data);
        let outcome = e.name("outcome", &names.outcome);
        let validation = e.name("validation", &names.validation);
        let mut set = vec![
            format!("{status} = {in_progress}"),
            format!("{owner} = {owner_value}"),
            format!("{fence} = if_not_exists({fence}, {zero}) + {one}"),
            format!("{lease} = {lease_value}"),
            format!("{expiration} = {expiration_value}"),
            format!("{format} = {format_value}"),
            format!("{codec} = {codec_value}"),
        ];
        let mut remove = vec![data, outcome];
        match &request.fingerprint {
            Some(fingerprint) => {
                let value = e.value("validation", s(fingerprint.clone()));
                set.push(format!("{validation} = {value}"));
            }
            None => remove.push(validation),
        }
        let update = format!("SET {} REMOVE {}", set.join(", "), remove.join(", "));
        let id = e.name("id", &names.id);
        let now_s = e.value("now_s", n(request.now_ms / 1000));
        let now_ms = e.value("now_ms", n(request.now_ms));
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
            Ok(output) => {
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
            Err(current) => Ok(Written::Refused(current)),
        }
    }

    async fn complete(
        &self,
        attempt: &Attempt,
        completion: &Completion,
    ) -> Result<Written<()>, StoreError> {
        let mut e = Expression::default();
        let names = &self.names;
        let status = e.name("status", &names.status);
        let completed = e.value("completed", s(State::Completed.as_str()));
        let outcome = e.name("outcome", &names.outcome);
        let outcome_value = e.value("outcome", s(completion.outcome.as_str()));
        let expiration = e.name("expiration", &names.expiration);
        let expiration_value = e.value("expiration", n(completion.expires_at_s));
        let data = e.name("data", &names.data);
        let mut update = format!(
            "SET {status} = {completed}, {outcome} = {outcome_value}, {expiration} = {expiration_value}"
        );
        match &completion.data {
            Some(value) => {
                let value = e.value("data", s(value.clone()));
                update.push_str(&format!(", {data} = {value}"));
            }
            None => update.push_str(&format!(" REMOVE {data}")),
        }
        self.held_update("UpdateItem (complete)", attempt, e, update)
            .await
    }

    async fn extend(&self, attempt: &Attempt, lease: &Lease) -> Result<Written<()>, StoreError> {
        let mut e = Expression::default();
        let lease_name = e.name("lease", &self.names.in_progress_expiration);
        let lease_value = e.value("lease", n(lease.lease_until_ms));
        let expiration = e.name("expiration", &self.names.expiration);
        let expiration_value = e.value("expiration", n(lease.expires_at_s));
        let update = format!("SET {lease_name} = {lease_value}, {expiration} = {expiration_value}");
        self.held_update("UpdateItem (extend)", attempt, e, update)
            .await
    }

    async fn release(&self, attempt: &Attempt) -> Result<Written<()>, StoreError> {
        let mut e = Expression::default();
        let lease = e.name("lease", &self.names.in_progress_expiration);
        let zero = e.value("zero", n(0));
        let update = format!("SET {lease} = {zero}");
        self.held_update("UpdateItem (release)", attempt, e, update)
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
