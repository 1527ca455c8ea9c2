//! Real process crashes against the DynamoDB store on dynalite, in real time.
//!
//! This binary is its own harness (`harness = false`): run without arguments it is the
//! parent, which runs each scenario in turn (one at a time, as `--test-threads=1`
//! would) and prints a libtest-style summary; run as `crash child ...` it is the child
//! process a scenario starts, holds a lease in, and kills (SIGKILL) or pauses (SIGSTOP).
//! Leases are 5 s: two cores are shared with the server, and shorter leases would
//! starve heartbeats.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client, Server};
use idem_core::store::State;
use idem_core::testkit::{Fault, FaultyStore, Operation};
use idem_core::{Call, Clock, Engine, EngineBuilder, Error, Store, SystemClock};
use idem_dynamo::DynamoStore;

const LEASE: Duration = Duration::from_secs(5);
const NAMESPACE: &str = "crash";

/// A scenario: runs against a table, says why it failed.
type Scenario = fn(&str) -> Result<(), String>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("child") {
        return child(&args[1..]);
    }
    if std::env::var("IDEM_TEST_DYNALITE").is_err() {
        // A plain `cargo test` starts no server; scripts/test always does (and fails
        // if it cannot), so this binary then runs every scenario.
        println!("crash scenarios: ignored, {}", common::NEEDS_SERVERS);
        println!("test result: ok. 0 passed; 0 failed; 3 ignored; 0 measured; 0 filtered out");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let table = common::unique_table("crash");
    runtime.block_on(common::store(Server::Dynalite, &table, None));
    let scenarios: [(&str, Scenario); 3] = [
        (
            "a child killed mid-body loses the key only when its lease lapses",
            killed_mid_body,
        ),
        (
            "a child killed while its heartbeat is stalled behaves the same",
            killed_with_stalled_extend,
        ),
        (
            "a paused child (zombie) is taken over and its completion refused",
            zombie,
        ),
    ];
    let mut failed = 0;
    for (name, scenario) in scenarios {
        let started = Instant::now();
        match scenario(&table) {
            Ok(()) => println!(
                "test {name} ... ok ({:.1}s)",
                started.elapsed().as_secs_f64()
            ),
            Err(why) => {
                failed += 1;
                println!("test {name} ... FAILED\n    {why}");
            }
        }
    }
    println!(
        "test result: {}. {} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out",
        if failed == 0 { "ok" } else { "FAILED" },
        scenarios.len() - failed
    );
    if failed > 0 {
        std::process::exit(101);
    }
}

/// An engine on the DynamoDB store (optionally behind a fault wrapper) with 5 s leases.
async fn engine(table: &str, stall_extend: bool) -> (Engine, Arc<FaultyStore<DynamoStore>>) {
    let store = DynamoStore::builder(client(Server::Dynalite, None), table).build_unchecked();
    let store = Arc::new(FaultyStore::new(store));
    if stall_extend {
        store.inject(Operation::Extend, Fault::Stall);
    }
    let engine = EngineBuilder::from_arc(store.clone())
        .lease(LEASE)
        .store_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    (engine, store)
}

/// The child: takes `key`, prints `HOLDING <fence>`, then returns `value` once a line
/// arrives on stdin, and prints how its call ended.
fn child(args: &[String]) {
    let [table, key, value, mode] = args else {
        panic!("usage: crash child TABLE KEY VALUE (plain|stall-extend)");
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (engine, _store) = engine(table, mode == "stall-extend").await;
        let result = Call::new(NAMESPACE, key)
            .engine(&engine)
            .run(|ctx| async move {
                println!("HOLDING {}", ctx.fence());
                std::io::stdout().flush().unwrap();
                tokio::task::spawn_blocking(|| {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).unwrap();
                })
                .await
                .unwrap();
                Ok::<_, Error>(value.clone())
            })
            .await;
        match result {
            Ok(value) => println!("RESULT ok {value}"),
            Err(error @ Error::LeaseLost { .. }) => {
                println!(
                    "RESULT lease_lost {}",
                    error.lost_value::<String>().unwrap().unwrap()
                )
            }
            Err(error) => println!("RESULT error {error}"),
        }
    });
}

