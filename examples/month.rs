//! A month of CloudFormation stack creations, delivered at least once.
//!
//! Measured on AWS Lambda over a month: 491,699 create events, of which 112 were
//! delivered more than once, and 3 of those three times. This example replays such a
//! month through 5 concurrent workers, twice: once with a plain handler and once with
//! `#[idempotent]`. A duplicate arrives a random 0-50 ms after the first delivery; an
//! "in progress" answer puts the event back on the queue, as SQS would. Each event
//! creates a server group through a simulated cloud API that counts groups and what
//! they cost per hour.
//!
//! ```sh
//! cargo run --release -p idem-examples --example month                  # the whole month, in memory
//! cargo run --release -p idem-examples --example month -- --events 20000
//! cargo run --release -p idem-examples --example month -- --store dynamo --endpoint http://127.0.0.1:8000 --events 5000
//! cargo run --release -p idem-examples --example month -- --store redis --url redis://127.0.0.1:6379 --events 20000
//! ```
//!
//! `--events N` scales the month down with the same duplicate rate (at least one event
//! duplicated and one tripled). `--store dynamo` without `--endpoint` uses real AWS with
//! the default credentials (the table is `idem-month`, created if missing).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use idem::{idempotent, Engine, Error, MemoryStore};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// The measured month.
const MONTH_EVENTS: usize = 491_699;
const MONTH_DUPLICATED: usize = 112;
const MONTH_TRIPLED: usize = 3;
const WORKERS: usize = 5;
/// What one server group costs per hour (3 instances at $0.0416), and a month's hours.
const GROUP_HOURLY_USD: f64 = 3.0 * 0.0416;
const HOURS_PER_MONTH: f64 = 730.0;

/// A CloudFormation "Create" request for a server group.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CfnEvent {
    request_id: String,
    stack: String,
    size: u32,
}

/// What the cloud API returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Group {
    id: u64,
}

/// A simulated cloud API that counts the server groups it creates.
#[derive(Default)]
struct Cloud {
    groups: AtomicUsize,
}

impl Cloud {
    fn create_group(&self, _event: &CfnEvent) -> Group {
        Group {
            id: self.groups.fetch_add(1, Ordering::SeqCst) as u64,
        }
    }
}

/// The handler without idem: every delivery creates a group.
async fn create_group_plain(cloud: &Cloud, event: CfnEvent) -> Result<Group, Error> {
    Ok(cloud.create_group(&event))
}

/// The same handler with idem: one group per request id.
#[idempotent(key = event.request_id, ttl = "24h")]
async fn create_group(cloud: &Cloud, event: CfnEvent) -> Result<Group, Error> {
    Ok(cloud.create_group(&event))
}

/// Where the records live.
#[derive(Clone, Copy, PartialEq)]
enum StoreKind {
    Memory,
    Dynamo,
    Redis,
}

struct Options {
    events: usize,
    store: StoreKind,
    endpoint: Option<String>,
    url: Option<String>,
    seed: u64,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        events: MONTH_EVENTS,
        store: StoreKind::Memory,
        endpoint: None,
        url: None,
        seed: 2026,
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let mut value = || words.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--events" => {
                options.events = value()?.parse().map_err(|_| "--events takes a whole number")?;
                if options.events < 2 {
                    return Err("--events must be at least 2".into());
                }
            }
            "--store" => match value()?.as_str() {
                "memory" => options.store = StoreKind::Memory,
                "dynamo" => options.store = StoreKind::Dynamo,
                "redis" => options.store = StoreKind::Redis,
                other => {
                    return Err(format!(
                        "--store is memory, dynamo or redis, not `{other}`"
                    ))
                }
            },
            "--endpoint" => options.endpoint = Some(value()?),
            "--url" => options.url = Some(value()?),
            "--seed" => options.seed = value()?.parse().map_err(|_| "--seed takes a number")?,
            other => {
                return Err(format!(
                    "unknown option `{other}`; options: --events N, --store memory|dynamo|redis, --endpoint URL (dynamo), --url URL (redis), --seed N"
                ))
            }
        }
    }
    Ok(options)
}

/// The month's deliveries: every event once, then for the duplicated ones a second
/// (and for the tripled ones a third) delivery 0-50 ms after the first.
struct Month {
    events: Vec<CfnEvent>,
    /// For each event, how many times it is delivered.
    copies: Vec<usize>,
}

impl Month {
    fn new(events: usize, seed: u64) -> Month {
        let scale = events as f64 / MONTH_EVENTS as f64;
        let duplicated = ((MONTH_DUPLICATED as f64 * scale).round() as usize).clamp(1, events);
        let tripled = ((MONTH_TRIPLED as f64 * scale).round() as usize).clamp(1, duplicated);
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut copies = vec![1; events];
        let mut picked: Vec<usize> = (0..events).collect();
        rng.shuffle(&mut picked);
        for (n, &event) in picked.iter().take(duplicated).enumerate() {
            copies[event] = if n < tripled { 3 } else { 2 };
        }
        let events = (0..events)
            .map(|i| CfnEvent {
                request_id: format!(
                    "{:08x}-{:04x}-4{:03x}-{:016x}",
                    rng.u32(..),
                    rng.u16(..),
                    i % 4096,
                    rng.u64(..)
                ),
                stack: format!("stack-{}", i % 997),
                size: rng.u32(1..=8),
            })
            .collect();
        Month { events, copies }
    }
}

/// What a run produced.
struct Outcome {
    deliveries: usize,
    groups: usize,
    requeued: usize,
    wall: Duration,
}

