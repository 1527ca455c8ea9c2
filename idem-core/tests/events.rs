//! The tracing events of store outages: what an operator sees, with namespace and
//! digest, and never the raw key.

use std::io::Write;
use std::sync::{Arc, Mutex};

use idem_core::testkit::{Fault, FaultyStore, Operation};
use idem_core::{Call, EngineBuilder, Error, MemoryStore};

/// Collects what the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

const KEY: &str = "ada.lovelace@example.org";

#[tokio::test]
async fn outages_are_logged_with_namespace_and_digest_never_the_key() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let engine = EngineBuilder::from_arc(store.clone()).build().unwrap();
    let digest =
        idem_core::key::digest("events", &idem_core::key::canonical_key(KEY).unwrap(), None);

    // Down at complete: the value comes back, executed but not recorded, at error level.
    store.inject_times(Operation::Complete, Fault::Transient, 1);
    let value = Call::new("events", KEY)
        .engine(&engine)
        .run(|_| async { Ok::<_, Error>(7u8) })
        .await;
    assert_eq!(value.unwrap(), 7);
    let lines = captured.lines();
    let unrecorded = lines
        .iter()
        .find(|l| l.contains("executed but not recorded"))
        .unwrap_or_else(|| panic!("no event for the unrecorded value: {lines:#?}"));
    assert!(unrecorded.contains("ERROR"), "{unrecorded}");
    assert!(unrecorded.contains("namespace=events"), "{unrecorded}");
    assert!(unrecorded.contains(&digest), "{unrecorded}");

    // Down at release: the body's error still comes back, with a warning.
    store.inject_times(Operation::Release, Fault::Transient, 1);
    let failed = Call::new("events", "other")
        .engine(&engine)
        .run(|_| async { Err::<u8, _>(Error::Config("the body's own error".into())) })
        .await;
    assert!(matches!(failed, Err(Error::Config(_))), "{failed:?}");
    let lines = captured.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("release failed")),
        "{lines:#?}"
    );

    assert!(
        lines.iter().all(|l| !l.contains(KEY)),
        "the raw key never appears in an event: {lines:#?}"
    );
}
