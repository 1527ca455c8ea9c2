//! Which of the body's errors are recorded and replayed.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Chooses which of the body's errors are recorded and replayed: see
/// [`Call::replay_errors`](crate::Call::replay_errors). Implemented by [`NoErrorReplay`] and [`ReplayErrors`].
pub trait ErrorPolicy<E> {
    /// `Some(encoded)` when `error` is to be recorded, `None` when the key is released.
    fn record(&self, error: &E) -> Option<Result<String, serde_json::Error>>;
    /// Decodes a recorded error, or `None` when this call has no decoder for it.
    fn decode(&self, data: &str) -> Option<Result<E, serde_json::Error>>;
    /// The error's text for the event that reports the release, if this policy knows
    /// how to write it ([`Call::describe_errors`](crate::Call::describe_errors)).
    fn describe(&self, _error: &E) -> Option<String> {
        None
    }
}

/// A policy whose errors are described in events: see
/// [`Call::describe_errors`](crate::Call::describe_errors).
pub struct Described<P, E> {
    pub(super) policy: P,
    pub(super) describe: fn(&E) -> String,
}

impl<P: ErrorPolicy<E>, E> ErrorPolicy<E> for Described<P, E> {
    fn record(&self, error: &E) -> Option<Result<String, serde_json::Error>> {
        self.policy.record(error)
    }
    fn decode(&self, data: &str) -> Option<Result<E, serde_json::Error>> {
        self.policy.decode(data)
    }
    fn describe(&self, error: &E) -> Option<String> {
        Some((self.describe)(error))
    }
}

/// The default: no error is recorded; a body's error releases the key so a retry runs
/// it again. (An error recorded by another call is still replayed, as
/// [`Error::RecordedError`](crate::Error::RecordedError).)
#[derive(Debug, Clone, Copy, Default)]
pub struct NoErrorReplay;

impl<E> ErrorPolicy<E> for NoErrorReplay {
    fn record(&self, _: &E) -> Option<Result<String, serde_json::Error>> {
        None
    }
    fn decode(&self, _: &str) -> Option<Result<E, serde_json::Error>> {
        None
    }
}

/// Records the errors a predicate chooses: see [`Call::replay_errors`](crate::Call::replay_errors).
pub struct ReplayErrors<E, F> {
    pub(super) predicate: F,
    pub(super) _error: PhantomData<fn(&E)>,
}

impl<E, F> ReplayErrors<E, F> {
    /// The policy that records the errors `predicate` chooses.
    pub(crate) fn new(predicate: F) -> Self {
        ReplayErrors {
            predicate,
            _error: PhantomData,
        }
    }
}

impl<E, F> ErrorPolicy<E> for ReplayErrors<E, F>
where
    E: Serialize + DeserializeOwned,
    F: Fn(&E) -> bool,
{
    fn record(&self, error: &E) -> Option<Result<String, serde_json::Error>> {
        (self.predicate)(error).then(|| serde_json::to_string(error))
    }
    fn decode(&self, data: &str) -> Option<Result<E, serde_json::Error>> {
        Some(serde_json::from_str(data))
    }
}
