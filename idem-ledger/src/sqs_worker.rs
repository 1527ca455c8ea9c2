//! `sqs-worker`: one consumer of the SQS end-to-end test (`tests/sqs.rs`). It runs the
//! handler as Lambda's event source mapping would: it receives up to 10 messages, hands
//! them to the handler as an `SqsEvent` (through `idem_lambda::sqs`), deletes the
//! messages the response does not name, and leaves the rest to come back after their
//! visibility timeout (1 s, shorter than the slowest bodies, so messages are delivered
//! again while they are still being processed).
//!
//! The handler's effect is one row in `effects`, written with the attempt's token as its
//! idempotency key (unique), as a downstream API would take it; every body run is also
//! counted in `runs`. It prints `BODY <order>` when a body starts (the test kills
//! workers there), `OUT_OF_ORDER <order>` when its effect is written after a later one
//! of its group in the same batch, and `BATCH <messages> <reported> <largest group>` after
//! each batch.
//!
//! Settings, from the environment: `SQS_ENDPOINT`, `SQS_QUEUE_URL`, `LEDGER_URL`,
//! `LEDGER_SCHEMA`. It exits 0 once the queue holds no message, visible or in flight.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use idem_core::{EngineBuilder, Error};
use idem_postgres::PgStore;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

mod sqs_client;

const NAMESPACE: &str = "sqs::ship";
const LEASE: Duration = Duration::from_millis(1500);

fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("sqs-worker needs {name}"))
}

/// The order a message carries: its id (the idem key: a producer's duplicate carries the
/// same), its group and its place in the group.
#[derive(serde::Deserialize)]
struct Order {
    id: String,
    group: String,
    seq: i64,
}

/// The handler's body: a pause (some longer than the visibility timeout), then the
/// effect, keyed by the attempt's token. `written` holds the last place whose effect
/// this batch wrote, by group: an effect written after a later place of its group
/// prints `OUT_OF_ORDER`.
async fn ship(
    pool: &PgPool,
    schema: &str,
    written: &Mutex<HashMap<String, i64>>,
    ctx: idem_core::Context,
    message: &SqsMessage,
) -> Result<(), Error> {
    let order: Order = serde_json::from_str(message.body.as_deref().unwrap_or_default())
        .map_err(|e| Error::Config(format!("not an order: {e}")))?;
    println!("BODY {}", order.id);
    let run = format!("INSERT INTO \"{schema}\".runs (key) VALUES ($1)");
    sqlx::query(sqlx::AssertSqlSafe(run))
        .bind(&order.id)
        .execute(pool)
        .await
        .map_err(|e| Error::Config(format!("runs: {e}")))?;
    let pause = match fastrand::u8(0..8) {
        0 => fastrand::u64(1200..1800),
        _ => fastrand::u64(10..120),
    };
    tokio::time::sleep(Duration::from_millis(pause)).await;
    let effect = format!(
        "INSERT INTO \"{schema}\".effects (token, key, grp, seq, pid) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (token) DO NOTHING"
    );
    sqlx::query(sqlx::AssertSqlSafe(effect))
        .bind(ctx.token())
        .bind(&order.id)
        .bind(&order.group)
        .bind(order.seq)
        .bind(std::process::id() as i32)
        .execute(pool)
        .await
        .map_err(|e| Error::Config(format!("effects: {e}")))?;
    let last = written
        .lock()
        .unwrap()
        .insert(order.group.clone(), order.seq);
    if let Some(last) = last.filter(|last| *last >= order.seq) {
        println!("OUT_OF_ORDER {} after seq {last}", order.id);
    }
    Ok(())
}

/// An SDK message as Lambda hands it to a function.
fn lambda_message(message: &aws_sdk_sqs::types::Message) -> SqsMessage {
    let mut converted = SqsMessage::default();
    converted.message_id = message.message_id.clone();
    converted.receipt_handle = message.receipt_handle.clone();
    converted.body = message.body.clone();
    converted.attributes = message
        .attributes
        .iter()
        .flatten()
        .map(|(name, value)| (name.as_str().to_owned(), value.clone()))
        .collect();
    converted
}

#[tokio::main]
async fn main() {
    let schema = setting("LEDGER_SCHEMA");
    let queue = setting("SQS_QUEUE_URL");
    let pool = PgPoolOptions::new()
        .max_connections(12)
        .connect(&setting("LEDGER_URL"))
        .await
        .expect("the PostgreSQL server answers");
    let store = PgStore::builder(pool.clone())
        .schema(schema.clone())
        .build()
        .unwrap();
    let engine = EngineBuilder::from_arc(Arc::new(store))
        .lease(LEASE)
        .store_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let sqs = sqs_client::local(&setting("SQS_ENDPOINT"));
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("SQS answers");
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            let attributes = sqs
                .get_queue_attributes()
                .queue_url(&queue)
                .attribute_names(QueueAttributeName::All)
                .send()
                .await
                .expect("SQS answers");
            let count = |name: QueueAttributeName| {
                attributes
                    .attributes
                    .as_ref()
                    .and_then(|attributes| attributes.get(&name))
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if count(QueueAttributeName::ApproximateNumberOfMessages) == 0
                && count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible) == 0
            {
                std::process::exit(0);
            }
            continue;
        }
        let written = Mutex::new(HashMap::new());
        let mut event = SqsEvent::default();
        event.records = messages.iter().map(lambda_message).collect();
        let outcomes = idem_lambda::sqs::batch(NAMESPACE, &event, |message| {
            serde_json::from_str::<Order>(message.body.as_deref().unwrap_or_default())
                .map(|order| order.id)
                .ok()
        })
        .engine(&engine)
        .run(|ctx, message| ship(&pool, &schema, &written, ctx, message))
        .await;
        let response = idem_lambda::sqs::response(&event, &outcomes);
        let reported: HashSet<&str> = response
            .batch_item_failures
            .iter()
            .map(|failure| failure.item_identifier.as_str())
            .collect();
        let handles: HashMap<&str, &str> = messages
            .iter()
            .filter_map(|m| Some((m.message_id.as_deref()?, m.receipt_handle.as_deref()?)))
            .collect();
        for (id, handle) in handles {
            if !reported.contains(id) {
                // A handle that a later receive replaced may be refused; the message then
                // comes back and replays.
                let _ = sqs
                    .delete_message()
                    .queue_url(&queue)
                    .receipt_handle(handle)
                    .send()
                    .await;
            }
        }
        let mut groups: HashMap<&str, usize> = HashMap::new();
        for message in &event.records {
            if let Some(group) = message.attributes.get("MessageGroupId") {
                *groups.entry(group.as_str()).or_default() += 1;
            }
        }
        let largest = groups.values().max().copied().unwrap_or(0);
        println!("BATCH {} {} {largest}", messages.len(), reported.len());
    }
}
