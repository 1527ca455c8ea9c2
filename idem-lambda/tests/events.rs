//! Fixture events (as Lambda sends them) through each helper on the in-memory store:
//! which messages run, in what order, and which the response names for redelivery;
//! then the same event delivered again.

use std::sync::Mutex;

use aws_lambda_events::event::kafka::KafkaEvent;
use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use idem_core::{BatchOutcome, Engine, Error, MemoryStore};
use serde_json::{json, Value};

fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn body_field(body: &Option<String>, field: &str) -> String {
    let body: Value = serde_json::from_str(body.as_deref().unwrap()).unwrap();
    body[field].as_str().unwrap().to_owned()
}

fn failures(response: impl serde::Serialize) -> Vec<String> {
    let response = serde_json::to_value(response).unwrap();
    response["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|failure| failure["itemIdentifier"].as_str().unwrap().to_owned())
        .collect()
}

const SQS_ID: &str = "0c9f2a6e-0000-4000-8000-00000000000";

/// A standard queue keyed on the order in the body: the failed message is named, the
/// second message for the same order runs nothing and is reported as its first is; the
/// same event again runs only the failed message.
#[tokio::test]
async fn sqs_names_the_failed_message_and_a_repeat_follows_its_first() {
    let engine = Engine::new(MemoryStore::new());
    let event: SqsEvent = fixture("sqs.json");
    let ran = Mutex::new(Vec::new());
    let deliver = |fail: &'static str| {
        let (engine, ran, event) = (&engine, &ran, &event);
        async move {
            let outcomes =
                idem_lambda::sqs::batch("orders::ship", event, |m| body_field(&m.body, "order"))
                    .engine(engine)
                    .run(|_, message| async move {
                        let order = body_field(&message.body, "order");
                        ran.lock().unwrap().push(order.clone());
                        match order == fail {
                            true => Err(Error::Config("the warehouse is closed".into())),
                            false => Ok(order),
                        }
                    })
                    .await;
            idem_lambda::sqs::response(event, &outcomes)
        }
    };
    let response = deliver("A-2").await;
    assert_eq!(failures(&response), [format!("{SQS_ID}2")]);
    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": format!("{SQS_ID}2")}]})
    );
    let mut first: Vec<String> = std::mem::take(&mut *ran.lock().unwrap());
    first.sort();
    assert_eq!(first, ["A-1", "A-2", "A-4"], "A-1 ran once, its repeat not");
    // Delivered again (the failed message with the rest, as a retry after a timeout
    // would): only A-2 runs, and nothing is reported.
    assert!(failures(deliver("none").await).is_empty());
    assert_eq!(*ran.lock().unwrap(), ["A-2"]);
}

/// A repeat of a message whose body failed is reported too.
#[tokio::test]
async fn sqs_reports_the_repeat_of_a_failed_message() {
    let engine = Engine::new(MemoryStore::new());
    let event: SqsEvent = fixture("sqs.json");
    let outcomes =
        idem_lambda::sqs::batch("orders::ship", &event, |m| body_field(&m.body, "order"))
            .engine(&engine)
            .run(|_, message| async move {
                match body_field(&message.body, "order").as_str() {
                    "A-1" => Err(Error::Config("refused".into())),
                    _ => Ok(()),
                }
            })
            .await;
    assert!(matches!(outcomes[2], BatchOutcome::Repeated { first: 0 }));
    assert_eq!(
        failures(idem_lambda::sqs::response(&event, &outcomes)),
        [format!("{SQS_ID}1"), format!("{SQS_ID}3")]
    );
}

/// The same message twice in one event (a standard queue may deliver it so), its body
/// failing: it runs once and is reported once. (Review of #28: the identifier was listed
/// twice. Mutation tried: no deduplication: this test fails.)
#[tokio::test]
async fn sqs_reports_a_message_delivered_twice_in_one_event_once() {
    let engine = Engine::new(MemoryStore::new());
    let mut event: SqsEvent = fixture("sqs.json");
    let twice = event.records[0].clone();
    event.records.push(twice);
    let runs = Mutex::new(0);
    let outcomes = idem_lambda::sqs::batch("orders::ship", &event, |m| m.message_id.clone())
        .engine(&engine)
        .run(|_, message| {
            *runs.lock().unwrap() += 1;
            let fail = message.message_id == event.records[0].message_id;
            async move {
                match fail {
                    true => Err(Error::Config("refused".into())),
                    false => Ok(()),
                }
            }
        })
        .await;
    assert_eq!(*runs.lock().unwrap(), event.records.len() - 1);
    assert_eq!(
        failures(idem_lambda::sqs::response(&event, &outcomes)),
        [format!("{SQS_ID}1")]
    );
}

