//! `IDEM_DISABLED=1` turns idem off for engines built without an explicit setting.
//! (Its own test binary: it sets a process-wide variable.)

use std::sync::atomic::{AtomicUsize, Ordering};

use idem::{Call, EngineBuilder, Error, MemoryStore, DISABLED_VARIABLE};

#[tokio::test]
async fn the_environment_variable_disables_and_the_builder_setting_wins() {
    std::env::set_var(DISABLED_VARIABLE, "1");
    let disabled = EngineBuilder::from_arc(std::sync::Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    let explicit = EngineBuilder::from_arc(std::sync::Arc::new(MemoryStore::new()))
        .disabled(false)
        .build()
        .unwrap();
    std::env::remove_var(DISABLED_VARIABLE);
    let still_on = EngineBuilder::from_arc(std::sync::Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    assert!(disabled.is_disabled());
    assert!(!explicit.is_disabled());
    assert!(!still_on.is_disabled());

    let runs = AtomicUsize::new(0);
    for _ in 0..2 {
        Call::new("tests::disabled_env", "k")
            .engine(&disabled)
            .run(|_| async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(())
            })
            .await
            .unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2, "both ran: idem is off");
}
