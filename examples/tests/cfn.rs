//! The CloudFormation custom-resource handler, driven with fixture events (duplicates
//! included) on the in-memory store (`cfn_dynamo.rs` runs it on DynamoDB). The
//! responses go to a local HTTP listener standing in for CloudFormation's presigned URL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{fixture, handler, lifecycle_with_duplicates, Responses};
use idem::store::Store;
use idem::{Engine, EngineBuilder, MemoryStore};
use idem_core::testkit::{Fault, FaultyStore, Operation};
use idem_examples::cfn::{Cloud, Unanswered};

fn install_memory() {
    // Every test of this binary may install; the first engine serves all (their
    // request ids differ).
    let _ = Engine::new(MemoryStore::new()).install();
}

#[tokio::test]
async fn duplicates_on_the_in_memory_store() {
    install_memory();
    lifecycle_with_duplicates("memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_duplicate_waits_for_the_creation_and_answers_too() {
    install_memory();
    let responses = Responses::default();
    let url = responses.listen().await;
    let cloud = Arc::new(Cloud::with_latency(Duration::from_millis(300)));
    let handler = handler(cloud.clone(), Duration::from_secs(5));
    let (a, b) = tokio::join!(
        handler.handle(fixture("create", &url, "concurrent", "")),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            handler
                .handle(fixture("create", &url, "concurrent", ""))
                .await
        }
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(cloud.created(), 1);
    let sent = responses.all();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[0].1["PhysicalResourceId"],
        sent[1].1["PhysicalResourceId"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_whose_wait_runs_out_is_not_answered_so_lambda_retries_it() {
    install_memory();
    let responses = Responses::default();
    let url = responses.listen().await;
    let cloud = Arc::new(Cloud::with_latency(Duration::from_millis(600)));
    let handler = handler(cloud.clone(), Duration::from_millis(100));
    let (first, duplicate) =
        tokio::join!(handler.handle(fixture("create", &url, "slow", "")), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            handler.handle(fixture("create", &url, "slow", "")).await
        });
    first.unwrap();
    assert!(
        matches!(duplicate, Err(Unanswered::InProgress(_))),
        "{duplicate:?}"
    );
    assert_eq!(responses.all().len(), 1, "only the first answered");
    // Lambda's retry of the duplicate replays the creation and answers.
    handler
        .handle(fixture("create", &url, "slow", ""))
        .await
        .unwrap();
    assert_eq!(responses.all().len(), 2);
    assert_eq!(cloud.created(), 1);
}

#[tokio::test]
async fn a_bad_size_is_answered_as_failed() {
    install_memory();
    let responses = Responses::default();
    let url = responses.listen().await;
    let cloud = Arc::new(Cloud::default());
    let handler = handler(cloud.clone(), Duration::from_secs(1));
    let mut request = fixture("create", &url, "bad-size", "");
    if let aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest::Create(
        create,
    ) = &mut request
    {
        create.resource_properties.size = "three".into();
    }
    handler.handle(request).await.unwrap();
    let sent = responses.all();
    assert_eq!(sent[0].1["Status"], "FAILED");
    assert!(sent[0].1["Reason"].as_str().unwrap().contains("three"));
    assert_eq!(cloud.created(), 0);
}

/// A throttled store before the body ran is not the resource's failure: no FAILED is
/// sent, the error is retryable, and Lambda's retry answers SUCCESS.
#[tokio::test]
async fn a_throttle_before_the_body_leaves_the_request_unanswered_for_a_retry() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let engine = EngineBuilder::from_arc(store.clone()).build().unwrap();
    let responses = Responses::default();
    let url = responses.listen().await;
    let cloud = Arc::new(Cloud::default());
    let handler = handler(cloud.clone(), Duration::from_secs(1));
    store.inject_times(Operation::Begin, Fault::Transient, 1);
    let first = engine
        .scope(handler.handle(fixture("create", &url, "throttled", "")))
        .await;
    match &first {
        Err(Unanswered::Undecided { error, .. }) => assert!(error.is_retryable(), "{error}"),
        other => panic!("expected an undecided creation, got {other:?}"),
    }
    assert!(responses.all().is_empty(), "nothing was answered");
    assert_eq!(cloud.created(), 0);
    engine
        .scope(handler.handle(fixture("create", &url, "throttled", "")))
        .await
        .unwrap();
    assert_eq!(responses.all()[0].1["Status"], "SUCCESS");
    assert_eq!(cloud.created(), 1);
}

/// A lease lost mid-creation (here: the record deleted under the body) is not the
/// resource's failure either: the attempt that holds the key answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_is_not_answered_as_failed() {
    let store = Arc::new(MemoryStore::new());
    let engine = EngineBuilder::from_arc(store.clone()).build().unwrap();
    let responses = Responses::default();
    let url = responses.listen().await;
    let cloud = Arc::new(Cloud::with_latency(Duration::from_millis(300)));
    let handler = handler(cloud.clone(), Duration::from_secs(1));
    let id = engine.record_id("cfn::create_group", "lost-lease").unwrap();
    let (result, ()) = tokio::join!(
        engine.scope(handler.handle(fixture("create", &url, "lost-lease", ""))),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            store.delete(&id).await.unwrap();
        }
    );
    match &result {
        Err(Unanswered::Undecided {
            error: idem::Error::LeaseLost { .. },
            ..
        }) => {}
        other => panic!("expected a lost lease, got {other:?}"),
    }
    assert!(responses.all().is_empty(), "no FAILED was sent");
}
