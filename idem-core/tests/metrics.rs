//! The metrics (feature `metrics`), read back from a recording backend: a counter per
//! call outcome, store errors by operation and class, store latency and wait time
//! histograms, every one labelled by namespace and none by key.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use idem_core::testkit::{Fault, FaultyStore, Operation};
use idem_core::{Call, EngineBuilder, Error, MemoryStore};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tokio::sync::Notify;

const NS: &str = "tests::metrics";
const KEY: &str = "ada.lovelace@example.org";

#[test]
fn every_call_outcome_store_error_and_wait_is_measured() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let store = Arc::new(FaultyStore::new(MemoryStore::new()));
            let engine = EngineBuilder::from_arc(store.clone()).build().unwrap();
            let call = |key: &str| Call::new(NS, key).engine(&engine);
            call(KEY)
                .run(|_| async { Ok::<_, Error>(1) })
                .await
                .unwrap();
            call(KEY)
                .run(|_| async { Ok::<_, Error>(2) })
                .await
                .unwrap();
            store.inject_times(Operation::Begin, Fault::Transient, 1);
            call("down")
                .run(|_| async { Ok::<_, Error>(3) })
                .await
                .unwrap_err();

            // A duplicate that waits for the attempt in progress, then replays.
            let finish = Notify::new();
            let (held, waited) = tokio::join!(
                call("slow").run(|_| async {
                    finish.notified().await;
                    Ok::<_, Error>(4)
                }),
                async {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let told = call("slow").run(|_| async { Ok::<_, Error>(5) }).await;
                    assert!(matches!(told, Err(Error::InProgress { .. })));
                    finish.notify_one();
                    call("slow")
                        .wait(Duration::from_secs(5))
                        .run(|_| async { Ok::<_, Error>(6) })
                        .await
                }
            );
            assert_eq!((held.unwrap(), waited.unwrap()), (4, 4));
        })
    });

    let mut counters = BTreeMap::new();
    let mut histograms = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let labels: BTreeMap<String, String> = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        assert_eq!(
            labels.get("namespace").map(String::as_str),
            Some(NS),
            "{key:?}"
        );
        assert!(
            labels.values().all(|v| !v.contains(KEY)),
            "no label holds the key: {key:?}"
        );
        let name = key.name().to_owned();
        match value {
            DebugValue::Counter(n) => {
                let label = labels.get("outcome").or(labels.get("class")).cloned();
                let operation = labels.get("operation").cloned().unwrap_or_default();
                counters.insert((name, label.unwrap_or_default(), operation), n);
            }
            DebugValue::Histogram(samples) => {
                let operation = labels.get("operation").cloned().unwrap_or_default();
                histograms.insert((name, operation), samples.len());
            }
            DebugValue::Gauge(_) => {}
        }
    }
    let count = |name: &str, label: &str, operation: &str| {
        counters
            .get(&(name.to_owned(), label.to_owned(), operation.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(count("idem_calls_total", "ran", ""), 2, "{counters:?}");
    assert_eq!(count("idem_calls_total", "replayed", ""), 2, "{counters:?}");
    assert_eq!(
        count("idem_calls_total", "in_progress", ""),
        1,
        "{counters:?}"
    );
    assert_eq!(
        count("idem_calls_total", "store_error", ""),
        1,
        "{counters:?}"
    );
    assert_eq!(
        count("idem_store_errors_total", "transient", "begin"),
        1,
        "{counters:?}"
    );
    let samples = |name: &str, operation: &str| {
        histograms
            .get(&(name.to_owned(), operation.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    // begins: 1 + 1 + 1 (faulted) + 1 + 1 + at least 2 while waiting.
    assert!(
        samples("idem_store_latency_seconds", "begin") >= 6,
        "{histograms:?}"
    );
    assert_eq!(
        samples("idem_store_latency_seconds", "complete"),
        2,
        "{histograms:?}"
    );
    assert_eq!(samples("idem_wait_seconds", ""), 1, "{histograms:?}");
}
