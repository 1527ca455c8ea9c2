//! The journal of steps as DynamoDB items, on both local servers: what the conformance
//! suite cannot see through the `Store` trait (the attributes as stored, items written
//! before steps existed, the item size limit) and what it does not exercise (a refused
//! journal write bringing the steps, a journal write sent twice, the engine's requests
//! per step).
//!
//! Mutations these tests and the conformance suite were run against (each failed them,
//! on dynalite and on moto): the journal's condition without the fence
//! (`stale_journal_refused` and the refused-journal case here fail); complete without
//! `REMOVE steps` (`complete_empties_the_journal`, `model_sequences`); decoding that
//! keeps a name's first entry instead of its last (`journal_writes_steps_by_name`,
//! `model_sequences`); the takeover removing `steps` (`journal_survives_takeover`,
//! `model_sequences`).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use common::{client, ensure_table, store, unique_table, Server};
use idem_core::store::{Codec, Outcome, State, StepRecord, Store, StoreErrorKind, Written};
use idem_core::testkit::{attempt, begin_at, completion_at, fresh_id, T0};
use idem_core::{Call, EngineBuilder, Error, ManualClock};
use idem_dynamo::testkit::RequestCounter;
use idem_dynamo::{AttributeNames, DynamoStore};
use tokio::sync::Notify;

fn value(name: &str, json: &str) -> StepRecord {
    StepRecord {
        name: name.to_owned(),
        outcome: Some(Outcome::Ok),
        data: Some(json.as_bytes().to_vec().into()),
        codec: Codec::Json,
    }
}

fn bytes(name: &str, data: Vec<u8>) -> StepRecord {
    StepRecord {
        name: name.to_owned(),
        outcome: Some(Outcome::Ok),
        data: Some(data.into()),
        codec: Codec::Bytes,
    }
}

