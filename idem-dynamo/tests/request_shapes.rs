//! The exact requests each operation sends, captured from the SDK without a server.
//! DynamoDB rejects requests that emulators accept (an unused attribute name or value,
//! a path both set and removed): these tests hold our requests to AWS's rules.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::test_util::capture_request;
use common::scripted::scripted;
use idem_core::store::{Codec, Outcome, StepRecord, Written};
use idem_core::testkit::{attempt, begin_at, completion_at, renewal_at, T0};
use idem_core::Store;
use idem_dynamo::{DynamoStore, DynamoStoreBuilder};
use serde_json::{json, Value};

const ID: &str = "orders::create#f29f018128aee652b6ba7279a58295a81e5c54e6762fb787356e5e7d042eedd9";

/// Runs `operation` against a store whose client captures its one request; returns
/// the operation name (`X-Amz-Target`) and the JSON body.
async fn captured<F, Fut>(
    configure: fn(DynamoStoreBuilder) -> DynamoStoreBuilder,
    operation: F,
) -> (String, Value)
where
    F: FnOnce(DynamoStore) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (http, request) = capture_request(None);
    let config = idem_dynamo::local_config("http://127.0.0.1:1")
        .http_client(http)
        .build();
    let store =
        configure(DynamoStore::builder(Client::from_conf(config), "idem")).build_unchecked();
    // The captured response is empty, so the store reports an error: only the
    // request matters here.
    operation(store).await;
    let request = request.expect_request();
    let target = request
        .headers()
        .get("x-amz-target")
        .unwrap_or_default()
        .to_owned();
    let body = serde_json::from_slice(request.body().bytes().expect("a JSON body")).expect("JSON");
    (target, body)
}

fn plain(builder: DynamoStoreBuilder) -> DynamoStoreBuilder {
    builder
}

