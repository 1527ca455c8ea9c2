//! The CloudFormation custom-resource handler, driven with fixture events (duplicates
//! included) on the in-memory store (`cfn_dynamo.rs` runs it on DynamoDB). The
//! responses go to a local HTTP listener standing in for CloudFormation's presigned URL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{fixture, handler, lifecycle_with_duplicates, Responses};
use idem::{Engine, MemoryStore};
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
