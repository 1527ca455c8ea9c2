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
    // A short store timeout: a write that fails is sent again within it.
    let engine = EngineBuilder::from_arc(store.clone())
        .store_timeout(std::time::Duration::from_millis(200))
        .build()
        .unwrap();
    let digest =
        idem_core::key::digest("events", &idem_core::key::canonical_key(KEY).unwrap(), None);

    // Down at complete: the value comes back, executed but not recorded, at error level.
    store.inject(Operation::Complete, Fault::Transient);
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
    store.clear(Operation::Complete);
    store.inject(Operation::Release, Fault::Transient);
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

/// Per-call events are DEBUG (nothing at INFO for calls that go well), in one field
/// format (`outcome=...`); the body's own events carry the attempt's span (namespace,
/// digest, fence).
#[tokio::test]
async fn per_call_events_are_debug_and_the_body_runs_in_the_attempts_span() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let engine = EngineBuilder::from_arc(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    for _ in 0..2 {
        Call::new("events", "span")
            .engine(&engine)
            .run(|_| async {
                tracing::info!("the body's own event");
                Ok::<_, Error>(1u8)
            })
            .await
            .unwrap();
    }
    let lines = captured.lines();
    let idem_lines: Vec<_> = lines.iter().filter(|l| l.contains(" idem")).collect();
    let body = lines
        .iter()
        .find(|l| l.contains("the body's own event"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(body.contains("namespace=events"), "{body}");
    assert!(body.contains("fence=1"), "{body}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("DEBUG") && l.contains("outcome=\"ran\"")),
        "{idem_lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("DEBUG") && l.contains("outcome=\"replayed\"")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .filter(|l| !l.contains("the body's own event"))
            .all(|l| !l.contains(" INFO ")),
        "no INFO event for calls that went well: {lines:#?}"
    );
}
