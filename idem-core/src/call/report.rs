//! What a call tells its caller besides the value: whether the body ran or the value
//! was replayed, under which fence, and how long the record replays it.

/// A call's value with how it was obtained: see [`Call::run_reported`](crate::Call::run_reported)
/// and [`Call::run_in_transaction_reported`](crate::Call::run_in_transaction_reported).
///
/// For the `Idempotent-Replayed` header of an HTTP response, for metrics, and for tests
/// that must tell a run from a replay without flags set inside the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report<T> {
    /// The value: the body's, or the recorded one.
    pub value: T,
    /// How it was obtained.
    pub source: Source,
    /// The fencing number of the attempt that produced the value (0 when the body ran
    /// unguarded).
    pub fence: u64,
    /// Until when (epoch milliseconds) the record replays this value: the record's
    /// expiry, `None` when nothing was recorded (the store failed at completion, or the
    /// body ran unguarded).
    pub replayed_until_ms: Option<u64>,
}

/// How a call's value was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// This call ran the body, and its value was recorded for duplicates.
    Ran,
    /// This call ran the body, but the store failed at completion, each resend within
    /// the store timeout too: the value is not recorded, and a duplicate after the lease
    /// lapses runs the body again.
    RanNotRecorded,
    /// A duplicate: the value recorded by an earlier call, the body not run.
    Replayed,
    /// The body ran without a guard: the key was missing under
    /// [`optional_key`](crate::Call::optional_key), or the engine is disabled.
    Unguarded,
}

impl<T> Report<T> {
    /// The report of a body that ran unguarded: nothing recorded, no fence.
    pub(crate) fn unguarded(value: T) -> Self {
        Report {
            value,
            source: Source::Unguarded,
            fence: 0,
            replayed_until_ms: None,
        }
    }

    /// Whether the value was replayed from a record (the body did not run).
    pub fn is_replay(&self) -> bool {
        self.source == Source::Replayed
    }

    /// The same report with its value mapped.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Report<U> {
        Report {
            value: f(self.value),
            source: self.source,
            fence: self.fence,
            replayed_until_ms: self.replayed_until_ms,
        }
    }
}
