//! A duplicate storm with knobs: events delivered 1 to 3 times at once, bodies that
//! crash, fail or pause past their lease, clock jumps, store faults; then every
//! invariant of the guarantee, checked per key, with its counts.
//!
//! ```sh
//! cargo run -p idem-examples --example chaos -- --events 5000 --duplicate-rate 0.3 \
//!     --crash-rate 0.05 --fault-rate 0.02
//! # On DynamoDB (dynalite is race-safe; moto is not, so do not judge races on it):
//! cargo run -p idem-examples --example chaos -- --store dynamo --endpoint http://127.0.0.1:8000
//! # A soak: storms with new seeds until 10 minutes have passed.
//! cargo run --release -p idem-examples --example chaos -- --soak 600
//! ```
//!
//! Exits with status 1 if any invariant did not hold.

use std::sync::Arc;
use std::time::{Duration, Instant};

use idem::MemoryStore;
use idem_core::testkit::{storm, FaultyStore, StormConfig, StormReport};
use idem_core::Store;

const USAGE: &str = "options: --events N --duplicate-rate R --crash-rate R --error-rate R \
--zombie-rate R --clock-jump-rate R --fault-rate R --concurrency N --seed N \
--store memory|dynamo --endpoint URL --table NAME --soak SECONDS";

struct Options {
    config: StormConfig,
    dynamo: bool,
    endpoint: Option<String>,
    table: String,
    soak: Option<Duration>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        config: StormConfig {
            events: 2000,
            ..StormConfig::default()
        },
        dynamo: false,
        endpoint: None,
        table: format!("idem-chaos-{}", std::process::id()),
        soak: None,
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let mut value = || words.next().ok_or(format!("{flag} needs a value; {USAGE}"));
        let number = |text: String| {
            text.parse::<f64>()
                .map_err(|_| format!("{flag}: `{text}` is not a number"))
        };
        let config = &mut options.config;
        match flag.as_str() {
            "--events" => config.events = number(value()?)? as usize,
            "--duplicate-rate" => config.duplicate_rate = number(value()?)?,
            "--crash-rate" => config.crash_rate = number(value()?)?,
            "--error-rate" => config.error_rate = number(value()?)?,
            "--zombie-rate" => config.zombie_rate = number(value()?)?,
            "--clock-jump-rate" => config.clock_jump_rate = number(value()?)?,
            "--fault-rate" => config.fault_rate = number(value()?)?,
            "--concurrency" => config.concurrency = number(value()?)? as usize,
            "--seed" => config.seed = number(value()?)? as u64,
            "--store" => match value()?.as_str() {
                "memory" => options.dynamo = false,
                "dynamo" => options.dynamo = true,
                other => return Err(format!("--store is memory or dynamo, not `{other}`")),
            },
            "--endpoint" => options.endpoint = Some(value()?),
            "--table" => options.table = value()?,
            "--soak" => options.soak = Some(Duration::from_secs(number(value()?)? as u64)),
            other => return Err(format!("unknown option `{other}`; {USAGE}")),
        }
    }
    Ok(options)
}

async fn run<S: Store>(store: S, config: StormConfig) -> StormReport {
    storm(Arc::new(FaultyStore::new(store)), config).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = options()?;
    let started = Instant::now();
    let mut storms = 0;
    let mut violations = 0;
    loop {
        let mut config = options.config.clone();
        config.seed += storms;
        println!(
            "storm {} (seed {}) on {}:",
            storms + 1,
            config.seed,
            if options.dynamo { "dynamo" } else { "memory" }
        );
        let report = if options.dynamo {
            run(
                idem_examples::dynamo_store(options.endpoint.as_deref(), &options.table, true)
                    .await?,
                config,
            )
            .await
        } else {
            run(MemoryStore::new(), config).await
        };
        println!("{report}");
        violations += report.violations.len();
        storms += 1;
        match options.soak {
            Some(soak) if started.elapsed() < soak => continue,
            _ => break,
        }
    }
    println!(
        "{storms} storms in {:.1}s, {violations} violations",
        started.elapsed().as_secs_f64()
    );
    if violations > 0 {
        std::process::exit(1);
    }
    Ok(())
}
