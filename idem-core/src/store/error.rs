//! Store errors: a call that failed, as opposed to a condition that failed.

use std::fmt;

/// Whether retrying may cure a store error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    /// Throttling, a timeout, a lost connection, a full store: a later try may succeed.
    Transient,
    /// Misconfiguration, missing permissions, a rejected request: retrying will not help.
    Permanent,
    /// A record exists but cannot be decoded (a missing attribute, an unknown state):
    /// the engine reports it as [`Error::Decode`](crate::Error::Decode) and never runs
    /// the body over it.
    Malformed,
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreErrorKind::Transient => "transient",
            StoreErrorKind::Permanent => "permanent",
            StoreErrorKind::Malformed => "malformed record",
        })
    }
}

/// A store call that failed (as opposed to a condition that failed, which is
/// [`Written::Refused`](super::Written::Refused)).
#[derive(Debug, thiserror::Error)]
#[error("{kind} store error: {message}")]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl StoreError {
    /// A transient error: a retry may succeed.
    pub fn transient(message: impl Into<String>) -> Self {
        StoreError {
            kind: StoreErrorKind::Transient,
            message: message.into(),
            source: None,
        }
    }

    /// A permanent error: a retry will not help.
    pub fn permanent(message: impl Into<String>) -> Self {
        StoreError {
            kind: StoreErrorKind::Permanent,
            message: message.into(),
            source: None,
        }
    }

    /// A record that cannot be decoded: `message` says which attribute and why.
    pub fn malformed(message: impl Into<String>) -> Self {
        StoreError {
            kind: StoreErrorKind::Malformed,
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the underlying error (the database client's).
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The same error for another item of a batch call that failed as a whole (its kind
    /// and message, its source as text): a batch answers each item.
    pub fn for_another_item(&self) -> Self {
        StoreError {
            kind: self.kind,
            message: self.message.clone(),
            source: self.source.as_ref().map(|source| source.to_string().into()),
        }
    }

    /// This error as the answer to each of `count` items of a batch call that failed as
    /// a whole.
    pub fn for_each_item<R>(self, count: usize) -> Vec<Result<R, StoreError>> {
        let mut answers: Vec<_> = (1..count).map(|_| Err(self.for_another_item())).collect();
        if count > 0 {
            answers.push(Err(self));
        }
        answers
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// Whether a retry may cure it.
    pub fn is_transient(&self) -> bool {
        self.kind == StoreErrorKind::Transient
    }
}