/// Every `#name` and `:value` the expressions use is defined, and every one defined is
/// used; no path is both set and removed.
fn assert_aliases_exact(body: &Value) {
    let expressions: String = ["UpdateExpression", "ConditionExpression"]
        .iter()
        .filter_map(|k| body[k].as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let used = |sigil: char| -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        for (i, c) in expressions.char_indices() {
            if c == sigil {
                let rest = &expressions[i + 1..];
                let len = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                found.insert(format!("{sigil}{}", &rest[..len]));
            }
        }
        found
    };
    let defined = |key: &str| -> BTreeSet<String> {
        body[key]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(
        used('#'),
        defined("ExpressionAttributeNames"),
        "names used vs defined"
    );
    assert_eq!(
        used(':'),
        defined("ExpressionAttributeValues"),
        "values used vs defined"
    );
    if let Some(update) = body["UpdateExpression"].as_str() {
        if let Some((set, remove)) = update.split_once(" REMOVE ") {
            let set_paths: BTreeSet<&str> = set
                .trim_start_matches("SET ")
                .split(", ")
                .filter_map(|a| a.split(" = ").next())
                .collect();
            for path in remove.split(", ") {
                assert!(!set_paths.contains(path), "{path} is both set and removed");
            }
        }
    }
}

fn names(pairs: &[(&str, &str)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect(),
    )
}

#[tokio::test]
async fn begin_on_a_new_key_is_one_lean_update_item() {
    let request = begin_at(ID, "owner-1", T0 + 1_500, None);
    let (target, body) = captured(plain, |store| async move {
        let _ = store.begin(&request).await;
    })
    .await;
    assert_eq!(target, "DynamoDB_20120810.UpdateItem");
    assert_eq!(body["TableName"], "idem");
    assert_eq!(body["Key"], json!({"id": {"S": ID}}));
    // Nothing to clear on a new key, fence 1, and no answer to read: format and codec
    // come with the data, at completion.
    assert_eq!(
        body["UpdateExpression"],
        "SET #status = :inprogress, #owner = :owner, #lease = :lease, \
         #expiration = :expiration, #fence = :one"
    );
    assert_eq!(body["ConditionExpression"], "attribute_not_exists(#id)");
    assert_eq!(
        body["ExpressionAttributeNames"],
        names(&[
            ("#status", "status"),
            ("#owner", "owner"),
            ("#fence", "fence"),
            ("#lease", "in_progress_expiration"),
            ("#expiration", "expiration"),
            ("#id", "id"),
        ])
    );
    let lease_until = T0 + 1_500 + 30_000;
    assert_eq!(
        body["ExpressionAttributeValues"],
        json!({
            ":inprogress": {"S": "INPROGRESS"},
            ":owner": {"S": idem_core::testkit::owner("owner-1").to_string()},
            ":one": {"N": "1"},
            ":lease": {"N": lease_until.to_string()},
            ":expiration": {"N": request_expiry(lease_until).to_string()},
        })
    );
    assert!(body.get("ReturnValues").is_none());
    assert_eq!(body["ReturnValuesOnConditionCheckFailure"], "ALL_OLD");
    assert_aliases_exact(&body);
}

fn request_expiry(lease_until_ms: u64) -> u64 {
    idem_core::store::ceil_secs(lease_until_ms + idem_core::testkit::TTL_MS)
}

#[tokio::test]
async fn begin_with_a_fingerprint_sets_it() {
    let request = begin_at(ID, "owner-1", T0, Some("fp"));
    let (_, body) = captured(plain, |store| async move {
        let _ = store.begin(&request).await;
    })
    .await;
    let update = body["UpdateExpression"].as_str().unwrap();
    assert!(update.contains(", #validation = :validation, "), "{update}");
    assert!(!update.contains("REMOVE"), "{update}");
    assert_eq!(
        body["ExpressionAttributeValues"][":validation"],
        json!({"S": "fp"})
    );
    assert_aliases_exact(&body);
}

/// The answer to a begin whose condition failed, with the item found.
fn refused_with(item: Value) -> (u16, Value) {
    (
        400,
        json!({
            "__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
            "message": "The conditional request failed",
            "Item": item,
        }),
    )
}

/// A completed record whose TTL ended at `expiration` (epoch seconds), fence 7.
fn completed_item(expiration: u64) -> Value {
    json!({
        "id": {"S": ID},
        "status": {"S": "COMPLETED"},
        "owner": {"S": "owner-0"},
        "fence": {"N": "7"},
        "in_progress_expiration": {"N": "0"},
        "expiration": {"N": expiration.to_string()},
        "outcome": {"S": "ok"},
        "data": {"S": "1"},
        "format": {"N": "1"},
        "codec": {"S": "json"},
        "validation": {"S": "old-fp"},
    })
}

#[tokio::test]
async fn a_free_record_is_taken_over_with_the_request_that_clears_it() {
    let now = T0 + 1_500;
    let (store, sent) = scripted(vec![
        refused_with(completed_item(now / 1000)),
        (200, json!({"Attributes": {"fence": {"N": "8"}}})),
    ]);
    let written = store
        .begin(&begin_at(ID, "owner-1", now, None))
        .await
        .unwrap();
    assert_eq!(written, Written::Applied(8), "the fence read back");
    let body = {
        let sent = sent.lock().unwrap();
        assert_eq!(sent.len(), 2);
        sent[1].clone()
    };
    assert_eq!(
        body["UpdateExpression"],
        "SET #status = :inprogress, #owner = :owner, #lease = :lease, #expiration = :expiration, \
         #fence = if_not_exists(#fence, :zero) + :one \
         REMOVE #data, #outcome, #format, #codec, #validation"
    );
    assert_eq!(
        body["ConditionExpression"],
        "attribute_not_exists(#id) OR (#status = :completed AND #expiration <= :now_s) \
         OR (#status = :inprogress AND #lease <= :now_ms)"
    );
    assert_eq!(
        body["ExpressionAttributeValues"][":now_ms"],
        json!({"N": now.to_string()})
    );
    assert_eq!(body["ReturnValues"], "UPDATED_NEW");
    assert_eq!(body["ReturnValuesOnConditionCheckFailure"], "ALL_OLD");
    assert_aliases_exact(&body);

    // With a fingerprint, the takeover sets it instead of removing it.
    let (store, sent) = scripted(vec![
        refused_with(completed_item(now / 1000)),
        (200, json!({"Attributes": {"fence": {"N": "8"}}})),
    ]);
    let written = store.begin(&begin_at(ID, "owner-1", now, Some("fp"))).await;
    assert_eq!(written.unwrap(), Written::Applied(8));
    let body = &sent.lock().unwrap()[1];
    let update = body["UpdateExpression"].as_str().unwrap();
    assert!(update.contains("#validation = :validation"), "{update}");
    assert!(
        update.ends_with("REMOVE #data, #outcome, #format, #codec"),
        "{update}"
    );
    assert_aliases_exact(body);
}

#[tokio::test]
async fn a_live_record_is_the_answer_with_no_second_request() {
    let now = T0 + 1_500;
    let (store, sent) = scripted(vec![refused_with(completed_item(now / 1000 + 1))]);
    let written = store
        .begin(&begin_at(ID, "owner-1", now, None))
        .await
        .unwrap();
    match written {
        Written::Refused(Some(record)) => {
            assert_eq!((record.fence, record.data.as_deref()), (7, Some(&b"1"[..])))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn complete_extend_and_release_are_one_conditional_update_each() {
    let held = "#status = :inprogress AND #owner = :owner AND #fence = :fence";
    let at = attempt(ID, "owner-1", 7);

    let done = completion_at(T0, Outcome::Ok, Some("{\"v\":1}"));
    let (target, body) = captured(plain, |store| async move {
        let _ = store.complete(&at, &done).await;
    })
    .await;
    assert_eq!(target, "DynamoDB_20120810.UpdateItem");
    assert_eq!(
        body["UpdateExpression"],
        "SET #status = :completed, #outcome = :outcome, #expiration = :expiration, \
         #format = :format, #codec = :codec, #data = :data REMOVE #steps"
    );
    // The completion drops the journal in the same write (a replay needs only the
    // outcome).
    assert_eq!(body["ExpressionAttributeNames"]["#steps"], "steps");
    assert_eq!(body["ConditionExpression"], held);
    assert_eq!(
        body["ExpressionAttributeValues"][":fence"],
        json!({"N": "7"})
    );
    assert_eq!(
        body["ExpressionAttributeValues"][":data"],
        json!({"S": "{\"v\":1}"})
    );
    assert_eq!(body["ReturnValuesOnConditionCheckFailure"], "ALL_OLD");
    assert!(body.get("ReturnValues").is_none());
    assert_aliases_exact(&body);

    let at = attempt(ID, "owner-1", 7);
    let not_stored = completion_at(T0, Outcome::NotStored, None);
    let (_, body) = captured(plain, |store| async move {
        let _ = store.complete(&at, &not_stored).await;
    })
    .await;
    assert_eq!(
        body["UpdateExpression"],
        "SET #status = :completed, #outcome = :outcome, #expiration = :expiration, \
         #format = :format, #codec = :codec REMOVE #data, #steps"
    );
    assert_aliases_exact(&body);

    let at = attempt(ID, "owner-1", 7);
    let (_, body) = captured(plain, |store| async move {
        let _ = store.extend(&at, &renewal_at(T0)).await;
    })
    .await;
    assert_eq!(
        body["UpdateExpression"],
        "SET #lease = :lease, #expiration = :expiration"
    );
    // A heartbeat that lands after the release must not revive the lease.
    assert_eq!(
        body["ConditionExpression"],
        format!("{held} AND #lease > :zero")
    );
    assert_aliases_exact(&body);

    let at = attempt(ID, "owner-1", 7);
    let (_, body) = captured(plain, |store| async move {
        let _ = store.release(&at).await;
    })
    .await;
    assert_eq!(body["UpdateExpression"], "SET #lease = :zero");
    assert_eq!(body["ConditionExpression"], held);
    assert_eq!(
        body["ExpressionAttributeValues"][":zero"],
        json!({"N": "0"})
    );
    assert_aliases_exact(&body);
}

#[tokio::test]
async fn a_journal_write_is_one_conditional_append() {
    let held = "#status = :inprogress AND #owner = :owner AND #fence = :fence";
    let at = attempt(ID, "owner-1", 7);
    let step = StepRecord {
        name: "charge".into(),
        outcome: Some(Outcome::Ok),
        data: Some(vec![0xff, 0x00].into()),
        codec: Codec::Bytes,
    };
    let (target, body) = captured(plain, |store| async move {
        let _ = store.journal(&at, &step).await;
    })
    .await;
    assert_eq!(target, "DynamoDB_20120810.UpdateItem");
    // One append, whether or not the list exists yet: no read, no second request.
    assert_eq!(
        body["UpdateExpression"],
        "SET #steps = list_append(if_not_exists(#steps, :empty), :entry)"
    );
    assert_eq!(body["ConditionExpression"], held);
    assert_eq!(body["ExpressionAttributeNames"]["#steps"], "steps");
    assert_eq!(
        body["ExpressionAttributeValues"][":empty"],
        json!({"L": []})
    );
    // Bytes as Binary (base64 on the wire, as every B value), with outcome and codec.
    assert_eq!(
        body["ExpressionAttributeValues"][":entry"],
        json!({"L": [{"M": {
            "n": {"S": "charge"},
            "o": {"S": "ok"},
            "c": {"S": "bytes"},
            "d": {"B": "/wA="},
        }}]})
    );
    assert_eq!(body["ReturnValuesOnConditionCheckFailure"], "ALL_OLD");
    assert!(body.get("ReturnValues").is_none());
    assert_aliases_exact(&body);

    // A started entry: no outcome, no data; JSON as a string.
    let at = attempt(ID, "owner-1", 7);
    let (_, body) = captured(plain, |store| async move {
        let _ = store.journal(&at, &StepRecord::started("mail")).await;
    })
    .await;
    assert_eq!(
        body["ExpressionAttributeValues"][":entry"],
        json!({"L": [{"M": {"n": {"S": "mail"}, "c": {"S": "json"}}}]})
    );
    let at = attempt(ID, "owner-1", 7);
    let (_, body) = captured(plain, |store| async move {
        let json = StepRecord {
            name: "mail".into(),
            outcome: Some(Outcome::Err),
            data: Some(b"{\"declined\":true}".to_vec().into()),
            codec: Codec::Json,
        };
        let _ = store.journal(&at, &json).await;
    })
    .await;
    assert_eq!(
        body["ExpressionAttributeValues"][":entry"]["L"][0]["M"]["d"],
        json!({"S": "{\"declined\":true}"})
    );
}

#[tokio::test]
async fn reads_are_strongly_consistent_and_keys_follow_the_layout() {
    let (target, body) = captured(plain, |store| async move {
        let _ = store.read(&idem_core::testkit::test_id(ID)).await;
    })
    .await;
    assert_eq!(target, "DynamoDB_20120810.GetItem");
    assert_eq!(body["ConsistentRead"], true);
    assert_eq!(body["Key"], json!({"id": {"S": ID}}));

    let (_, body) = captured(
        |b| b.sort_key("sort_key", "idempotency#svc").prefix("svc/"),
        |store| async move {
            let _ = store.read(&idem_core::testkit::test_id(ID)).await;
        },
    )
    .await;
    assert_eq!(
        body["Key"],
        json!({"id": {"S": "idempotency#svc"}, "sort_key": {"S": format!("svc/{ID}")}})
    );
}

#[tokio::test]
async fn attribute_names_are_configurable_and_always_aliased() {
    fn custom(builder: DynamoStoreBuilder) -> DynamoStoreBuilder {
        builder.names(idem_dynamo::AttributeNames {
            id: "pk".into(),
            expiration: "ttl".into(),
            status: "state".into(),
            ..Default::default()
        })
    }
    let request = begin_at(ID, "owner-1", T0, None);
    let (_, body) = captured(custom, |store| async move {
        let _ = store.begin(&request).await;
    })
    .await;
    assert_eq!(body["Key"], json!({"pk": {"S": ID}}));
    let names: BTreeMap<String, String> =
        serde_json::from_value(body["ExpressionAttributeNames"].clone()).unwrap();
    assert_eq!(names["#id"], "pk");
    assert_eq!(names["#expiration"], "ttl");
    assert_eq!(names["#status"], "state");
    // No attribute name appears in an expression unaliased.
    for expression in ["UpdateExpression", "ConditionExpression"] {
        let text = body[expression].as_str().unwrap();
        for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '#' || c == ':'))
        {
            assert!(
                word.is_empty()
                    || word.starts_with('#')
                    || word.starts_with(':')
                    || [
                        "SET",
                        "REMOVE",
                        "AND",
                        "OR",
                        "if_not_exists",
                        "attribute_not_exists"
                    ]
                    .contains(&word),
                "`{word}` in {expression} is not aliased"
            );
        }
    }
    assert_aliases_exact(&body);
}

#[tokio::test]
async fn the_journal_attribute_is_configurable_and_aliased() {
    fn custom(builder: DynamoStoreBuilder) -> DynamoStoreBuilder {
        builder.names(idem_dynamo::AttributeNames {
            steps: "journal".into(),
            ..Default::default()
        })
    }
    let at = attempt(ID, "owner-1", 7);
    let (_, body) = captured(custom, |store| async move {
        let _ = store.journal(&at, &StepRecord::started("mail")).await;
    })
    .await;
    assert_eq!(body["ExpressionAttributeNames"]["#steps"], "journal");
    assert!(!body["UpdateExpression"]
        .as_str()
        .unwrap()
        .contains("journal"));
    assert_aliases_exact(&body);
    let at = attempt(ID, "owner-1", 7);
    let done = completion_at(T0, Outcome::Ok, Some("1"));
    let (_, body) = captured(custom, |store| async move {
        let _ = store.complete(&at, &done).await;
    })
    .await;
    assert_eq!(body["ExpressionAttributeNames"]["#steps"], "journal");
    assert_aliases_exact(&body);
}
