//! What a store error says and keeps, from canned DynamoDB answers (no server): every
//! message names DynamoDB, the operation, the record and the table, and an error the
//! SDK raised stays reachable as the error's `source()`.

mod common;

use std::error::Error as _;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::get_item::GetItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use idem_core::store::{Outcome, StoreError, StoreErrorKind};
use idem_core::testkit::{attempt, begin_at, completion_at, renewal_at, T0};
use idem_core::Store;
use idem_dynamo::DynamoStore;
use serde_json::{json, Value};

const ID: &str = "orders::create#0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A store over table `idem` whose client answers each request with the next of
/// `answers`.
fn scripted(answers: Vec<(u16, Value)>) -> DynamoStore {
    common::scripted::scripted(answers).0
}

fn throttled() -> (u16, Value) {
    (
        400,
        json!({"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": "Rate exceeded"}),
    )
}

/// A refused condition, with the old item when given.
fn refused(item: Option<Value>) -> (u16, Value) {
    let mut answer = json!({
        "__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
        "message": "The conditional request failed",
    });
    if let Some(item) = item {
        answer["Item"] = item;
    }
    (400, answer)
}

/// An item whose fence is not a number.
fn malformed_item() -> Value {
    json!({
        "id": {"S": ID},
        "status": {"S": "INPROGRESS"},
        "owner": {"S": "a"},
        "fence": {"S": "seven"},
        "in_progress_expiration": {"N": "0"},
        "expiration": {"N": "0"},
    })
}

/// The message names DynamoDB, the operation, the record and the table (and the
/// request, for a request that failed).
fn assert_names(error: &StoreError, operation: &str, request: Option<&str>) {
    let message = error.to_string();
    let context = format!("DynamoDB {operation} of `{ID}` on table `idem`");
    assert!(message.contains(&context), "`{context}` not in: {message}");
    if let Some(request) = request {
        assert!(
            message.contains(&format!("{request} failed")),
            "{request} not in: {message}"
        );
    }
}

/// The source is the SDK's error of operation `E`.
fn assert_source<E: std::error::Error + 'static>(error: &StoreError) {
    let source = error.source().expect("a source");
    assert!(
        source.downcast_ref::<SdkError<E, HttpResponse>>().is_some(),
        "{error}: source {source:?}"
    );
}

#[tokio::test]
async fn a_throttled_request_names_its_operation_and_keeps_the_sdk_error() {
    let held = attempt(ID, "a", 1);
    let error = scripted(vec![throttled()])
        .begin(&begin_at(ID, "a", T0, None))
        .await
        .unwrap_err();
    assert_names(&error, "begin", Some("UpdateItem"));
    assert_source::<UpdateItemError>(&error);
    assert_eq!(error.kind(), StoreErrorKind::Transient);

    let done = completion_at(T0, Outcome::Ok, Some("1"));
    let error = scripted(vec![throttled()])
        .complete(&held, &done)
        .await
        .unwrap_err();
    assert_names(&error, "complete", Some("UpdateItem"));
    assert_source::<UpdateItemError>(&error);

    let error = scripted(vec![throttled()])
        .extend(&held, &renewal_at(T0))
        .await
        .unwrap_err();
    assert_names(&error, "extend", Some("UpdateItem"));
    assert_source::<UpdateItemError>(&error);

    let error = scripted(vec![throttled()])
        .release(&held)
        .await
        .unwrap_err();
    assert_names(&error, "release", Some("UpdateItem"));
    assert_source::<UpdateItemError>(&error);

    let error = scripted(vec![throttled()])
        .read(&idem_core::testkit::test_id(ID))
        .await
        .unwrap_err();
    assert_names(&error, "read", Some("GetItem"));
    assert_source::<GetItemError>(&error);

    let error = scripted(vec![throttled()])
        .delete(&idem_core::testkit::test_id(ID))
        .await
        .unwrap_err();
    assert_names(&error, "delete", Some("DeleteItem"));
    assert_source::<DeleteItemError>(&error);
    assert_eq!(error.kind(), StoreErrorKind::Transient);
}

/// A refusal without the old item is followed by one GetItem; its failure is named
/// after the operation refused, and keeps the GetItem's error.
#[tokio::test]
async fn a_refusal_without_an_item_names_the_operation_refused() {
    let held = attempt(ID, "a", 1);
    let done = completion_at(T0, Outcome::Ok, Some("1"));
    let error = scripted(vec![refused(None), throttled()])
        .complete(&held, &done)
        .await
        .unwrap_err();
    assert_names(&error, "complete", Some("GetItem"));
    assert_source::<GetItemError>(&error);
    assert_eq!(error.kind(), StoreErrorKind::Transient);

    let error = scripted(vec![refused(None), throttled()])
        .begin(&begin_at(ID, "a", T0, None))
        .await
        .unwrap_err();
    assert_names(&error, "begin", Some("GetItem"));
    assert_source::<GetItemError>(&error);
}

#[tokio::test]
async fn a_malformed_item_names_the_operation_and_the_attribute() {
    let held = attempt(ID, "a", 1);
    let assert_malformed = |error: &StoreError, operation: &str| {
        assert_eq!(error.kind(), StoreErrorKind::Malformed, "{error}");
        assert_names(error, operation, None);
        assert!(error.to_string().contains("`fence`"), "{error}");
    };

    // In the refusal's old item.
    let error = scripted(vec![refused(Some(malformed_item()))])
        .begin(&begin_at(ID, "a", T0, None))
        .await
        .unwrap_err();
    assert_malformed(&error, "begin");

    // In the GetItem after a refusal without the item.
    let error = scripted(vec![
        refused(None),
        (200, json!({"Item": malformed_item()})),
    ])
    .release(&held)
    .await
    .unwrap_err();
    assert_malformed(&error, "release");

    // In a read.
    let error = scripted(vec![(200, json!({"Item": malformed_item()}))])
        .read(&idem_core::testkit::test_id(ID))
        .await
        .unwrap_err();
    assert_malformed(&error, "read");
}