/// Delivers the month through `WORKERS` workers; `guarded` picks the handler.
async fn replay(month: &Month, guarded: bool, seed: u64) -> Outcome {
    let cloud = Arc::new(Cloud::default());
    let queue: Arc<Mutex<VecDeque<(usize, bool)>>> = Arc::new(Mutex::new(
        (0..month.events.len()).map(|i| (i, true)).collect(),
    ));
    let total: usize = month.copies.iter().sum();
    let delivered = Arc::new(AtomicUsize::new(0));
    let requeued = Arc::new(AtomicUsize::new(0));
    let arrived = Arc::new(Notify::new());
    let events = Arc::new(month.events.clone());
    let copies = Arc::new(month.copies.clone());
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} deliveries {elapsed}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(if guarded { "with idem" } else { "without idem" });
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (cloud, queue, events, copies) =
                (cloud.clone(), queue.clone(), events.clone(), copies.clone());
            let (delivered, requeued, arrived, bar) = (
                delivered.clone(),
                requeued.clone(),
                arrived.clone(),
                bar.clone(),
            );
            let mut rng = fastrand::Rng::with_seed(seed ^ worker as u64);
            tokio::spawn(async move {
                loop {
                    let next = queue.lock().unwrap().pop_front();
                    let Some((index, first)) = next else {
                        if delivered.load(Ordering::SeqCst) >= total {
                            break;
                        }
                        // Duplicates still on their way.
                        let _ = tokio::time::timeout(Duration::from_millis(5), arrived.notified())
                            .await;
                        continue;
                    };
                    if first {
                        // The duplicates of this event arrive 0-50 ms after it.
                        for _ in 1..copies[index] {
                            let (queue, arrived) = (queue.clone(), arrived.clone());
                            let delay = Duration::from_millis(rng.u64(0..=50));
                            tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                queue.lock().unwrap().push_back((index, false));
                                arrived.notify_waiters();
                            });
                        }
                    }
                    let event = events[index].clone();
                    let result = if guarded {
                        create_group(&cloud, event).await
                    } else {
                        create_group_plain(&cloud, event).await
                    };
                    match result {
                        Ok(_) => {
                            delivered.fetch_add(1, Ordering::SeqCst);
                            bar.inc(1);
                        }
                        Err(Error::InProgress { .. }) => {
                            // Back on the queue, as SQS does with an unacknowledged message.
                            requeued.fetch_add(1, Ordering::SeqCst);
                            queue.lock().unwrap().push_back((index, false));
                        }
                        Err(error) => panic!("the handler failed: {error}"),
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a worker");
    }
    bar.finish();
    Outcome {
        deliveries: total,
        groups: cloud.groups.load(Ordering::SeqCst),
        requeued: requeued.load(Ordering::SeqCst),
        wall: started.elapsed(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = options()?;
    // The Redis run's keys, deleted at the end (the records would expire in a day).
    let mut redis_run: Option<(redis::aio::ConnectionManager, String)> = None;
    match options.store {
        StoreKind::Dynamo => {
            let store =
                idem_examples::dynamo_store(options.endpoint.as_deref(), "idem-month", true)
                    .await?;
            Engine::new(store).install()?;
        }
        StoreKind::Redis => {
            let url = options.url.as_deref().unwrap_or("redis://127.0.0.1:6379");
            let connection = redis::aio::ConnectionManager::new(redis::Client::open(url)?).await?;
            // A prefix of this run's own: every run starts from an empty month.
            let prefix = format!("idem-month:{}:", std::process::id());
            let store = idem_redis::RedisStore::builder(connection.clone())
                .prefix(prefix.clone())
                .build()
                .await?;
            redis_run = Some((connection, prefix));
            Engine::new(store).install()?;
        }
        StoreKind::Memory => Engine::new(MemoryStore::new()).install()?,
    }
    let month = Month::new(options.events, options.seed);
    let duplicated = month.copies.iter().filter(|&&c| c > 1).count();
    let tripled = month.copies.iter().filter(|&&c| c == 3).count();
    println!(
        "{} create events, {duplicated} delivered more than once ({tripled} of those three times), {WORKERS} workers, store: {}",
        month.events.len(),
        match options.store {
            StoreKind::Memory => "in-memory",
            StoreKind::Dynamo => "dynamo",
            StoreKind::Redis => "redis",
        },
    );
    let without = replay(&month, false, options.seed).await;
    let with = replay(&month, true, options.seed).await;

    let events = month.events.len();
    let row = |name: &str, o: &Outcome| {
        let extra = o.groups - events;
        println!(
            "{name:<14} {events:>9} {:>11} {:>9} {extra:>8} {:>14} {:>9.2}s",
            o.deliveries,
            o.groups,
            format!(
                "${:.2}/month",
                extra as f64 * GROUP_HOURLY_USD * HOURS_PER_MONTH
            ),
            o.wall.as_secs_f64(),
        );
    };
    println!();
    println!(
        "{:<14} {:>9} {:>11} {:>9} {:>8} {:>14} {:>10}",
        "", "events", "deliveries", "groups", "extra", "extra cost", "wall time"
    );
    row("without idem", &without);
    row("with idem", &with);
    println!(
        "(with idem, {} deliveries found their event in progress and went back on the queue)",
        with.requeued
    );
    if let Some((mut connection, prefix)) = redis_run {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut connection)
            .await?;
        for chunk in keys.chunks(1000) {
            redis::cmd("DEL")
                .arg(chunk)
                .query_async::<()>(&mut connection)
                .await?;
        }
    }
    Ok(())
}