/// The item of `id` as stored, by a raw consistent GetItem.
async fn raw_item(
    store: &DynamoStore,
    id: &idem_core::RecordId,
) -> HashMap<String, AttributeValue> {
    store
        .client()
        .get_item()
        .table_name(store.table())
        .key(&store.names().id, AttributeValue::S(id.to_string()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("the item exists")
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Puts an item as the version before steps wrote it: no `steps` attribute.
async fn put_old_item(store: &DynamoStore, id: &idem_core::RecordId, completed: bool) {
    let mut put = store
        .client()
        .put_item()
        .table_name(store.table())
        .item("id", s(&id.to_string()))
        .item("owner", s(&idem_core::testkit::owner("a").to_string()))
        .item("fence", n(3))
        .item("in_progress_expiration", n(T0 + 30_000))
        .item("expiration", n(T0 / 1000 + 3_600));
    put = if completed {
        put.item("status", s("COMPLETED"))
            .item("outcome", s("ok"))
            .item("data", s("\"done\""))
            .item("format", n(1))
            .item("codec", s("json"))
    } else {
        put.item("status", s("INPROGRESS"))
    };
    put.send().await.expect("PutItem");
}

/// A record written before steps existed reads with an empty journal, and its holder
/// journals into it (the first write creates the list).
async fn an_item_without_steps_reads_as_an_empty_journal_and_takes_one(server: Server) {
    let store = store(server, &unique_table("journal-old"), None).await;
    let done = fresh_id("old-completed");
    put_old_item(&store, &done, true).await;
    let record = store.read(&done).await.unwrap().unwrap();
    assert_eq!((record.state, record.steps.len()), (State::Completed, 0));

    let id = fresh_id("old-in-progress");
    put_old_item(&store, &id, false).await;
    let record = store.read(&id).await.unwrap().unwrap();
    assert_eq!((record.state, record.fence), (State::InProgress, 3));
    assert_eq!(record.steps, Vec::new());
    let step = value("charge", "{\"id\":\"ch_1\"}");
    assert_eq!(
        store.journal(&attempt(&id, "a", 3), &step).await.unwrap(),
        Written::Applied(())
    );
    assert_eq!(store.read(&id).await.unwrap().unwrap().steps, vec![step]);
}

/// Entries are stored natively: JSON as a string, bytes (not UTF-8 here) as Binary, a
/// started entry with neither outcome nor data; an unknown codec's name is kept.
async fn steps_are_stored_natively(server: Server) {
    let store = store(server, &unique_table("journal-native"), None).await;
    let id = fresh_id("native");
    let fence = match store.begin(&begin_at(&id, "a", T0, None)).await.unwrap() {
        Written::Applied(fence) => fence,
        other => panic!("{other:?}"),
    };
    let holder = attempt(&id, "a", fence);
    let raw = bytes("render", vec![0xff, 0x00, 0xfe]);
    let foreign = StepRecord {
        name: "ünïcode step: \"quoted\"".into(),
        outcome: Some(Outcome::Err),
        data: Some(vec![0x81, 0x01].into()),
        codec: Codec::from_stored("cbor"),
    };
    let steps = [
        value("charge", "{\"id\":\"ch_1\"}"),
        raw.clone(),
        StepRecord::started("mail"),
        foreign.clone(),
    ];
    for step in &steps {
        assert_eq!(
            store.journal(&holder, step).await.unwrap(),
            Written::Applied(())
        );
    }
    assert_eq!(store.read(&id).await.unwrap().unwrap().steps, steps);
    let item = raw_item(&store, &id).await;
    let entries = item["steps"].as_l().expect("steps is a list");
    let entry = |i: usize| entries[i].as_m().expect("an entry is a map");
    assert_eq!(entry(0)["n"], s("charge"));
    assert_eq!(entry(0)["o"], s("ok"));
    assert_eq!(entry(0)["c"], s("json"));
    assert_eq!(entry(0)["d"], s("{\"id\":\"ch_1\"}"));
    assert_eq!(
        entry(1)["d"],
        AttributeValue::B(Blob::new(vec![0xff, 0x00, 0xfe]))
    );
    assert_eq!(entry(1)["c"], s("bytes"));
    assert_eq!(
        entry(2)
            .keys()
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>(),
        ["c", "n"].into(),
        "a started entry has no outcome and no data"
    );
    assert_eq!(entry(3)["c"], s("cbor"));
    assert_eq!(entry(3)["o"], s("err"));
}

/// A journal write refused (a stale fence) brings the current record with its steps;
/// a write sent twice (its answer lost, the SDK retried it) reads as one entry.
async fn a_refused_journal_brings_the_steps_and_a_resent_one_is_one_entry(server: Server) {
    let store = store(server, &unique_table("journal-refused"), None).await;
    let id = fresh_id("refused");
    let fence = match store.begin(&begin_at(&id, "a", T0, None)).await.unwrap() {
        Written::Applied(fence) => fence,
        other => panic!("{other:?}"),
    };
    let holder = attempt(&id, "a", fence);
    let s1 = value("s1", "1");
    let s2 = bytes("s2", vec![1, 2, 3]);
    for step in [&s1, &s2, &s1] {
        assert_eq!(
            store.journal(&holder, step).await.unwrap(),
            Written::Applied(())
        );
    }
    let stale = attempt(&id, "a", fence + 1);
    match store.journal(&stale, &value("s3", "3")).await.unwrap() {
        Written::Refused(Some(record)) => {
            assert_eq!(record.steps, vec![s1.clone(), s2.clone()]);
            assert_eq!(
                (record.owner, record.fence),
                (idem_core::testkit::owner("a"), fence)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.read(&id).await.unwrap().unwrap().steps,
        vec![s1, s2],
        "the refused write changed nothing; the resent s1 is one entry, in its place"
    );
}

/// A journal write that would take the item past DynamoDB's 400 KB is a permanent
/// store error that says the journal is too large; the record is left as it was, and
/// its completion (which drops the journal) still applies.
async fn a_journal_past_the_item_size_is_a_clear_permanent_error(server: Server) {
    let store = store(server, &unique_table("journal-size"), None).await;
    let id = fresh_id("size");
    let fence = match store.begin(&begin_at(&id, "a", T0, None)).await.unwrap() {
        Written::Applied(fence) => fence,
        other => panic!("{other:?}"),
    };
    let holder = attempt(&id, "a", fence);
    // 100 KB steps until one is refused: DynamoDB and dynalite count the item as the
    // write would leave it (the 4th fits, the 5th does not); moto counts the old value
    // of the attribute beside the new one, so it refuses the 3rd already. JSON (a
    // string attribute), since moto sizes Binary by its base64 text.
    let text = format!("\"{}\"", "x".repeat(100_000));
    let big = |i: usize| value(&format!("step-{i}"), &text);
    let mut written = Vec::new();
    let error = loop {
        let step = big(written.len());
        match store.journal(&holder, &step).await {
            Ok(applied) => assert_eq!(applied, Written::Applied(())),
            Err(error) => break error,
        }
        written.push(step);
        assert!(written.len() < 5, "a journal of 500 KB was accepted");
    };
    assert!(written.len() >= 2, "{} steps journaled", written.len());
    assert_eq!(error.kind(), StoreErrorKind::Permanent, "{error}");
    let message = error.to_string();
    assert!(
        message.contains("journal")
            && message.contains("too large")
            && message.contains(&id.to_string()),
        "{message}"
    );
    let record = store.read(&id).await.unwrap().unwrap();
    assert_eq!(
        record.steps, written,
        "the refused step left the record as it was"
    );
    let done = completion_at(T0 + 1, Outcome::Ok, Some("\"done\""));
    assert_eq!(
        store.complete(&holder, &done).await.unwrap(),
        Written::Applied(())
    );
    let record = store.read(&id).await.unwrap().unwrap();
    assert_eq!((record.state, record.steps.len()), (State::Completed, 0));
    assert!(!raw_item(&store, &id).await.contains_key("steps"));
}

/// A renamed journal attribute (`AttributeNames::steps`) is where the journal goes.
async fn the_journal_attribute_is_renamed_as_configured(server: Server) {
    let builder = DynamoStore::builder(client(server, None), unique_table("journal-renamed"))
        .names(AttributeNames {
            steps: "journal".into(),
            ..AttributeNames::default()
        })
        .check_ttl(false);
    ensure_table(&builder).await;
    let store = builder.build().await.unwrap();
    let id = fresh_id("renamed");
    store.begin(&begin_at(&id, "a", T0, None)).await.unwrap();
    let step = value("s1", "1");
    store.journal(&attempt(&id, "a", 1), &step).await.unwrap();
    let item = raw_item(&store, &id).await;
    assert!(item.contains_key("journal") && !item.contains_key("steps"));
    assert_eq!(store.read(&id).await.unwrap().unwrap().steps, vec![step]);
}

macro_rules! on_both_servers {
    ($($case:ident),* $(,)?) => {
        mod dynalite {
            use super::*;
            $(
                #[tokio::test]
                #[ignore = "needs the local DynamoDB servers that scripts/test starts"]
                async fn $case() {
                    super::$case(Server::Dynalite).await
                }
            )*
        }
        mod moto {
            use super::*;
            $(
                #[tokio::test]
                #[ignore = "needs the local DynamoDB servers that scripts/test starts"]
                async fn $case() {
                    super::$case(Server::Moto).await
                }
            )*
        }
    };
}

on_both_servers!(
    an_item_without_steps_reads_as_an_empty_journal_and_takes_one,
    steps_are_stored_natively,
    a_refused_journal_brings_the_steps_and_a_resent_one_is_one_entry,
    a_journal_past_the_item_size_is_a_clear_permanent_error,
    the_journal_attribute_is_renamed_as_configured,
);

/// Through the engine on dynalite: one UpdateItem per step, and a crash after the
/// first step leaves it journaled, so the next attempt (after the lease lapsed) replays
/// it without running it and runs only the second.
#[tokio::test]
#[ignore = "needs the local DynamoDB servers that scripts/test starts"]
async fn one_request_per_step_and_a_crash_keeps_the_finished_step() {
    let counter = RequestCounter::new();
    let store = store(
        Server::Dynalite,
        &unique_table("journal-engine"),
        Some(&counter),
    )
    .await;
    let clock = ManualClock::default();
    let engine = EngineBuilder::from_arc(Arc::new(store))
        .clock(clock.clone())
        .lease(Duration::from_secs(30))
        .build()
        .unwrap();
    let runs = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let body = |ctx: idem_core::Context,
                runs: Arc<[AtomicUsize; 2]>,
                crash: Option<Arc<Notify>>| async move {
        let first: u32 = ctx
            .step("first", async {
                runs[0].fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(1)
            })
            .await?;
        if let Some(crashed) = crash {
            crashed.notify_one();
            std::future::pending::<()>().await;
        }
        let second: u32 = ctx
            .step("second", async {
                runs[1].fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(2)
            })
            .await?;
        Ok::<_, Error>(first + second)
    };

    counter.reset();
    let value = Call::new("journal", "clean")
        .engine(&engine)
        .run(|ctx| body(ctx, runs.clone(), None))
        .await
        .unwrap();
    assert_eq!(value, 3);
    assert_eq!(
        counter.counts(),
        [("UpdateItem".to_owned(), 4)].into(),
        "begin, two journal writes, complete: no read for an attempt with fence 1"
    );

    let runs = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let crashed = Arc::new(Notify::new());
    let task = {
        let (engine, runs, crashed) = (engine.clone(), runs.clone(), crashed.clone());
        tokio::spawn(async move {
            Call::new("journal", "crash")
                .engine(&engine)
                .max_duration(Duration::from_millis(1)) // no heartbeat
                .run(|ctx| body(ctx, runs, Some(crashed)))
                .await
        })
    };
    crashed.notified().await;
    task.abort();
    let _ = task.await;
    clock.advance(Duration::from_secs(31));
    let value = Call::new("journal", "crash")
        .engine(&engine)
        .run(|ctx| body(ctx, runs.clone(), None))
        .await
        .unwrap();
    assert_eq!(value, 3);
    assert_eq!(
        [
            runs[0].load(Ordering::SeqCst),
            runs[1].load(Ordering::SeqCst)
        ],
        [1, 1],
        "the journaled first step did not run again"
    );
}
