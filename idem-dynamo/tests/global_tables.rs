//! How `build` treats replicated tables, from canned DynamoDB answers (the local servers
//! report no replicas): a table without replicas and a multi-Region strongly consistent
//! one are accepted; an eventually consistent global table (current or legacy) is
//! refused unless the builder accepts it; a denied DescribeTable names the permission.

use std::error::Error as _;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::test_util::infallible_client_fn;
use idem_dynamo::{DynamoStore, DynamoStoreBuilder, SetupError};
use serde_json::{json, Value};

/// A builder over table `idem` whose client answers each operation (by its
/// `X-Amz-Target`, without the `DynamoDB_20120810.` prefix) with `answer(operation)`,
/// and keeps the operations sent.
fn answering(
    answer: impl Fn(&str) -> (u16, Value) + Send + Sync + 'static,
) -> (DynamoStoreBuilder, Arc<Mutex<Vec<String>>>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let http = {
        let sent = sent.clone();
        infallible_client_fn(move |request| {
            let operation = request
                .headers()
                .get("x-amz-target")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .trim_start_matches("DynamoDB_20120810.")
                .to_owned();
            let (status, body) = answer(&operation);
            sent.lock().unwrap().push(operation);
            http::Response::builder()
                .status(status)
                .header("content-type", "application/x-amz-json-1.0")
                .body(body.to_string())
                .unwrap()
        })
    };
    let config = idem_dynamo::local_config("http://127.0.0.1:1")
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .build();
    (
        DynamoStore::builder(Client::from_conf(config), "idem"),
        sent,
    )
}

fn failure(kind: &str, message: &str) -> (u16, Value) {
    (
        400,
        json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"), "message": message}),
    )
}

/// DescribeTable's answer: table `idem` with the store's key schema and `extra` fields.
fn table(extra: Value) -> (u16, Value) {
    let mut table = json!({
        "TableName": "idem",
        "TableStatus": "ACTIVE",
        "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
    });
    table
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    (200, json!({ "Table": table }))
}

