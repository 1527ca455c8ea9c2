//! Setting up a [`DynamoStore`]: the builder, the table checks made when it is built,
//! and table creation.

use std::fmt::Debug;
use std::time::Duration;

use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::ReplicaDescription;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, MultiRegionConsistency,
    ScalarAttributeType, StreamViewType, TableDescription, TableStatus, TimeToLiveSpecification,
    TimeToLiveStatus,
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
    /// The table is an eventually consistent global table (replicas in other regions,
    /// or a legacy 2017.11.29 global table) and the builder was not told to accept one
    /// ([`DynamoStoreBuilder::allow_eventually_consistent_replicas`]).
    #[error(
        "the DynamoDB table `{table}` is a global table (version {version}) replicated with \
         eventual consistency across the regions {regions}: a conditional write is checked in \
         one region only, so two regions can both begin one key and both run its body, and \
         the record then converges to the last writer's; use a table without replicas or a \
         multi-Region strongly consistent global table (MultiRegionConsistency STRONG), or \
         accept this with `.allow_eventually_consistent_replicas()`"
    )]
    EventuallyConsistentReplicas {
        /// The table's name.
        table: String,
        /// The global tables version: `2019.11.21` (current) or `2017.11.29` (legacy).
        version: String,
        /// The regions the table is replicated in, as far as DynamoDB named them (this
        /// client's region first when known), comma-separated.
        regions: String,
    },
    /// The role lacks a permission a setup request needs (`AccessDeniedException`).
    #[error(
        "DynamoDB {operation} on `{table}` was denied: the role needs `{action}` ({fix}): \
         {message}"
    )]
    PermissionMissing {
        /// The table's name.
        table: String,
        /// The operation denied.
        operation: &'static str,
        /// The IAM action it needs, e.g. `dynamodb:DescribeTable`.
        action: String,
        /// What needs the action, and how to do without it.
        fix: &'static str,
        /// The SDK's error with its context, as text.
        message: String,
        /// The SDK's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
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
    allow_eventually_consistent_replicas: bool,
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
            allow_eventually_consistent_replicas: false,
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

    /// Accepts an eventually consistent global table: a table with replicas in other
    /// regions whose `MultiRegionConsistency` is not `STRONG`, or a legacy (2017.11.29)
    /// global table, which [`build`](Self::build) refuses otherwise.
    ///
    /// What breaks: DynamoDB checks a conditional write in the region that receives it
    /// only, and replicates it to the others within about a second. Two calls with one
    /// key that reach two regions within that window can both begin, so **both run the
    /// body**; each region's record then converges to one of the two writes (the last
    /// writer wins), whose outcome later duplicates see. A lease, a fence and a release
    /// are per region in the same way. Within one region nothing changes: calls that all
    /// reach one region (one writer region, with the others for failover) run a body once
    /// per key, up to a failover, whose in-flight writes may not have replicated yet.
    ///
    /// A multi-Region strongly consistent table (MRSC, `MultiRegionConsistency` `STRONG`)
    /// needs no opt-in: its conditional writes are checked against every region.
    pub fn allow_eventually_consistent_replicas(mut self) -> Self {
        self.allow_eventually_consistent_replicas = true;
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
        if error.code() == Some("AccessDeniedException") {
            return SetupError::PermissionMissing {
                table: self.table.clone(),
                operation,
                action: format!("dynamodb:{operation}"),
                fix: permission_fix(operation),
                message: DisplayErrorContext(&error).to_string(),
                source: Box::new(error),
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

    /// Checks the table (its key schema, its replication, and TTL unless turned off)
    /// and builds the store. Needs `dynamodb:DescribeTable` (and
    /// `dynamodb:DescribeTimeToLive`; and `dynamodb:DescribeGlobalTable` for a table with
    /// a `NEW_AND_OLD_IMAGES` stream and no replicas listed, which may be a legacy global
    /// table).
    ///
    /// A global table is refused unless it is multi-Region strongly consistent or the
    /// builder was told to [accept eventual
    /// consistency](Self::allow_eventually_consistent_replicas).
    pub async fn build(self) -> Result<DynamoStore, SetupError> {
        // Both checks are sent at once: building costs one round trip (two for a table
        // that may be a legacy global table).
        let (schema, ttl) = tokio::join!(self.check_table(), async {
            match self.check_ttl {
                true => self.check_ttl_enabled().await,
                false => Ok(()),
            }
        });
        schema?;
        ttl?;
        Ok(self.build_unchecked())
    }

    /// Whether the table exists with the key schema this store needs, and is not an
    /// eventually consistent global table (unless accepted).
    async fn check_table(&self) -> Result<(), SetupError> {
        let table = self.describe().await?;
        self.check_schema(table.as_ref())?;
        match table {
            Some(table) => self.check_replication(&table).await,
            None => Ok(()),
        }
    }

    /// Whether the table has the key schema this store needs.
    fn check_schema(&self, table: Option<&TableDescription>) -> Result<(), SetupError> {
        let types = table.map(|t| t.attribute_definitions()).unwrap_or_default();
        // Each key as `name KEYTYPE TYPE`, partition key first, as DescribeTable lists it.
        let found: Vec<String> = table
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

    /// Whether the table is replicated with eventual consistency, and if so whether the
    /// builder accepts it. DescribeTable lists a current (2019.11.21) global table's
    /// replicas in the other regions and its consistency mode; a legacy (2017.11.29) one
    /// is known for sure only to DescribeGlobalTable (AWS's documented test), asked when
    /// DescribeTable does not tell already and the table has the stream every legacy
    /// replica needs (`NEW_AND_OLD_IMAGES`).
    async fn check_replication(&self, table: &TableDescription) -> Result<(), SetupError> {
        if self.allow_eventually_consistent_replicas {
            if !table.replicas().is_empty()
                && table.multi_region_consistency() != Some(&MultiRegionConsistency::Strong)
            {
                tracing::warn!(
                    table = %self.table,
                    regions = %self.regions(table.replicas()),
                    "an eventually consistent global table, accepted by \
                     allow_eventually_consistent_replicas: two regions can both run a body"
                );
            }
            return Ok(());
        }
        let version = table.global_table_version();
        let eventual = if version == Some(LEGACY) {
            // Only the regions are asked: the table is refused whatever the answer.
            let group = self.legacy_replication_group().await.ok().flatten();
            let group = group.as_deref().unwrap_or(table.replicas());
            Some((LEGACY, self.regions(group)))
        } else if !table.replicas().is_empty() {
            match table.multi_region_consistency() {
                Some(MultiRegionConsistency::Strong) => None,
                _ => Some((version.unwrap_or(CURRENT), self.regions(table.replicas()))),
            }
        } else if may_be_legacy(table) {
            self.legacy_replication_group()
                .await?
                .filter(|group| !group.is_empty())
                .map(|group| (LEGACY, self.regions(&group)))
        } else {
            None
        };
        match eventual {
            Some((version, regions)) => Err(SetupError::EventuallyConsistentReplicas {
                table: self.table.clone(),
                version: version.to_owned(),
                regions,
            }),
            None => Ok(()),
        }
    }

    /// The replicas of the legacy global table of this table's name (DescribeGlobalTable),
    /// or `None` when there is none (or the server has no such operation).
    async fn legacy_replication_group(
        &self,
    ) -> Result<Option<Vec<ReplicaDescription>>, SetupError> {
        match self
            .client
            .describe_global_table()
            .global_table_name(&self.table)
            .send()
            .await
        {
            Ok(output) => Ok(Some(
                output
                    .global_table_description()
                    .map(|d| d.replication_group().to_vec())
                    .unwrap_or_default(),
            )),
            Err(error)
                if error.code() == Some("GlobalTableNotFoundException")
                    || is_unsupported(&error) =>
            {
                Ok(None)
            }
            Err(error) => Err(self.request_error("DescribeGlobalTable", error)),
        }
    }

    /// The regions of `replicas`, comma-separated, this client's region first (DescribeTable
    /// lists the other regions' replicas; DescribeGlobalTable lists them all).
    fn regions(&self, replicas: &[ReplicaDescription]) -> String {
        let mut regions: Vec<&str> = Vec::new();
        let own = self.client.config().region().map(|r| r.as_ref());
        for region in own
            .into_iter()
            .chain(replicas.iter().map(|r| r.region_name().unwrap_or("?")))
        {
            if !regions.contains(&region) {
                regions.push(region);
            }
        }
        regions.join(", ")
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

/// The legacy version of global tables.
const LEGACY: &str = "2017.11.29";
/// The current version of global tables.
const CURRENT: &str = "2019.11.21";

/// Whether the table has the stream every replica of a legacy (2017.11.29) global table
/// needs: enabled, with new and old images.
fn may_be_legacy(table: &TableDescription) -> bool {
    table.stream_specification().is_some_and(|stream| {
        stream.stream_enabled()
            && stream.stream_view_type() == Some(&StreamViewType::NewAndOldImages)
    })
}

/// What needs the action a setup operation was denied, and how to do without it.
fn permission_fix(operation: &str) -> &'static str {
    match operation {
        "DescribeTable" => {
            "build reads the key schema and the replication with it; grant it, or build with \
             build_unchecked(), which checks nothing"
        }
        "DescribeTimeToLive" => {
            "build checks TTL with it; grant it, or build with .check_ttl(false)"
        }
        "DescribeGlobalTable" => {
            "build asks it whether a table with a NEW_AND_OLD_IMAGES stream is a legacy \
             2017.11.29 global table; grant it, or build with build_unchecked()"
        }
        _ => "create_table needs it; grant it, or create the table elsewhere",
    }
}

/// Whether the server answered that it does not know the operation.
fn is_unsupported<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    matches!(
        error.code(),
        Some("UnknownOperationException" | "UnrecognizedClientException" | "InvalidAction")
    )
}
