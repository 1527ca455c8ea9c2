//! What idem tells operators: tracing events (always) and, with the feature `metrics`,
//! counters and histograms through the `metrics` crate. One place for the names, the
//! labels and the outcome values, so every event and metric spells them the same way.
//!
//! Labels carry the namespace, never the key (keys may be personal data; records hold
//! only their digest). A `&'static` namespace, as the attribute gives, is borrowed into
//! the label, not copied.

use crate::key::Namespace;
use std::time::Duration;

/// How a call ended, as the `outcome` field of events and the `outcome` label of
/// `idem_calls_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallOutcome {
    /// The body ran and its outcome was recorded.
    Ran,
    /// The body ran; the store failed at completion.
    RanNotRecorded,
    /// A recorded outcome was replayed.
    Replayed,
    /// Another attempt holds the key.
    InProgress,
    /// Same key, another payload.
    PayloadMismatch,
    /// The body failed; the key was released (or left to lapse).
    Released,
    /// The completion was refused: another attempt took over.
    LeaseLost,
    /// The store failed before the body ran.
    StoreError,
    /// No key (optional) or idem disabled: the body ran unguarded.
    Unguarded,
}

impl CallOutcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ran => "ran",
            CallOutcome::RanNotRecorded => "ran_not_recorded",
            CallOutcome::Replayed => "replayed",
            CallOutcome::InProgress => "in_progress",
            CallOutcome::PayloadMismatch => "payload_mismatch",
            CallOutcome::Released => "released",
            CallOutcome::LeaseLost => "lease_lost",
            CallOutcome::StoreError => "store_error",
            CallOutcome::Unguarded => "unguarded",
        }
    }
}

/// Counts one call's outcome: `idem_calls_total{namespace, outcome}`.
// With `metrics`, the label shares the namespace (no copy).
pub(crate) fn call(namespace: &Namespace, outcome: CallOutcome) {
    #[cfg(feature = "metrics")]
    metrics::counter!("idem_calls_total", "namespace" => namespace.label(), "outcome" => outcome.as_str())
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (namespace, outcome);
}

/// Records one store call: `idem_store_latency_seconds{namespace, operation}`, and
/// `idem_store_errors_total{namespace, operation, class}` when it failed (`class` is
/// `transient`, `permanent`, `malformed` or `timeout`).
// With `metrics`, the label shares the namespace (no copy).
pub(crate) fn store_call(
    namespace: &Namespace,
    operation: &'static str,
    started: Started,
    error_class: Option<&'static str>,
) {
    #[cfg(feature = "metrics")]
    {
        metrics::histogram!("idem_store_latency_seconds", "namespace" => namespace.label(), "operation" => operation)
            .record(started.0.elapsed().as_secs_f64());
        if let Some(class) = error_class {
            metrics::counter!("idem_store_errors_total", "namespace" => namespace.label(), "operation" => operation, "class" => class)
                .increment(1);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (namespace, operation, started, error_class);
}

/// When a store call started, for its latency: read from the clock only when metrics
/// are built in.
pub(crate) struct Started(#[cfg(feature = "metrics")] std::time::Instant);

impl Started {
    pub(crate) fn now() -> Self {
        Started(
            #[cfg(feature = "metrics")]
            std::time::Instant::now(),
        )
    }
}

/// Records how long a duplicate waited for an attempt in progress:
/// `idem_wait_seconds{namespace}`.
// With `metrics`, the label shares the namespace (no copy).
pub(crate) fn waited(namespace: &Namespace, waited: Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!("idem_wait_seconds", "namespace" => namespace.label())
        .record(waited.as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (namespace, waited);
}
