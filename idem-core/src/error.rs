//! The errors a guarded call can return.

use serde::de::DeserializeOwned;

use crate::codec::Encoded;
use crate::store::StoreError;

/// What went wrong in a guarded call, besides the body's own errors.
///
/// A function guarded by idem returns `Result<T, E>` with `E: From<idem::Error>`; these
/// are the errors it adds. Each message says what happened and what to do. The key
/// itself never appears in a message or an event, only its namespace and digest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No engine was given to the call, none is scoped and none is installed.
    #[error(
        "no idem engine is installed: call `Engine::install` once at start-up, \
         run the call inside `engine.scope(...)` (tests), \
         or pass an engine to the call (`engine = ...` in #[idempotent])"
    )]
    NoEngine,

    /// [`Engine::install`](crate::Engine::install) was called twice.
    #[error("an idem engine is already installed; install one engine per process, at start-up")]
    AlreadyInstalled,

    /// The engine or call was configured with values that cannot work.
    #[error("invalid idem configuration: {0}")]
    Config(String),

    /// The key (or fingerprint) cannot be encoded, is empty, or makes an id too long.
    #[error("invalid idempotency key for `{namespace}`: {reason}")]
    InvalidKey {
        /// The call's namespace.
        namespace: String,
        /// What is wrong and what to do.
        reason: String,
    },

    /// Another call holds the key's lease now. The body did not run.
    #[error(
        "`{namespace}` is already in progress for this key (digest {digest}); \
         retry later, or set `wait` to poll until it completes"
    )]
    InProgress {
        /// The call's namespace.
        namespace: String,
        /// The key's digest.
        digest: String,
        /// When the holder's lease ends (epoch milliseconds, on the engine's clock)
        /// unless it is renewed: a retry before then meets it in progress. `None` where
        /// the store has no lease clock.
        lease_until_ms: Option<u64>,
    },

    /// The key was first used with a different payload. The body did not run.
    #[error(
        "payload mismatch for `{namespace}` (digest {digest}): this key was first used with a \
         different payload; a client is reusing an idempotency key for a new request"
    )]
    PayloadMismatch {
        /// The call's namespace.
        namespace: String,
        /// The key's digest.
        digest: String,
    },

    /// The first call completed, but its result was too large to record. The body did
    /// not run again; this is final until the record expires.
    #[error(
        "`{namespace}` already completed for this key (digest {digest}), but its result was too \
         large to record, so it cannot be replayed; the body will not run again until the record expires"
    )]
    ResultNotStored {
        /// The call's namespace.
        namespace: String,
        /// The key's digest.
        digest: String,
    },

    /// The body ran and produced a value, but its lease was lost (another attempt took
    /// over, or the record is gone) so the value was not recorded. The record is
    /// untouched. The value is kept, encoded: see [`Error::lost_value`]. In a
    /// [`run_in_transaction`](crate::Call::run_in_transaction) call, the body's writes
    /// were rolled back.
    #[error(
        "`{namespace}` lost its lease while the body ran (digest {digest}): another attempt took \
         over or the record is gone, so this result was not recorded; the body's side effects \
         may have happened twice unless they were rolled back with it (run_in_transaction) or \
         the downstream call used the token as its idempotency key"
    )]
    LeaseLost {
        /// The call's namespace.
        namespace: String,
        /// The key's digest.
        digest: String,
        /// The value the body returned, encoded as it would have been recorded (`None`
        /// when it could not be encoded): [`lost_value`](Error::lost_value) decodes it.
        value: Option<Encoded>,
    },

    /// A recorded error was replayed, but this call has no decoder for its error type
    /// (it did not set `replay_errors`). `data` is the recorded error as JSON.
    #[error(
        "`{namespace}` already failed for this key (digest {digest}) and its error was recorded: {data}"
    )]
    RecordedError {
        /// The call's namespace.
        namespace: String,
        /// The key's digest.
        digest: String,
        /// The recorded error, encoded as JSON.
        data: String,
    },

    /// A record exists but cannot be decoded (the type changed between deploys, the
    /// record is corrupt, or it was written by a newer version). The body is never
    /// re-run because of it.
    #[error(
        "cannot decode the record of `{namespace}` (digest {digest}): {reason}; the body was not \
         run; if the result type changed in a deploy, change the namespace too (`name = ...` in \
         #[idempotent], the first argument of `Call::new`)"
    )]
    Decode {
        /// The call's namespace.
        namespace: String,
        /// The key's digest.
        digest: String,
        /// What could not be decoded.
        reason: String,
    },

    /// An at-most-once step ([`Step::at_most_once`](crate::Step::at_most_once)) started
    /// under an earlier attempt of this key and its result was never journaled (that
    /// attempt died or lost its lease in between): its effect may or may not have
    /// happened, so it was not run again. Ask the downstream system whether it happened,
    /// by the step's key, then decide with [`Step::on_uncertain`](crate::Step::on_uncertain).
    #[error(
        "step `{step}` of `{namespace}` (digest {digest}) started under an earlier attempt and \
         its result was never journaled, so it was not run again (it is at most once): ask the \
         downstream system whether it happened, by the key the step sent (derived from the step \
         token {step_key}), and resume with Step::on_uncertain"
    )]
    StepUncertain {
        /// The call's namespace.
        namespace: String,
        /// The key's digest.
        digest: String,
        /// The step's name.
        step: String,
        /// The step's token ([`key::step_token`](crate::key::step_token); what
        /// [`Context::current`](crate::Context::current)'s token was inside the step).
        /// What the step sent downstream derives from it: through `idem-http`'s
        /// middleware, `idem_http::downstream_key(step_key, label)`.
        step_key: String,
    },

    /// A step could not be run as written: its name was used twice in one attempt, it
    /// was started inside another step, the key is held in a way that keeps no journal
    /// (PostgreSQL's lock-held form), or its value is too large to journal. Nothing of
    /// the step ran, except for a value too large, whose step did run (a later attempt
    /// runs it again, with the same step key).
    #[error("step `{step}` of `{namespace}` cannot be journaled: {reason}")]
    Step {
        /// The call's namespace.
        namespace: String,
        /// The step's name.
        step: String,
        /// What is wrong, and what to do.
        reason: String,
    },

    /// The store failed (before the body ran, unless stated otherwise by the caller's
    /// event log).
    #[error("the idem store failed during {operation} for `{namespace}`: {source}")]
    Store {
        /// The call's namespace.
        namespace: String,
        /// `begin`, `read`, ...
        operation: &'static str,
        /// The store's error.
        #[source]
        source: StoreError,
    },
}

impl Error {
    /// For [`Error::LeaseLost`], the value the body produced, decoded.
    pub fn lost_value<T: DeserializeOwned>(&self) -> Option<Result<T, String>> {
        match self {
            Error::LeaseLost {
                value: Some(value), ..
            } => Some(value.decode()),
            _ => None,
        }
    }

    /// Whether the same call may succeed later without any change: in progress, or a
    /// transient store error.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::InProgress { .. } => true,
            Error::Store { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}

/// So that a function returning `std::io::Result<T>` can be guarded: the orphan rule
/// keeps users from writing this impl themselves.
impl From<Error> for std::io::Error {
    fn from(error: Error) -> Self {
        let kind = match &error {
            Error::InProgress { .. } => std::io::ErrorKind::WouldBlock,
            Error::InvalidKey { .. } | Error::Config(_) => std::io::ErrorKind::InvalidInput,
            Error::Decode { .. } => std::io::ErrorKind::InvalidData,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, error)
    }
}
