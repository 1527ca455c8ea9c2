//! Where an attempt's completion is written: the store itself ([`InStore`], for
//! [`Call::run`](super::Call::run)), or the body's transaction, committed with the
//! body's own writes (any [`Transaction`], for
//! [`Call::run_in_transaction`](super::Call::run_in_transaction)). The one path of a
//! call ([`attempt`](super::attempt)) differs only in this.

use crate::key::Namespace;

use std::time::Duration;

use super::Recordable;

use super::finish::Completed;
use super::guard::{store_call, Guard};
use super::report::Report;
use crate::engine::Engine;
use crate::error::Error;
use crate::observe::{self, CallOutcome};
use crate::protocol::{self, CompleteAnswer};
use crate::store::{Attempt, Begin, Completion, Hold, Isolation, StoreError, Transaction};

/// Where an attempt's completion is written, and what becomes of the body's own writes.
pub(super) trait Destination: Sized {
    /// Checks, before anything is written, that the engine's store can take it.
    fn check(engine: &Engine, namespace: &str) -> Result<(), Error>;

    /// Opened once the key is held (or for an unguarded body), before the body runs;
    /// when it [holds the key](Destination::holds_key) itself, before the key is taken.
    async fn open(
        engine: &Engine,
        namespace: &Namespace,
        isolation: Option<Isolation>,
    ) -> Result<Self, StoreError>;

    /// Whether the key is taken inside the destination, opened first, and held by it
    /// until it ends (the lock-held form), rather than by a clock lease in the store.
    fn holds_key(engine: &Engine) -> bool;

    /// Takes the key inside the destination: called only when it
    /// [holds the key](Destination::holds_key).
    async fn hold(&mut self, request: &Begin, wait: Option<Duration>) -> Result<Hold, StoreError>;

    /// Records the value the body returned, durably, and tells the caller.
    async fn complete_value<T: Recordable, E: From<Error>>(
        self,
        guard: &Guard,
        attempt: &Attempt,
        value: T,
    ) -> Result<Report<T>, E>;

    /// Writes `completion` (an outcome other than a value: a recorded error) for
    /// `attempt`, which took the key in this destination, and keeps it: in the store,
    /// or in the destination and committed; a completion refused or failed, or a
    /// commit that failed, leaves nothing (the key free, or the outcome unknown to this
    /// call: recorded or free, never in progress).
    async fn complete_outcome(self, guard: &Guard, attempt: &Attempt, completion: &Completion);

    /// Discards what a failed body wrote, before its key is released or its error
    /// recorded, so no retry can see it.
    async fn discard(self, guard: &Guard);

    /// Keeps what an unguarded body wrote.
    async fn keep_unguarded(self, engine: &Engine, namespace: &Namespace)
        -> Result<(), StoreError>;

    /// Discards what a failed unguarded body wrote.
    async fn discard_unguarded(self, engine: &Engine, namespace: &Namespace);
}

/// The completion is written to the store by itself; the body writes nothing through
/// idem.
pub(super) struct InStore;

impl Destination for InStore {
    fn check(_: &Engine, _: &str) -> Result<(), Error> {
        Ok(())
    }

    async fn open(_: &Engine, _: &Namespace, _: Option<Isolation>) -> Result<Self, StoreError> {
        Ok(InStore)
    }

    fn holds_key(_: &Engine) -> bool {
        false
    }

    async fn hold(&mut self, _: &Begin, _: Option<Duration>) -> Result<Hold, StoreError> {
        Err(StoreError::permanent("the store's own begin takes the key"))
    }

    async fn complete_value<T: Recordable, E: From<Error>>(
        self,
        guard: &Guard,
        attempt: &Attempt,
        value: T,
    ) -> Result<Report<T>, E> {
        guard.complete_value(attempt, value).await
    }

    async fn complete_outcome(self, guard: &Guard, attempt: &Attempt, completion: &Completion) {
        guard.complete_outcome(attempt, completion).await
    }

    async fn discard(self, _: &Guard) {}

    async fn keep_unguarded(self, _: &Engine, _: &Namespace) -> Result<(), StoreError> {
        Ok(())
    }

    async fn discard_unguarded(self, _: &Engine, _: &Namespace) {}
}

