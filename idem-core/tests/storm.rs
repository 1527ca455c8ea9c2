//! A duplicate storm on the in-memory store: thousands of events delivered 1 to 3 times
//! at once, bodies crashing before and after their side effect, bodies failing, clocks
//! jumping past leases, store faults. Every invariant is checked per key and printed.

use std::sync::Arc;

use idem_core::testkit::{storm, FaultyStore, StormConfig};
use idem_core::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_guarantee_holds_in_a_duplicate_storm() {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let report = storm(
        store,
        StormConfig {
            events: 3000,
            seed: 20261127,
            ..StormConfig::default()
        },
    )
    .await;
    println!("{report}");
    assert!(report.violations.is_empty(), "{report}");
    // The storm really stormed: duplicates, crashes, failures and faults all happened.
    for (count, at_least) in [
        ("bodies aborted (crash)", 50),
        ("bodies failed (released)", 50),
        ("extra body runs", 100),
    ] {
        assert!(report.counts[count] >= at_least, "{count}: {report}");
    }
    assert!(
        report.errors.get("in_progress").copied().unwrap_or(0) > 100,
        "{report}"
    );
    assert!(
        report.errors.get("store").copied().unwrap_or(0) > 10,
        "{report}"
    );
    assert_eq!(
        report.counts["events served (some Ok)"], 3000,
        "every event was served: {report}"
    );
}
