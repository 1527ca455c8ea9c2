//! `idem`: the operator CLI of idem. See the `idem_cli` crate documentation.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use idem_cli::ops::{self, Filter};
use idem_cli::{key, output, CliError, Location, Target};
use idem_core::store::State;
use indicatif::{ProgressBar, ProgressStyle};

/// Inspect, list, forget and purge idem's records in DynamoDB, PostgreSQL or Redis.
#[derive(Parser, Debug)]
#[command(name = "idem", version)]
struct Cli {
    #[command(flatten)]
    location: Location,
    /// A file holding the HMAC secret the engine digests keys with (or the secret
    /// itself in IDEM_SECRET); never the secret on the command line.
    #[arg(long, env = key::SECRET_FILE_VARIABLE, global = true, value_name = "PATH")]
    secret_file: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// The record a command is about: a namespace and a key, or a record id.
#[derive(clap::Args, Debug)]
struct RecordArg {
    /// The namespace (`name = "..."`, or `module::function` by default).
    #[arg(required_unless_present = "id")]
    namespace: Option<String>,
    /// The key's JSON: '"abc"', 42, '["tenant","req-7"]'.
    #[arg(required_unless_present = "id", allow_hyphen_values = true)]
    key: Option<String>,
    /// The record id, `{namespace}#{digest}` (without the store's prefix), instead of a
    /// namespace and a key.
    #[arg(long, conflicts_with_all = ["namespace", "key"])]
    id: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show one record: state, fence, owner, lease, expiry, outcome size, and its journal
    /// of steps (name, ok/err/started, size).
    Inspect {
        #[command(flatten)]
        record: RecordArg,
    },
    /// List records by state and age (PostgreSQL query, Redis SCAN, DynamoDB Scan).
    List {
        /// Only records in this state.
        #[arg(long)]
        state: Option<StateArg>,
        /// Only records whose last lease ended at least this long ago (10m, 2h, 1d).
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
    },
    /// Free a record so the key's next call runs its body again, keeping its fence.
    Forget {
        #[command(flatten)]
        record: RecordArg,
        /// Release a record in progress even while its lease is live (its body may
        /// still be running).
        #[arg(long)]
        force: bool,
    },
    /// Delete expired records where the store does not expire them itself
    /// (PostgreSQL).
    Purge {
        /// Delete the records past both their expiry and their lease.
        #[arg(long, required = true)]
        expired: bool,
        /// Rows per statement.
        #[arg(long, default_value_t = 1000)]
        batch: u32,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum StateArg {
    InProgress,
    Completed,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("idem: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("idem: {}", error.report());
            ExitCode::from(error.kind().exit_code() as u8)
        }
    }
}

/// The record id a command names, computed before any connection is made.
fn record_id(
    record: &RecordArg,
    secret_file: Option<&std::path::Path>,
) -> Result<idem_core::RecordId, CliError> {
    match (&record.id, &record.namespace, &record.key) {
        (Some(id), _, _) => id
            .parse::<idem_core::RecordId>()
            .map_err(|e| CliError::usage(e.to_string())),
        (None, Some(namespace), Some(key_json)) => {
            let secret = key::secret_from_env(secret_file)?;
            key::record_id(namespace, key_json, secret.as_deref())
        }
        _ => Err(CliError::usage("give NAMESPACE KEY or --id ID")),
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("the CLI's answers serialize")
}

fn counter(message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {pos} ({elapsed})")
            .expect("the template is valid"),
    );
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let secret_file = cli.secret_file.as_deref();
    match &cli.command {
        Command::Inspect { record } => {
            let id = record_id(record, secret_file)?;
            let target = Target::connect(&cli.location).await?;
            let now = ops::now_ms();
            let inspected = ops::Inspected::new(&ops::inspect(&target, &id).await?, now);
            if cli.json {
                println!("{}", json(&inspected));
            } else {
                print!("{}", output::inspected_table(&inspected, now));
            }
        }
        Command::List { state, older_than } => {
            let target = Target::connect(&cli.location).await?;
            if let Some(warning) = ops::list_warning(&target) {
                eprintln!("idem: warning: {warning}");
            }
            let filter = Filter {
                state: state.map(|s| match s {
                    StateArg::InProgress => State::InProgress,
                    StateArg::Completed => State::Completed,
                }),
                older_than: *older_than,
            };
            let now = ops::now_ms();
            let bar = counter("records examined");
            let views = ops::list(&target, filter, now, &bar).await;
            bar.finish_and_clear();
            let views = views?;
            if cli.json {
                println!("{}", json(&views));
            } else {
                print!("{}", output::list_table(&views));
                eprintln!("{} records in {}", views.len(), target.describe());
            }
        }
        Command::Forget { record, force } => {
            let id = record_id(record, secret_file)?;
            let target = Target::connect(&cli.location).await?;
            let forgotten = ops::forget(&target, &id, *force, ops::now_ms()).await?;
            if cli.json {
                println!("{}", json(&forgotten));
            } else {
                print!("{}", output::forgotten_text(&forgotten));
            }
        }
        Command::Purge { expired: _, batch } => {
            let target = Target::connect(&cli.location).await?;
            let bar = counter("expired records deleted");
            let purged = ops::purge_expired(&target, *batch, &bar).await;
            bar.finish_and_clear();
            match purged? {
                Some(n) if cli.json => println!("{}", json(&serde_json::json!({ "deleted": n }))),
                Some(n) => println!("deleted {n} expired records from {}", target.describe()),
                None => {
                    let text = format!(
                        "nothing to purge: {} expires records itself (Redis key expiry, DynamoDB TTL)",
                        target.describe()
                    );
                    if cli.json {
                        println!(
                            "{}",
                            json(&serde_json::json!({ "deleted": null, "note": text }))
                        );
                    } else {
                        println!("{text}");
                    }
                }
            }
        }
    }
    Ok(())
}
