//! The DynamoDB store of [idem](https://docs.rs/idem): records in one table, guarded by
//! conditional writes, expired by DynamoDB's TTL.
//!
//! ```no_run
//! use idem_core::Engine;
//! use idem_dynamo::DynamoStore;
//!
//! # async fn start() -> Result<(), Box<dyn std::error::Error>> {
//! // In production, build the client from `aws_config::load_defaults(...)` (the
//! // default credential chain and region). Against a local server (moto, dynalite,
//! // DynamoDB Local): static credentials, a region and the endpoint.
//! let client = idem_dynamo::local_client("http://127.0.0.1:8000");
//!
//! // Checks the table's key schema and TTL once, at start-up.
//! let store = DynamoStore::builder(client, "idempotency").build().await?;
//! Engine::new(store).install()?;
//! # Ok(()) }
//! ```
//!
//! The store takes the caller's [`Client`](aws_sdk_dynamodb::Client) and never builds
//! one. It depends on the SDK with default features off; the `rustls` feature (on by
//! default) brings the SDK's default HTTPS client.
//!
//! # How records map to items
//! One item per key, with a string partition key (`id`) holding
//! `{prefix}{namespace}#{digest}`. Attribute names default to AWS Lambda Powertools'
//! (`id`, `expiration` as the TTL attribute in epoch seconds, `in_progress_expiration`
//! in epoch milliseconds, `status`, `data`, `validation`), so a Powertools idempotency
//! table and its templates can be reused; idem adds `owner`, `fence`, `outcome`,
//! `format` and `codec`. Every name can be changed ([`AttributeNames`]). Powertools'
//! sort-key mode (one static partition key value, the id in the sort key; ids then have
//! 1024 bytes, not 2048) is [`DynamoStoreBuilder::sort_key`].
//!
//! Each transition is one conditional `UpdateItem`, asking for the old item when the
//! condition fails (`ReturnValuesOnConditionCheckFailure = ALL_OLD`); a server that
//! ignores that flag costs one strongly consistent `GetItem` more. Every request
//! carries only what its transition needs:
//!
//! - begin on a new key (`attribute_not_exists(id)`) sets the attempt's fields and
//!   fence 1, and asks nothing back. Refused, it brings the current item: a live record
//!   is the answer; a free one (lapsed, released, expired) is taken over by a second
//!   request, which increments the fence atomically (`if_not_exists(fence, 0) + 1`,
//!   read back from the updated attributes) and removes the old attempt's outcome,
//!   data, format, codec and fingerprint;
//! - complete writes the outcome and the data with their `format` and `codec` (a
//!   record in progress has neither);
//! - extend and release write the lease.
//!
//! A first call costs two requests (begin and complete), a duplicate one, a takeover
//! of a free record one more, and a long body one more per heartbeat.
//!
//! Values up to 395,904 bytes encoded are recorded (an item holds 400 KB, names
//! included); a larger one is completed as not stored, and its duplicates get
//! `Error::ResultNotStored`.
//!
//! # Sharing a table with AWS Lambda Powertools, and migrating from it
//! idem reads and writes Powertools' attribute names, so one table (and its
//! CloudFormation or Terraform definition) can serve both libraries: each keeps its own
//! records intact. Their record ids never match, though: Powertools hashes the event
//! (or a JMESPath selection of it) with its own function name, idem hashes its canonical
//! key with its namespace (`docs/protocol.md`, section 5). So neither library sees the
//! other's records, and an event that is delivered once to a Powertools handler and
//! again, after the switch, to an idem handler runs twice.
//!
//! To migrate without that window, run both side by side for one TTL: deploy the idem
//! handler behind the Powertools one (or in front, passing through), so every event is
//! deduplicated by both, until every Powertools record the old handler wrote has
//! expired; then remove Powertools. A duplicate that arrives during that time finds the
//! record of whichever library saw the first delivery.
//!
//! # IAM actions
//! | what | actions |
//! |---|---|
//! | guarded calls | `dynamodb:UpdateItem`, `dynamodb:GetItem` |
//! | [`DynamoStoreBuilder::build`] | `dynamodb:DescribeTable`, and `dynamodb:DescribeTimeToLive` unless [`check_ttl(false)`](DynamoStoreBuilder::check_ttl) |
//! | [`DynamoStoreBuilder::build_unchecked`] | none |
//! | [`DynamoStoreBuilder::create_table`] | `dynamodb:CreateTable`, `dynamodb:DescribeTable`, `dynamodb:UpdateTimeToLive` |
//! | `Store::delete` (operators) | `dynamodb:DeleteItem` |
//!
//! # The table in CloudFormation / SAM
//! ```yaml
//! IdempotencyTable:
//!   Type: AWS::DynamoDB::Table
//!   Properties:
//!     BillingMode: PAY_PER_REQUEST
//!     AttributeDefinitions:
//!       - AttributeName: id
//!         AttributeType: S
//!     KeySchema:
//!       - AttributeName: id
//!         KeyType: HASH
//!     TimeToLiveSpecification:
//!       AttributeName: expiration
//!       Enabled: true
//!
//! # In the function's policies:
//! #   - Statement:
//! #       - Effect: Allow
//! #         Action: [dynamodb:UpdateItem, dynamodb:GetItem, dynamodb:DescribeTable, dynamodb:DescribeTimeToLive]
//! #         Resource: !GetAtt IdempotencyTable.Arn
//! ```
//!
//! # The table in Terraform
//! ```hcl
//! resource "aws_dynamodb_table" "idempotency" {
//!   name         = "idempotency"
//!   billing_mode = "PAY_PER_REQUEST"
//!   hash_key     = "id"
//!
//!   attribute {
//!     name = "id"
//!     type = "S"
//!   }
//!
//!   ttl {
//!     attribute_name = "expiration"
//!     enabled        = true
//!   }
//! }
//! ```
//!
//! # Testing against local servers
//! The project's tests run against two local DynamoDB-compatible servers, each for what
//! it does well: moto's server (the full API, the old item on conflict; its conditional
//! writes are not atomic under concurrency, so it never judges races) and dynalite
//! (race-safe; no old item on conflict, no TTL API, so build the store with
//! `check_ttl(false)` there). `scripts/test` starts both.
#![warn(missing_docs)]

mod item;
mod local;
mod names;
mod requests;
mod setup;
mod store;

pub use local::{local_client, local_config};
pub use names::{AttributeNames, KeyLayout};
pub use setup::{DynamoStoreBuilder, SetupError, TtlSetup};
pub use store::DynamoStore;

#[cfg(feature = "testkit")]
pub mod testkit;
