//! How each DynamoDB failure is classed, from canned HTTP answers (no server): throttling,
//! server faults (with or without an error code) and write conflicts are transient, so
//! `Error::is_retryable()` is true and a caller that dead-letters permanent errors keeps
//! the event; validation, permission and missing-table errors are permanent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::test_util::infallible_client_fn;
use idem_core::store::StoreErrorKind;
use idem_core::testkit::{attempt, begin_at, T0};
use idem_core::{Call, Engine, Error, Store};
use idem_dynamo::DynamoStore;

/// A store whose every request gets `status` with `body` back.
fn store_answering(status: u16, error_type: Option<&'static str>) -> DynamoStore {
    let http = infallible_client_fn(move |_request| {
        let body = match error_type {
            Some(kind) => format!(
                r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"canned"}}"#
            ),
            None => String::new(),
        };
        http::Response::builder()
            .status(status)
            .header("content-type", "application/x-amz-json-1.0")
            .body(body)
            .unwrap()
    });
    let config = idem_dynamo::local_config("http://127.0.0.1:1")
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .build();
    DynamoStore::builder(Client::from_conf(config), "idem").build_unchecked()
}

const TRANSIENT: &[(u16, Option<&str>)] = &[
    (500, None),
    (502, None),
    (503, None),
    (500, Some("InternalFailure")),
    (500, Some("InternalServerError")),
    (503, Some("ServiceUnavailable")),
    (400, Some("ThrottlingException")),
    (400, Some("ProvisionedThroughputExceededException")),
    (400, Some("RequestLimitExceeded")),
    (400, Some("LimitExceededException")),
    (400, Some("TransactionConflictException")),
    (400, Some("ReplicatedWriteConflictException")),
];

const PERMANENT: &[(u16, Option<&str>)] = &[
    (400, Some("ValidationException")),
    (400, Some("AccessDeniedException")),
    (400, Some("ResourceNotFoundException")),
    (400, Some("UnrecognizedClientException")),
    (400, None),
    (403, None),
];

async fn kind_of_each_write(store: &DynamoStore) -> Vec<(&'static str, StoreErrorKind)> {
    let id = idem_core::testkit::test_id("tests::classes#0");
    let held = attempt(&id, "a", 1);
    vec![
        (
            "begin",
            store
                .begin(&begin_at(&id, "a", T0, None))
                .await
                .unwrap_err()
                .kind(),
        ),
        (
            "complete",
            store
                .complete(
                    &held,
                    &idem_core::testkit::completion_at(
                        T0,
                        idem_core::store::Outcome::Ok,
                        Some("1"),
                    ),
                )
                .await
                .unwrap_err()
                .kind(),
        ),
        (
            "extend",
            store
                .extend(&held, &idem_core::testkit::renewal_at(T0))
                .await
                .unwrap_err()
                .kind(),
        ),
        ("release", store.release(&held).await.unwrap_err().kind()),
        ("read", store.read(&id).await.unwrap_err().kind()),
    ]
}

#[tokio::test]
async fn throttling_server_faults_and_write_conflicts_are_transient() {
    for &(status, code) in TRANSIENT {
        for (operation, kind) in kind_of_each_write(&store_answering(status, code)).await {
            assert_eq!(
                kind,
                StoreErrorKind::Transient,
                "{operation}: {status} {code:?}"
            );
        }
    }
}

#[tokio::test]
async fn validation_permission_and_missing_table_errors_are_permanent() {
    for &(status, code) in PERMANENT {
        for (operation, kind) in kind_of_each_write(&store_answering(status, code)).await {
            assert_eq!(
                kind,
                StoreErrorKind::Permanent,
                "{operation}: {status} {code:?}"
            );
        }
    }
}

/// Through the engine: a transient failure before the body is retryable, and the body
/// did not run.
#[tokio::test]
async fn a_server_fault_before_the_body_is_retryable() {
    let engine = Engine::new(store_answering(500, Some("InternalFailure")));
    let ran = Arc::new(AtomicBool::new(false));
    let result = Call::new("tests::classes", "k")
        .engine(&engine)
        .run(|_| {
            let ran = ran.clone();
            async move {
                ran.store(true, Ordering::SeqCst);
                Ok::<_, Error>(())
            }
        })
        .await;
    let error = result.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(!ran.load(Ordering::SeqCst));
}