fn ttl_enabled() -> (u16, Value) {
    (
        200,
        json!({"TimeToLiveDescription": {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiration"}}),
    )
}

/// Answers DescribeTable with `described`, DescribeTimeToLive with TTL enabled, and
/// DescribeGlobalTable with `global` (GlobalTableNotFoundException when `None`).
fn with_table(
    described: Value,
    global: Option<Value>,
) -> (DynamoStoreBuilder, Arc<Mutex<Vec<String>>>) {
    answering(move |operation| match operation {
        "DescribeTable" => table(described.clone()),
        "DescribeTimeToLive" => ttl_enabled(),
        "DescribeGlobalTable" => match &global {
            Some(answer) => (200, answer.clone()),
            None => failure("GlobalTableNotFoundException", "Global table not found"),
        },
        other => panic!("unexpected {other}"),
    })
}

fn replicas(regions: &[&str]) -> Value {
    regions
        .iter()
        .map(|r| json!({"RegionName": r, "ReplicaStatus": "ACTIVE"}))
        .collect()
}

/// The legacy (2017.11.29) global table `idem` in us-east-1 and eu-west-1.
fn legacy_global_table() -> Value {
    json!({"GlobalTableDescription": {
        "GlobalTableName": "idem",
        "GlobalTableStatus": "ACTIVE",
        "ReplicationGroup": [{"RegionName": "us-east-1"}, {"RegionName": "eu-west-1"}],
    }})
}

fn new_and_old_images() -> Value {
    json!({"StreamSpecification": {"StreamEnabled": true, "StreamViewType": "NEW_AND_OLD_IMAGES"}})
}

#[tokio::test]
async fn a_table_without_replicas_is_accepted_in_one_round_trip() {
    let (builder, sent) = with_table(json!({}), None);
    builder.build().await.unwrap();
    let mut sent = sent.lock().unwrap().clone();
    sent.sort();
    assert_eq!(sent, ["DescribeTable", "DescribeTimeToLive"]);

    // Replicas all removed (an empty list, the version left): no replication.
    let (builder, _) = with_table(
        json!({"GlobalTableVersion": "2019.11.21", "Replicas": []}),
        None,
    );
    builder.build().await.unwrap();

    // A stream with other images cannot be a legacy replica: DescribeGlobalTable is
    // not asked.
    let (builder, sent) = with_table(
        json!({"StreamSpecification": {"StreamEnabled": true, "StreamViewType": "KEYS_ONLY"}}),
        Some(legacy_global_table()),
    );
    builder.build().await.unwrap();
    assert!(!sent
        .lock()
        .unwrap()
        .iter()
        .any(|o| o == "DescribeGlobalTable"));
}

#[tokio::test]
async fn an_eventually_consistent_global_table_is_refused_unless_accepted() {
    for described in [
        json!({"GlobalTableVersion": "2019.11.21", "Replicas": replicas(&["eu-west-1", "ap-south-1"]), "MultiRegionConsistency": "EVENTUAL"}),
        // The consistency mode defaults to EVENTUAL where DynamoDB does not say.
        json!({"GlobalTableVersion": "2019.11.21", "Replicas": replicas(&["eu-west-1", "ap-south-1"])}),
    ] {
        let (builder, _) = with_table(described.clone(), None);
        let error = builder.build().await.unwrap_err();
        assert!(
            matches!(error, SetupError::EventuallyConsistentReplicas { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        for part in [
            "`idem`",
            "2019.11.21",
            "us-east-1, eu-west-1, ap-south-1",
            "both run its body",
            "last writer",
            "MultiRegionConsistency STRONG",
            ".allow_eventually_consistent_replicas()",
        ] {
            assert!(message.contains(part), "`{part}` not in: {message}");
        }

        let (builder, _) = with_table(described, None);
        builder
            .allow_eventually_consistent_replicas()
            .build()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_multi_region_strongly_consistent_table_is_accepted() {
    let (builder, _) = with_table(
        json!({
            "GlobalTableVersion": "2019.11.21",
            "Replicas": replicas(&["us-east-2", "us-west-2"]),
            "MultiRegionConsistency": "STRONG",
        }),
        None,
    );
    builder.build().await.unwrap();
}

#[tokio::test]
async fn a_legacy_global_table_is_refused_unless_accepted() {
    // DescribeTable lists no replicas for a legacy global table; its stream makes it a
    // candidate, and DescribeGlobalTable answers.
    let (builder, sent) = with_table(new_and_old_images(), Some(legacy_global_table()));
    let error = builder.build().await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, SetupError::EventuallyConsistentReplicas { ref version, ref regions, .. }
            if version == "2017.11.29" && regions == "us-east-1, eu-west-1"),
        "{error:?}"
    );
    assert!(
        message.contains("`idem`") && message.contains("2017.11.29"),
        "{message}"
    );
    assert!(sent
        .lock()
        .unwrap()
        .iter()
        .any(|o| o == "DescribeGlobalTable"));

    // The same stream on a table that is no global table: accepted.
    let (builder, _) = with_table(new_and_old_images(), None);
    builder.build().await.unwrap();

    // DescribeTable naming the legacy version is enough.
    let (builder, _) = with_table(
        json!({"GlobalTableVersion": "2017.11.29"}),
        Some(legacy_global_table()),
    );
    assert!(matches!(
        builder.build().await,
        Err(SetupError::EventuallyConsistentReplicas { version, .. }) if version == "2017.11.29"
    ));

    // Accepted: DescribeGlobalTable is not even asked.
    let (builder, sent) = with_table(new_and_old_images(), Some(legacy_global_table()));
    builder
        .allow_eventually_consistent_replicas()
        .build()
        .await
        .unwrap();
    assert!(!sent
        .lock()
        .unwrap()
        .iter()
        .any(|o| o == "DescribeGlobalTable"));
}

const DENIED: &str = "User: arn:aws:sts::123456789012:assumed-role/app/x is not authorized \
                      to perform this operation";

#[tokio::test]
async fn a_denied_describe_table_names_the_permission() {
    let (builder, _) = answering(|operation| match operation {
        "DescribeTable" => failure("AccessDeniedException", DENIED),
        _ => ttl_enabled(),
    });
    let error = builder.build().await.unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, SetupError::PermissionMissing { ref action, .. } if action == "dynamodb:DescribeTable"),
        "{error:?}"
    );
    for part in ["`dynamodb:DescribeTable`", "`idem`", "build_unchecked()"] {
        assert!(message.contains(part), "`{part}` not in: {message}");
    }
    let source = error.source().expect("the SDK's error as source");
    assert!(
        source
            .downcast_ref::<aws_sdk_dynamodb::error::SdkError<
                aws_sdk_dynamodb::operation::describe_table::DescribeTableError,
                aws_sdk_dynamodb::config::http::HttpResponse,
            >>()
            .is_some(),
        "{source:?}"
    );

    // A denied DescribeGlobalTable (a table that may be a legacy global table) names its
    // own permission.
    let (builder, _) = answering(|operation| match operation {
        "DescribeTable" => table(new_and_old_images()),
        "DescribeGlobalTable" => failure("AccessDeniedException", DENIED),
        _ => ttl_enabled(),
    });
    let error = builder.build().await.unwrap_err();
    assert!(
        error.to_string().contains("`dynamodb:DescribeGlobalTable`"),
        "{error}"
    );

    // And a denied DescribeTimeToLive its own, with check_ttl(false) as the way out.
    let (builder, _) = answering(|operation| match operation {
        "DescribeTable" => table(json!({})),
        _ => failure("AccessDeniedException", DENIED),
    });
    let error = builder.build().await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("`dynamodb:DescribeTimeToLive`") && message.contains("check_ttl(false)"),
        "{message}"
    );
}