/// The completion is written in the body's transaction and committed with its writes:
/// the body's writes persist iff the completion does.
impl<Tx: Transaction> Destination for Tx {
    fn check(engine: &Engine, namespace: &str) -> Result<(), Error> {
        match engine.store_as::<Tx::Store>() {
            Some(_) => Ok(()),
            None => Err(Error::Config(format!(
                "`{namespace}` runs in a transaction of {}, but the engine's store is another \
                 type; build the engine over that store",
                std::any::type_name::<Tx::Store>()
            ))),
        }
    }

    async fn open(
        engine: &Engine,
        namespace: &Namespace,
        isolation: Option<Isolation>,
    ) -> Result<Self, StoreError> {
        let store = engine.store_as::<Tx::Store>().ok_or_else(|| {
            StoreError::permanent("the engine's store is not the transaction's (checked before)")
        })?;
        store_call(engine, namespace, "open", Tx::open(store, isolation)).await
    }

    fn holds_key(engine: &Engine) -> bool {
        engine.store_as::<Tx::Store>().is_some_and(Tx::holds_key)
    }

    async fn hold(&mut self, request: &Begin, wait: Option<Duration>) -> Result<Hold, StoreError> {
        Transaction::hold(self, request, wait).await
    }

    async fn complete_value<T: Recordable, E: From<Error>>(
        mut self,
        guard: &Guard,
        attempt: &Attempt,
        value: T,
    ) -> Result<Report<T>, E> {
        let (spilled, completion) = guard.value_completion(&value);
        let answer = guard
            .store_call("complete", self.complete(attempt, &completion))
            .await;
        let completed = match guard.completed(attempt, &completion, answer) {
            Completed::Recorded { expires_at_s } => {
                match guard.store_call("commit", self.commit()).await {
                    Ok(()) => {
                        guard.remember(attempt, &completion);
                        Completed::Recorded { expires_at_s }
                    }
                    Err(error) => return guard.settle_commit(attempt, error, value).await,
                }
            }
            // Refused or failed: nothing of the body may persist.
            not_recorded => {
                self.discard(guard).await;
                if let Completed::NotRecorded(error) = not_recorded {
                    guard.release(attempt).await;
                    observe::call(&guard.namespace, CallOutcome::StoreError);
                    return Err(guard
                        .store_error(
                            "complete",
                            StoreError::transient(
                                "the completion could not be written in the body's transaction; \
                                 the body's writes were rolled back and the key released",
                            )
                            .with_source(error),
                        )
                        .into());
                }
                not_recorded
            }
        };
        guard.reported(
            attempt,
            completed,
            value,
            super::finish::encoded(completion, spilled),
        )
    }

    async fn complete_outcome(mut self, guard: &Guard, attempt: &Attempt, completion: &Completion) {
        let answer = guard
            .store_call("complete", self.complete(attempt, completion))
            .await;
        let refused = match answer.map(|written| protocol::after_complete(written, attempt)) {
            Ok(CompleteAnswer::Recorded) => {
                match guard.store_call("commit", self.commit()).await {
                    Ok(()) => guard.remember(attempt, completion),
                    Err(error) => {
                        tracing::warn!(target: "idem", namespace = %guard.namespace, digest = %guard.digest(),
                            %error, "the commit of the recorded error failed: the error is recorded, or the key is free");
                    }
                }
                return;
            }
            Ok(CompleteAnswer::LeaseLost { .. }) => "the completion was refused".to_owned(),
            Err(error) => format!("the completion failed: {error}"),
        };
        tracing::warn!(target: "idem", namespace = %guard.namespace, digest = %guard.digest(),
            "the error was not recorded ({refused}); rolled back, the key is free");
        self.discard(guard).await;
    }

    async fn discard(self, guard: &Guard) {
        if let Err(error) = guard.store_call("rollback", self.rollback()).await {
            // The database rolls back what it never saw committed.
            tracing::warn!(target: "idem", namespace = %guard.namespace, digest = %guard.digest(),
                %error, "the rollback failed; the database discards the uncommitted transaction");
        }
    }

    async fn keep_unguarded(
        self,
        engine: &Engine,
        namespace: &Namespace,
    ) -> Result<(), StoreError> {
        store_call(engine, namespace, "commit", self.commit()).await
    }

    async fn discard_unguarded(self, engine: &Engine, namespace: &Namespace) {
        // Dropped, the transaction rolls back as well.
        let _ = store_call(engine, namespace, "rollback", self.rollback()).await;
    }
}
