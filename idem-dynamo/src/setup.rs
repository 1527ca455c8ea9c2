//! Setting up a [`DynamoStore`]: the builder, the table checks made when it is built,
//! and table creation.

use std::fmt::Debug;
use std::time::Duration;

use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TableDescription, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client;

use crate::names::{AttributeNames, KeyLayout};
use crate::store::DynamoStore;

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
        /// The SDK's error with its context, as text.
        message: String,
        /// The SDK's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
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
            source: Box::new(error),
        }
    }

    fn build_error(&self, operation: &'static str, error: BuildError) -> SetupError {
        SetupError::Request {
            table: self.table.clone(),
            operation,
            message: error.to_string(),
            source: Box::new(error),
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
        // Both checks are sent at once: building costs one round trip.
        let (schema, ttl) = tokio::join!(self.check_schema(), async {
            match self.check_ttl {
                true => self.check_ttl_enabled().await,
                false => Ok(()),
            }
        });
        schema?;
        ttl?;
        Ok(self.build_unchecked())
    }

    /// Whether the table exists with the key schema this store needs.
    async fn check_schema(&self) -> Result<(), SetupError> {
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
        Ok(())
    }

    /// Whether TTL is enabled on the expiration attribute.
    async fn check_ttl_enabled(&self) -> Result<(), SetupError> {
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
        if enabled {
            return Ok(());
        }
        Err(SetupError::TtlDisabled {
            table: self.table.clone(),
            attribute: self.names.expiration.clone(),
            status: match (status, attribute) {
                (Some(status), Some(attribute)) => format!("{} on `{attribute}`", status.as_str()),
                (Some(status), None) => status.as_str().to_owned(),
                _ => "not reported".to_owned(),
            },
        })
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
            let build = |e| self.build_error("CreateTable", e);
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
            .map_err(|e| self.build_error("UpdateTimeToLive", e))?;
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