/// A running child process and the lines it prints.
struct Running {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(table: &str, key: &str, value: &str, mode: &str) -> Running {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["child", table, key, value, mode])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            stdin,
            lines,
        }
    }

    fn expect(&self, prefix: &str, within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        Err(format!(
            "the child did not print `{prefix}` within {within:?}"
        ))
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
    }
}

fn check(condition: bool, what: impl Into<String>) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(what.into())
    }
}

/// The parent's call on `key`: with `wait`, it polls until it can take over.
async fn parent_call(
    engine: &Engine,
    key: &str,
    wait: Option<Duration>,
) -> Result<(u64, String), Error> {
    let mut call = Call::new(NAMESPACE, key).engine(engine);
    if let Some(wait) = wait {
        call = call.wait(wait);
    }
    call.run(|ctx| async move { Ok::<_, Error>((ctx.fence(), "parent".to_owned())) })
        .await
}

/// Kills a child holding the key; the key stays held until the lease lapses, then the
/// parent takes over with a higher fence and completes.
fn killed(table: &str, key: &str, mode: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (engine, store) = engine(table, false).await;
        let mut running = Running::start(table, key, "child", mode);
        running.expect("HOLDING 1", Duration::from_secs(30))?;
        // Past a heartbeat: with `stall-extend` the child's extend is now in flight.
        tokio::time::sleep(LEASE / 2).await;
        let busy = parent_call(&engine, key, None).await;
        check(
            matches!(busy, Err(Error::InProgress { .. })),
            format!("before the kill: {busy:?}"),
        )?;
        running.child.kill().map_err(|e| e.to_string())?; // SIGKILL
        running.child.wait().map_err(|e| e.to_string())?;
        let id = engine
            .record_id(NAMESPACE, key)
            .map_err(|e| e.to_string())?;
        let held = store
            .read(&id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no record")?;
        let busy = parent_call(&engine, key, None).await;
        check(
            matches!(busy, Err(Error::InProgress { .. })),
            format!("right after the kill the lease is still live: {busy:?}"),
        )?;
        let taken = parent_call(&engine, key, Some(Duration::from_secs(30))).await;
        let taken_at = SystemClock.now_ms();
        check(
            taken.as_ref().ok() == Some(&(2, "parent".to_owned())),
            format!("takeover: {taken:?}"),
        )?;
        check(
            taken_at >= held.lease_until_ms,
            format!(
                "took over at {taken_at}, before the dead child's lease ended at {}",
                held.lease_until_ms
            ),
        )?;
        let replay = parent_call(&engine, key, None).await;
        check(
            replay.as_ref().ok() == Some(&(2, "parent".to_owned())),
            format!("replay: {replay:?}"),
        )
    })
}

fn killed_mid_body(table: &str) -> Result<(), String> {
    killed(table, "killed", "plain")
}

fn killed_with_stalled_extend(table: &str) -> Result<(), String> {
    killed(table, "killed-stalled", "stall-extend")
}

/// A child paused (SIGSTOP) past its lease: the parent takes over and completes; the
/// child, resumed (SIGCONT) and finishing, is told its lease was lost, with its value,
/// and the record keeps the parent's result.
fn zombie(table: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (engine, store) = engine(table, false).await;
        let mut running = Running::start(table, "zombie", "zombie-value", "plain");
        running.expect("HOLDING 1", Duration::from_secs(30))?;
        running.signal("-STOP");
        let taken = parent_call(&engine, "zombie", Some(Duration::from_secs(30))).await;
        check(
            taken.as_ref().ok() == Some(&(2, "parent".to_owned())),
            format!("takeover: {taken:?}"),
        )?;
        running.signal("-CONT");
        writeln!(running.stdin, "finish").map_err(|e| e.to_string())?;
        let result = running.expect("RESULT", Duration::from_secs(30))?;
        check(
            result == "RESULT lease_lost zombie-value",
            format!("the zombie's call ended with `{result}`"),
        )?;
        running.child.wait().map_err(|e| e.to_string())?;
        let id = engine
            .record_id(NAMESPACE, "zombie")
            .map_err(|e| e.to_string())?;
        let record = store
            .read(&id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no record")?;
        check(
            record.state == State::Completed
                && record.fence == 2
                && record.data.as_deref() == Some(&b"[2,\"parent\"]"[..]),
            format!("the record keeps the parent's result: {record:?}"),
        )
    })
}
