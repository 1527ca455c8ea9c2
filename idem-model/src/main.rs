//! Checks the idem protocol: `cargo run --release -p idem-model [-- --deep]
//! [--variant NAME] [--bounds name=value,...]`.
//!
//! Without `--variant`, explores the code's protocol in every scenario of the suite (or
//! the deeper one), prints the states explored and every property's result, and exits
//! non-zero if an invariant fails, or if an example that some scenario should reach is
//! reached by none. With `--variant first-beat-from-body-start`,
//! `--variant extend-after-release`, `--variant settle-by-read-only`, `--variant
//! fence-from-row`, `--variant journal-without-fence` or `--variant begin-clears-steps`,
//! explores that faulty variant in the base bounds (in a transaction for the third, held
//! by the transaction for the fourth, with one step for the last two) and prints the
//! shortest counterexample of each invariant it breaks. `--bounds` explores
//! one scenario of your own instead (`--bounds crashes=1,horizon_ticks=9`).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use idem_model::{suite, Bounds, Protocol, Scenario, Variant};
use stateright::{Checker, Expectation, Model};

fn main() -> ExitCode {
    let mut deep = false;
    let mut variant = Variant::FIXED;
    let mut own: Option<Bounds> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--deep" => deep = true,
            "--bounds" => match Bounds::base().with(&args.next().unwrap_or_default()) {
                Ok(bounds) => own = Some(bounds),
                Err(message) => {
                    eprintln!("{message}");
                    return ExitCode::from(2);
                }
            },
            "--variant" => match args.next().as_deref() {
                Some("first-beat-from-body-start") => variant.first_beat_from_body_start = true,
                Some("extend-after-release") => variant.extend_after_release = true,
                Some("settle-by-read-only") => variant.settle_by_read_only = true,
                Some("fence-from-row") => variant.fence_from_row = true,
                Some("journal-without-fence") => variant.journal_without_fence = true,
                Some("begin-clears-steps") => variant.begin_clears_steps = true,
                other => {
                    eprintln!(
                        "unknown variant {other:?}: first-beat-from-body-start, extend-after-release, \
                         settle-by-read-only, fence-from-row, journal-without-fence or \
                         begin-clears-steps"
                    );
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!("unknown argument `{other}`: --deep, --variant NAME, --bounds LIST");
                return ExitCode::from(2);
            }
        }
    }
    let scenarios = match (own, variant == Variant::FIXED) {
        (Some(bounds), _) => vec![Scenario {
            name: "your bounds",
            bounds,
        }],
        (None, true) => suite(deep),
        (None, false) if variant.settle_by_read_only => vec![Scenario {
            name: "in a transaction, no fault",
            // A TTL past the horizon: no record expires, so what is found is the race.
            bounds: Bounds::base()
                .with("transactional=1,ttl_ticks=9")
                .expect("valid bounds"),
        }],
        (None, false) if variant.fence_from_row => vec![Scenario {
            name: "held by the transaction, no fault",
            bounds: Bounds::base().with("lock_held=1").expect("valid bounds"),
        }],
        (None, false) if variant.journal_without_fence || variant.begin_clears_steps => {
            vec![Scenario {
                name: "one step, no fault",
                bounds: Bounds::base().with("steps=1").expect("valid bounds"),
            }]
        }
        (None, false) => vec![Scenario {
            name: "no fault",
            bounds: Bounds::base(),
        }],
    };
    println!("model check of {variant}");
    let started = Instant::now();
    let mut total = 0;
    // Per property: whether it held (invariants) or was reached (examples) anywhere.
    let mut results: BTreeMap<&'static str, (Expectation, bool)> = BTreeMap::new();
    let mut failed = false;
    for scenario in &scenarios {
        let model = Protocol::new(scenario.bounds.clone()).with_variant(variant);
        let began = Instant::now();
        let builder = model.clone().checker().threads(2);
        // Breadth first finds the shortest counterexample; depth first keeps only the
        // states' fingerprints and the current path, so it explores further in the same
        // memory.
        let (states, unique, found) = if variant == Variant::FIXED {
            outcome(&model, builder.spawn_dfs().join())
        } else {
            outcome(&model, builder.spawn_bfs().join())
        };
        total += unique;
        println!(
            "{}: {unique} states ({states} with repeats) in {:.1?}",
            scenario.name,
            began.elapsed()
        );
        for (name, expectation, trace) in found {
            // Examples: reached in some scenario; invariants: broken in none.
            let entry = results.entry(name).or_insert((expectation.clone(), false));
            entry.1 |= trace.is_some();
            if let (Some(trace), true) = (trace, expectation.discovery_is_failure()) {
                println!("  FAIL {name}; counterexample:\n{trace}");
            }
        }
    }
    for (name, (expectation, discovered)) in &results {
        let ok = *discovered != expectation.discovery_is_failure();
        let verdict = match (expectation, ok) {
            (Expectation::Sometimes, true) => "reached",
            (Expectation::Sometimes, false) => "NOT REACHED",
            (_, true) => "holds",
            (_, false) => "FAILS",
        };
        failed |= !ok;
        println!("{verdict:>11}  {expectation:?} {name}");
    }
    println!(
        "{total} states in {} scenarios, {:.1?}: {}",
        scenarios.len(),
        started.elapsed(),
        if failed { "FAILED" } else { "ok" }
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// A property's name, kind, and its discovery as a trace in words.
type Found = (&'static str, Expectation, Option<String>);

/// The counts (with repeats, unique), and every property's discovery.
fn outcome(model: &Protocol, checker: impl Checker<Protocol>) -> (usize, usize, Vec<Found>) {
    let found = model
        .properties()
        .into_iter()
        .map(|property| {
            let trace = checker.discovery(property.name).map(|path| {
                path.into_vec()
                    .into_iter()
                    .filter_map(|(world, action)| action.map(|a| model.describe(&world, &a)))
                    .map(|line| format!("    {line}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            (property.name, property.expectation, trace)
        })
        .collect();
    (checker.state_count(), checker.unique_state_count(), found)
}
