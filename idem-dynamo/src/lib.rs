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
//! // Checks the table's key schema, replication and TTL once, at start-up.
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
//! `format`, `codec` and `steps`. Every name can be changed ([`AttributeNames`]). Powertools'
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
//! - extend and release write the lease;
//! - journal (a step of the body, `Store::journal`) appends one entry to the `steps`
//!   list, under complete's condition (see [The journal of steps](#the-journal-of-steps)).
//!   The takeover keeps the list (a later attempt of the record finds the steps its
//!   predecessors finished), and complete removes it in its own write.
//!
//! A first call costs two requests (begin and complete), a duplicate one, a takeover
//! of a free record one more, a long body one more per heartbeat, and a body with
//! steps one more per step (one more again for an at-most-once step's start).
//!
//! # The journal of steps
//! The journal lives in the record's item, in the list attribute `steps`, one map per
//! journal write: `{n: S name, o: S "ok" | "err", c: S codec, d: S json | B bytes}`,
//! without `o` and `d` while an at-most-once step has started. Values are stored as the
//! outcome's `data` is: JSON as a string, bytes (or any data that is not UTF-8 JSON) as
//! Binary, never base64 in a string; an unknown codec's name is kept as stored. A
//! journal write is one conditional `UpdateItem`,
//! `SET steps = list_append(if_not_exists(steps, []), [entry])`, whatever the item holds;
//! a name written again (an at-most-once step's start, then its result) is appended
//! again, and reading keeps the last entry of each name at the place of its first:
//! that is the store contract's replace-by-name in first-write order. An item without
//! `steps` (no step journaled, or written before steps existed) has an empty journal.
//!
//! Why a list, and not a map by name (`SET steps.#name = :entry`) or items per step:
//!
//! - a nested map path cannot be set while the map does not exist, and `steps =
//!   if_not_exists(steps, {})` beside `steps.#name` in one expression is refused (two
//!   paths overlap): the map would have to be created by begin, adding an attribute to
//!   the lean first request of every call, steps or not, or the first journal write
//!   would cost two requests. A map also keeps no order, so each entry would carry a
//!   sequence number, which one expression cannot both compute and keep on a rewrite;
//! - items per step would make the read that returns the journal with the record a
//!   `Query` (or a second request) instead of one `GetItem`, the completion a
//!   transaction over every step item (two write units each), and the key layout
//!   (Powertools' partition and sort keys) no longer one item per record.
//!
//! The list's cost: a rewritten name keeps its earlier entry in the item. The engine
//! rewrites only an at-most-once step (its start, which holds no data, then its result)
//! and a write whose answer was lost (the SDK resends it): so the item holds at most a
//! step's value twice in that rare case.
//!
//! The journal shares the item's 400 KB with the record (the engine refuses a step
//! whose values together pass [`Limits::max_data_bytes`](idem_core::store::Limits), the
//! same as the outcome's); a journal write that DynamoDB refuses for the item's size
//! nevertheless (names, a resent entry) is a permanent store error saying the journal is
//! too large, and leaves the record as it was. The completion removes the journal as it
//! writes the outcome, so a completed item holds the outcome only.
//!
//! Values up to 395,904 bytes encoded are recorded (an item holds 400 KB, names
//! included); a larger one is completed as not stored, and its duplicates get
//! `Error::ResultNotStored`.
//!
//! # Batches
//! A [`Batch`](idem_core::Batch) (or an `idem-lambda` handler) sends its N begins as N
//! conditional `UpdateItem`s at once, and its completions likewise: a batch takes about
//! one request's latency, not N. DynamoDB has no conditional batch write
//! (`BatchWriteItem` takes no condition). `TransactWriteItems` takes conditions, but it
//! is all or nothing: one key already taken would cancel the begins of every other key
//! of the batch, which must each be answered on their own; it costs two write units per
//! item instead of one, holds at most 100 items, and its cancellation reasons would
//! need the same per-item reading again. So a batch is independent writes, as the
//! protocol has it (N keys, no atomicity across them).
//!
//! # Errors
//! Throttling, server faults (any 5xx), write conflicts and transport failures are
//! transient store errors (after the SDK's own retries); validation, permission and
//! missing-table errors permanent; an item that cannot be decoded is malformed (the call
//! gets a decode error; the body never runs over it). Every store error names DynamoDB,
//! the operation (begin, complete, extend, release, journal, read, delete), the record
//! and the table, and the request that failed (`UpdateItem`, or the `GetItem` that
//! follows a refusal without the old item); one the SDK raised keeps it as its
//! `source()`, so the AWS error code and request id stay reachable. A journal write
//! past the item's size is a permanent error that says the journal is too large. Every
//! [`SetupError`] names the table; a failed or denied setup request (`Request`,
//! `PermissionMissing`) also names the request and keeps the SDK's error as its
//! `source()`.
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
//! | [`DynamoStoreBuilder::build`] | `dynamodb:DescribeTable`, and `dynamodb:DescribeTimeToLive` unless [`check_ttl(false)`](DynamoStoreBuilder::check_ttl); `dynamodb:DescribeGlobalTable` for a table with a `NEW_AND_OLD_IMAGES` stream and no replicas listed (see [Global tables](#global-tables)) |
//! | [`DynamoStoreBuilder::build_unchecked`] | none |
//! | [`DynamoStoreBuilder::create_table`] | `dynamodb:CreateTable`, `dynamodb:DescribeTable`, `dynamodb:UpdateTimeToLive` |
//! | `Store::delete` (operators) | `dynamodb:DeleteItem` |
//!
//! A denied setup request fails with [`SetupError::PermissionMissing`], which names the
//! IAM action (`dynamodb:DescribeTable`, ...) and how to do without it.
//!
//! # Global tables
//! DynamoDB checks a conditional write only in the region that receives it. On a global
//! table with eventual consistency (the default mode of version 2019.11.21, and the only
//! one of the legacy version 2017.11.29), a write is replicated to the other regions
//! after it is applied, and concurrent writes to one item from two regions are settled
//! by last writer wins. For idem this means: **two calls with one key that reach two
//! regions within the replication delay (typically under a second) can both begin, and
//! both run the body**; the record then converges to one of the two attempts (the last
//! writer's), whose outcome later duplicates get. Leases, fences and releases are per
//! region in the same way, so a fence does not fence off a holder in another region.
//!
//! [`DynamoStoreBuilder::build`] therefore reads the table's replication and refuses an
//! eventually consistent global table with [`SetupError::EventuallyConsistentReplicas`],
//! which names the table, its regions and the fix:
//!
//! - a table without replicas is accepted;
//! - a multi-Region strongly consistent table (MRSC, `MultiRegionConsistency` `STRONG`)
//!   is accepted: a write is replicated to another region before it is acknowledged, a
//!   condition is evaluated against the item's latest version whichever region wrote
//!   it, and a write that conflicts with one in flight from another region fails with
//!   `ReplicatedWriteConflictException` (a transient error). AWS has listed TTL among
//!   what an MRSC table lacks: where DescribeTimeToLive reports it disabled, build with
//!   [`check_ttl(false)`](DynamoStoreBuilder::check_ttl); expired records then stay in
//!   the table (idem still treats them as free and takes them over);
//! - a 2019.11.21 table with replicas and eventual consistency, and a 2017.11.29 (legacy)
//!   global table, are refused unless the builder is told
//!   [`allow_eventually_consistent_replicas()`](DynamoStoreBuilder::allow_eventually_consistent_replicas),
//!   for deployments that send every call of a key to one region (the others standing
//!   by for failover) or that accept a rare second run across regions.
//!
//! DescribeTable lists a current global table's replicas (in the other regions) and its
//! consistency mode. A legacy global table is known for sure only to
//! DescribeGlobalTable (AWS's documented way to tell the version), so `build` asks it
//! when DescribeTable does not name the version and lists no replicas, and the table has
//! the stream every legacy replica needs (`NEW_AND_OLD_IMAGES`): only such tables need
//! `dynamodb:DescribeGlobalTable`. [`build_unchecked`](DynamoStoreBuilder::build_unchecked)
//! checks nothing, replication included.
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
#![cfg_attr(docsrs, feature(doc_cfg))]

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
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;
