//! On moto (full API, the old item on conflict): table setup and TTL, the size limits,
//! malformed records, and what each call costs in requests.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use common::{client, store, unique_table, Server};
use idem_core::{Call, EngineBuilder, Error, ManualClock, Store};
use idem_dynamo::testkit::RequestCounter;
use idem_dynamo::{DynamoStore, SetupError, TtlSetup};
use tokio::sync::Notify;

#[tokio::test]
#[ignore = "needs the local DynamoDB servers that scripts/test starts"]
async fn create_table_enables_ttl_and_build_checks_it() {
    let table = unique_table("ttl");
    let builder = DynamoStore::builder(client(Server::Moto, None), &table);
    assert_eq!(builder.create_table().await.unwrap(), TtlSetup::Enabled);
    let ttl = client(Server::Moto, None)
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let description = ttl.time_to_live_description().unwrap();
    assert_eq!(description.attribute_name(), Some("expiration"));
    builder
        .clone()
        .build()
        .await
        .expect("schema and TTL are right");
    assert!(matches!(
        builder.create_table().await,
        Err(SetupError::TableExists { .. })
    ));
}

async fn raw_table(table: &str, key: &str, key_type: ScalarAttributeType) {
    client(Server::Moto, None)
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(key_type)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs the local DynamoDB servers that scripts/test starts"]
async fn misconfigured_tables_are_clear_errors_at_start_up() {
    let missing = DynamoStore::builder(client(Server::Moto, None), unique_table("missing"))
        .build()
        .await;
    match missing {
        Err(error @ SetupError::TableMissing { .. }) => {
            assert!(error.to_string().contains("does not exist"))
        }
        other => panic!("expected TableMissing, got {other:?}"),
    }

    let numeric = unique_table("numeric");
    raw_table(&numeric, "id", ScalarAttributeType::N).await;
    let wrong_type = DynamoStore::builder(client(Server::Moto, None), &numeric)
        .build()
        .await;
    match wrong_type {
        Err(error @ SetupError::KeySchema { .. }) => {
            assert!(error.to_string().contains("[id HASH N]"), "{error}");
            assert!(error.to_string().contains("[id HASH S]"), "{error}");
        }
        other => panic!("expected KeySchema, got {other:?}"),
    }
    let sorted = DynamoStore::builder(client(Server::Moto, None), &numeric)
        .sort_key("sort_key", "p")
        .build()
        .await;
    assert!(
        matches!(sorted, Err(SetupError::KeySchema { .. })),
        "{sorted:?}"
    );

    let no_ttl = unique_table("nottl");
    raw_table(&no_ttl, "id", ScalarAttributeType::S).await;
    let checked = DynamoStore::builder(client(Server::Moto, None), &no_ttl)
        .build()
        .await;
    assert!(
        matches!(checked, Err(SetupError::TtlDisabled { .. })),
        "{checked:?}"
    );
    DynamoStore::builder(client(Server::Moto, None), &no_ttl)
        .check_ttl(false)
        .build()
        .await
        .expect("the TTL check can be turned off");
}

#[tokio::test]
#[ignore = "needs the local DynamoDB servers that scripts/test starts"]
async fn values_up_to_the_limit_are_recorded_larger_ones_are_not_stored() {
    let table = unique_table("sizes");
    let store = store(Server::Moto, &table, None).await;
    let limit = store.limits().max_data_bytes;
    let engine = EngineBuilder::from_arc(Arc::new(store)).build().unwrap();
    let runs = AtomicUsize::new(0);
    let body = |len: usize| {
        let runs = &runs;
        move |_| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>("x".repeat(len))
        }
    };
    // JSON adds two quotes: this value encodes to exactly the limit.
    let at_limit = Call::new("sizes", "fits")
        .engine(&engine)
        .run(body(limit - 2))
        .await
        .unwrap();
    let replayed = Call::new("sizes", "fits")
        .engine(&engine)
        .run(body(1))
        .await
        .unwrap();
    assert_eq!(
        replayed.len(),
        at_limit.len(),
        "a value at the limit is recorded and replayed"
    );

    let big = Call::new("sizes", "too-big")
        .engine(&engine)
        .run(body(limit))
        .await
        .unwrap();
    assert_eq!(big.len(), limit, "the first call gets its value");
    let duplicate = Call::new("sizes", "too-big")
        .engine(&engine)
        .run(body(1))
        .await;
    assert!(
        matches!(duplicate, Err(Error::ResultNotStored { .. })),
        "{duplicate:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
#[ignore = "needs the local DynamoDB servers that scripts/test starts"]
async fn an_id_too_long_for_the_key_is_refused_before_any_request() {
    let counter = RequestCounter::new();
    let store = store(Server::Moto, &unique_table("ids"), Some(&counter)).await;
    let engine = EngineBuilder::from_arc(Arc::new(store)).build().unwrap();
    counter.reset();
    let long = Call::new("n".repeat(2000), "k")
        .engine(&engine)
        .run(|_| async { Ok::<_, Error>(1u8) })
        .await;
    assert!(matches!(long, Err(Error::InvalidKey { .. })), "{long:?}");
    assert_eq!(counter.total(), 0);
}

fn item(pairs: &[(&str, AttributeValue)]) -> std::collections::HashMap<String, AttributeValue> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[tokio::test]
#[ignore = "needs the local DynamoDB servers that scripts/test starts"]
async fn malformed_and_newer_records_are_decode_errors_and_the_body_never_runs() {
    let table = unique_table("malformed");
    let store = store(Server::Moto, &table, None).await;
    let engine = EngineBuilder::from_arc(Arc::new(store)).build().unwrap();
    let id = |key: &str| engine.record_id("bad", key).unwrap();
    let far = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600)
        .to_string();
    let n = |v: &str| AttributeValue::N(v.into());
    let s = |v: &str| AttributeValue::S(v.into());
    let records = [
        (
            "unknown-state",
            item(&[
                ("status", s("PENDING")),
                ("owner", s("o")),
                ("fence", n("1")),
                ("in_progress_expiration", n("0")),
                ("expiration", n(&far)),
                ("format", n("1")),
                ("codec", s("json")),
            ]),
        ),
        (
            "newer-format",
            item(&[
                ("status", s("COMPLETED")),
                ("owner", s("o")),
                ("fence", n("1")),
                ("in_progress_expiration", n("0")),
                ("expiration", n(&far)),
                ("format", n("9")),
                ("codec", s("json")),
                ("outcome", s("ok")),
                ("data", s("1")),
            ]),
        ),
        (
            "fence-not-a-number",
            item(&[
                ("status", s("COMPLETED")),
                ("owner", s("o")),
                ("fence", s("one")),
                ("in_progress_expiration", n("0")),
                ("expiration", n(&far)),
                ("format", n("1")),
                ("codec", s("json")),
            ]),
        ),
    ];
    let runs = AtomicUsize::new(0);
    for (key, mut record) in records {
        record.insert("id".into(), s(&id(key).to_string()));
        client(Server::Moto, None)
            .put_item()
            .table_name(&table)
            .set_item(Some(record))
            .send()
            .await
            .unwrap();
        let result = Call::new("bad", key)
            .engine(&engine)
            .run(|_| async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(1u8)
            })
            .await;
        assert!(
            matches!(result, Err(Error::Decode { .. })),
            "{key}: {result:?}"
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
#[ignore = "needs the local DynamoDB servers that scripts/test starts"]
async fn request_counts_with_the_old_item_on_conflict() {
    let counter = RequestCounter::new();
    let store = store(Server::Moto, &unique_table("counts"), Some(&counter)).await;
    let clock = ManualClock::default();
    let engine = EngineBuilder::from_arc(Arc::new(store))
        .clock(clock.clone())
        .lease(Duration::from_secs(30))
        .build()
        .unwrap();

    counter.reset();
    Call::new("counts", "a")
        .engine(&engine)
        .run(|_| async { Ok::<_, Error>(1u8) })
        .await
        .unwrap();
    assert_eq!(
        counter.counts(),
        [("UpdateItem".to_owned(), 2)].into(),
        "a first call: begin and complete"
    );

    counter.reset();
    Call::new("counts", "a")
        .engine(&engine)
        .run(|_| async { Ok::<_, Error>(2u8) })
        .await
        .unwrap();
    assert_eq!(
        counter.total(),
        1,
        "a duplicate of a completed call: one refused begin, with the old item"
    );

    // While a call holds the key, a duplicate costs one request too.
    counter.reset();
    let (started, duplicate_done) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let holder = {
        let (engine, clock, counter) = (engine.clone(), clock.clone(), counter.clone());
        let (started, duplicate_done) = (started.clone(), duplicate_done.clone());
        tokio::spawn(async move {
            Call::new("counts", "b")
                .engine(&engine)
                .run(|_| async move {
                    started.notify_one();
                    duplicate_done.notified().await;
                    // Run past a third of the lease, three times: each adds one extend.
                    for beat in 1..=3 {
                        clock.advance(Duration::from_secs(10));
                        // begin + the duplicate's begin + `beat` extends.
                        while counter.total() < 2 + beat {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                    Ok::<_, Error>(3u8)
                })
                .await
        })
    };
    started.notified().await;
    assert_eq!(counter.total(), 1, "the holder's begin");
    let busy = Call::new("counts", "b")
        .engine(&engine)
        .run(|_| async { Ok::<_, Error>(0u8) })
        .await;
    assert!(matches!(busy, Err(Error::InProgress { .. })), "{busy:?}");
    assert_eq!(
        counter.total(),
        2,
        "a duplicate of an in-progress call: one refused begin"
    );
    duplicate_done.notify_one();
    assert_eq!(holder.await.unwrap().unwrap(), 3);
    // begin + the duplicate's begin + 3 extends + complete: heartbeats and nothing else.
    assert_eq!(counter.counts(), [("UpdateItem".to_owned(), 6)].into());
}
