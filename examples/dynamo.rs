//! idem on DynamoDB: real AWS, or a local DynamoDB-compatible server.
//!
//! ```sh
//! # A local server (moto, dynalite, DynamoDB Local); creates the table if missing:
//! cargo run -p idem-examples --example dynamo -- --endpoint http://127.0.0.1:8000 --create
//! # Real AWS, with the default credential chain and region:
//! cargo run -p idem-examples --example dynamo -- --table idempotency
//! ```
//!
//! Sends five events, each delivered twice, through a guarded handler and prints how
//! many times its body ran.

use std::sync::atomic::{AtomicUsize, Ordering};

use idem::{idempotent, Engine, Error};

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[idempotent(key = order_id, ttl = "1h")]
async fn ship(order_id: String) -> Result<String, Error> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(format!("parcel for {order_id}"))
}

struct Args {
    endpoint: Option<String>,
    table: String,
    create: bool,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        endpoint: None,
        table: "idempotency".into(),
        create: false,
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        match word.as_str() {
            "--endpoint" => args.endpoint = Some(words.next().ok_or("--endpoint needs a URL")?),
            "--table" => args.table = words.next().ok_or("--table needs a name")?,
            "--create" => args.create = true,
            other => {
                return Err(format!(
                    "unknown argument `{other}`; use --endpoint URL, --table NAME, --create"
                ))
            }
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let store =
        idem_examples::dynamo_store(args.endpoint.as_deref(), &args.table, args.create).await?;
    Engine::new(store).install()?;

    let run = std::process::id();
    for delivery in 0..10 {
        let order = format!("order-{run}-{}", delivery % 5);
        println!("{order}: {}", ship(order.clone()).await?);
    }
    println!(
        "10 deliveries of 5 events; the body ran {} times",
        RUNS.load(Ordering::SeqCst)
    );
    Ok(())
}
