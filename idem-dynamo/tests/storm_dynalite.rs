//! The duplicate storm on the DynamoDB store over dynalite (race-safe; moto is not):
//! every invariant of the guarantee checked per key.

mod common;

use std::sync::Arc;

use common::{store, unique_table, Server};
use idem_core::testkit::{storm, FaultyStore, StormConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the local DynamoDB servers that scripts/test starts"]
async fn the_guarantee_holds_in_a_duplicate_storm_on_dynalite() {
    let store = Arc::new(FaultyStore::new(
        store(Server::Dynalite, &unique_table("storm"), None).await,
    ));
    let report = storm(
        store,
        StormConfig {
            events: 800,
            concurrency: 24,
            seed: 1127,
            ..StormConfig::default()
        },
    )
    .await;
    println!("{report}");
    assert!(report.violations.is_empty(), "{report}");
    assert_eq!(report.counts["events served (some Ok)"], 800, "{report}");
    assert!(
        report.counts["extra body runs"] > 20,
        "the storm stormed: {report}"
    );
}
