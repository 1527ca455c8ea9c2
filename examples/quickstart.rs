//! A small at-least-once queue on the embedded in-memory store: 1,000 events, some
//! delivered twice (concurrently or later), handled by 4 workers. Without idem every
//! duplicate creates another server group; with idem none does.
//!
//! Run: `cargo run -p idem-examples --example quickstart`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use idem::{idempotent, Context, Engine, Error, MemoryStore};
use tokio::sync::Mutex;

/// A simulated cloud API that counts the server groups it creates.
#[derive(Default)]
struct Cloud {
    groups: AtomicUsize,
}

impl Cloud {
    async fn create_group(&self, _client_token: &str) -> String {
        let n = self.groups.fetch_add(1, Ordering::SeqCst);
        format!("group-{n}")
    }
}

/// The handler, guarded: runs at most once per request id.
#[idempotent(key = request_id, ttl = "24h")]
async fn handle(cloud: &Cloud, request_id: &str) -> Result<String, Error> {
    // The token is stable per key: the cloud API can dedup on it too.
    let token = Context::current().map(|ctx| ctx.token().to_owned());
    Ok(cloud
        .create_group(token.as_deref().unwrap_or_default())
        .await)
}

/// The same handler without idem.
async fn handle_unguarded(cloud: &Cloud, _request_id: &str) -> Result<String, Error> {
    Ok(cloud.create_group("").await)
}

/// 1,000 events; every 20th is delivered twice, every 100th three times.
fn deliveries() -> Vec<String> {
    let mut queue = Vec::new();
    for i in 0..1000 {
        let copies = if i % 100 == 0 {
            3
        } else if i % 20 == 0 {
            2
        } else {
            1
        };
        for _ in 0..copies {
            queue.push(format!("req-{i}"));
        }
    }
    // Duplicates arrive out of order, as from a real queue.
    queue.sort_by_key(|id| (id.len() * 7919 + id.bytes().map(usize::from).sum::<usize>()) % 97);
    queue
}

async fn drain(guarded: bool) -> (usize, usize, usize) {
    let cloud = Arc::new(Cloud::default());
    let queue = Arc::new(Mutex::new(deliveries()));
    let total = queue.lock().await.len();
    let in_progress = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (cloud, queue, in_progress) = (cloud.clone(), queue.clone(), in_progress.clone());
            tokio::spawn(async move {
                loop {
                    let Some(id) = queue.lock().await.pop() else {
                        break;
                    };
                    let result = if guarded {
                        handle(&cloud, &id).await
                    } else {
                        handle_unguarded(&cloud, &id).await
                    };
                    if let Err(Error::InProgress { .. }) = result {
                        // Another worker holds this event: put it back, as SQS would.
                        in_progress.fetch_add(1, Ordering::SeqCst);
                        queue.lock().await.insert(0, id);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    let groups = cloud.groups.load(Ordering::SeqCst);
    (total, groups, in_progress.load(Ordering::SeqCst))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    Engine::new(MemoryStore::new()).install()?;
    let (deliveries, without, _) = drain(false).await;
    let (_, with, requeued) = drain(true).await;
    println!("events: 1000, deliveries: {deliveries}");
    println!("{:<16} {:>8} {:>8}", "", "groups", "extra");
    println!(
        "{:<16} {:>8} {:>8}",
        "without idem",
        without,
        without - 1000
    );
    println!("{:<16} {:>8} {:>8}", "with idem", with, with - 1000);
    println!("(with idem, {requeued} deliveries found their event in progress and were requeued)");
    Ok(())
}