/// A FIFO queue: a group runs in delivery order and stops at its first failure, the
/// rest of the group is reported without running; the other group goes on. Delivered
/// again, the group resumes where it stopped.
#[tokio::test]
async fn sqs_fifo_stops_a_group_at_its_first_failure() {
    let engine = Engine::new(MemoryStore::new());
    let event: SqsEvent = fixture("sqs_fifo.json");
    let ran = Mutex::new(Vec::new());
    let deliver = |fail: &'static str| {
        let (engine, ran, event) = (&engine, &ran, &event);
        async move {
            let outcomes = idem_lambda::sqs::batch("orders::fifo", event, |m| m.message_id.clone())
                .engine(engine)
                .run(|_, message| async move {
                    let order = body_field(&message.body, "order");
                    // The first of a group is the slowest: a later one would overtake it.
                    if order == "a" {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    ran.lock().unwrap().push(order.clone());
                    match order == fail {
                        true => Err(Error::Config("refused".into())),
                        false => Ok(()),
                    }
                })
                .await;
            idem_lambda::sqs::response(event, &outcomes)
        }
    };
    // Messages 1, 3, 4 are group g1 (orders a, b, c); 2, 5 are g2 (d, e).
    assert_eq!(
        failures(deliver("b").await),
        [format!("{SQS_ID}3"), format!("{SQS_ID}4")]
    );
    let order: Vec<String> = std::mem::take(&mut *ran.lock().unwrap());
    let at = |name: &str| order.iter().position(|o| o == name);
    assert!(at("a") < at("b"), "{order:?}");
    assert!(at("d") < at("e"), "{order:?}");
    assert_eq!(at("c"), None, "c waits for b: {order:?}");
    assert!(failures(deliver("none").await).is_empty());
    assert_eq!(*ran.lock().unwrap(), ["b", "c"]);
}

/// A message without a messageId that must be reported is reported with an empty
/// identifier: Lambda fails the whole batch rather than lose it.
#[tokio::test]
async fn sqs_a_failed_message_without_id_fails_the_whole_batch() {
    let engine = Engine::new(MemoryStore::new());
    let mut event: SqsEvent = fixture("sqs.json");
    event.records[3].message_id = None;
    let outcomes =
        idem_lambda::sqs::batch("orders::ship", &event, |m| body_field(&m.body, "order"))
            .engine(&engine)
            .run(|_, message| async move {
                match body_field(&message.body, "order").as_str() {
                    "A-4" => Err(Error::Config("refused".into())),
                    _ => Ok(()),
                }
            })
            .await;
    assert_eq!(
        failures(idem_lambda::sqs::response(&event, &outcomes)),
        [""]
    );
}

/// Kinesis: records grouped by partition key; a failure stops its key's later records
/// and names them by sequence number; the other key goes on.
#[tokio::test]
async fn kinesis_stops_a_partition_key_at_its_first_failure() {
    let engine = Engine::new(MemoryStore::new());
    let event: KinesisEvent = fixture("kinesis.json");
    let ran = Mutex::new(Vec::new());
    let outcomes = idem_lambda::kinesis::batch("payments::settle", &event, |r| {
        r.kinesis.sequence_number.clone()
    })
    .engine(&engine)
    .run(|_, record| {
        let ran = &ran;
        async move {
            let data: Value = serde_json::from_slice(&record.kinesis.data.0).unwrap();
            let payment = data["payment"].as_str().unwrap().to_owned();
            ran.lock().unwrap().push(payment.clone());
            match payment == "p3" {
                true => Err(Error::Config("declined".into())),
                false => Ok(()),
            }
        }
    })
    .await;
    let sequence = |i: usize| event.records[i].kinesis.sequence_number.clone();
    assert_eq!(
        failures(idem_lambda::kinesis::response(&event, &outcomes)),
        [sequence(2), sequence(3)]
    );
    let mut ran = ran.into_inner().unwrap();
    ran.sort();
    assert_eq!(ran, ["p1", "p2", "p3", "p5"]);
}

/// Kafka: records taken by partition in offset order (the event lists them out of
/// order); a failure stops its partition and names `<topic>-<partition>-<offset>`.
#[tokio::test]
async fn kafka_stops_a_partition_at_its_first_failure() {
    let engine = Engine::new(MemoryStore::new());
    let event: KafkaEvent = fixture("kafka.json");
    let ran = Mutex::new(Vec::new());
    let outcomes = idem_lambda::kafka::batch("invoices::post", &event, |r| {
        idem_lambda::kafka::item_identifier(r)
    })
    .engine(&engine)
    .run(|_, record| {
        let ran = &ran;
        async move {
            ran.lock().unwrap().push(record.offset);
            match record.offset == 16 {
                true => Err(Error::Config("refused".into())),
                false => Ok(()),
            }
        }
    })
    .await;
    let response = idem_lambda::kafka::response(&event, &outcomes);
    assert_eq!(failures(&response), ["invoices-1-16", "invoices-1-17"]);
    let ran = ran.into_inner().unwrap();
    let at = |offset: i64| ran.iter().position(|o| *o == offset);
    assert!(at(15) < at(16), "{ran:?}");
    assert_eq!(at(17), None, "{ran:?}");
    assert!(at(40).is_some() && at(41).is_some(), "{ran:?}");
}
