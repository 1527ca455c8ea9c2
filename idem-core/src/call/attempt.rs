//! The one path of a call, guarded or not, whatever the destination of its completion:
//! take the key, open the destination, run the body under the kept lease, then record
//! its value, or discard its writes and finish its failure.

use crate::key::Namespace;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::Instrument as _;

use super::destination::Destination;
use super::finish::Failure;
use super::guard::{Guard, Held};
use super::policy::ErrorPolicy;
use super::report::Report;
use super::take::Taken;
use crate::context::Context;
use crate::engine::Engine;
use crate::error::Error;
use crate::observe::{self, CallOutcome};

impl Guard {
    /// Runs `body` at most once for this key, its completion written to `D`, or
    /// replays what the key's record holds.
    pub(super) async fn attempt<D, T, E, B, P>(
        &mut self,
        body: B,
        errors: &P,
    ) -> Result<Report<T>, E>
    where
        D: Destination,
        B: AsyncFnOnce(Context, &mut D) -> Result<T, E>,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        self.holds_key = D::holds_key(&self.engine);
        // The lock-held form opens the destination to take the key in it.
        let mut holding: Option<D> = None;
        let held = match self.take(errors, &mut holding).await? {
            Taken::Held(held) => held,
            Taken::Replayed(report) => return Ok(report),
        };
        let attempt = held.attempt();
        let Held {
            context,
            lease_until_ms,
        } = &held;
        async {
            let opened = match holding {
                Some(destination) => Ok(destination),
                None => D::open(&self.engine, &self.namespace, self.isolation).await,
            };
            let mut destination = match opened {
                Ok(destination) => destination,
                Err(error) => {
                    self.release(attempt).await;
                    observe::call(&self.namespace, CallOutcome::StoreError);
                    return Err(self.store_error("open", error).into());
                }
            };
            // The closure is called inside the guard too: a panic before its future
            // exists releases the key like one inside it.
            let for_body = context.clone();
            let destination_ref = &mut destination;
            let body = context.clone().scope(
                AssertUnwindSafe(async move { body(for_body, destination_ref).await })
                    .catch_unwind(),
            );
            // A key the destination holds needs no heartbeat: its lease is the open
            // transaction, which no clock ends.
            let ended = if self.holds_key {
                body.await
            } else {
                self.drive(attempt, context, *lease_until_ms, body).await
            };
            let failure = match ended {
                Ok(Ok(value)) => return destination.complete_value(self, attempt, value).await,
                Ok(Err(error)) => Failure::Returned(error),
                Err(panic) => Failure::Panicked(panic),
            };
            destination.discard(self).await;
            self.fail::<D, _, _, _>(attempt, failure, errors).await
        }
        .instrument(self.span(attempt))
        .await
    }
}

/// An unguarded body (no key, and the call allowed it, or a disabled engine): no
/// record, but its destination is opened and kept, or discarded, under the engine's
/// store timeout all the same.
pub(super) async fn unguarded<D, T, E, B>(
    engine: &Engine,
    namespace: &Namespace,
    context: Context,
    isolation: Option<crate::store::Isolation>,
    body: B,
) -> Result<Report<T>, E>
where
    D: Destination,
    B: AsyncFnOnce(Context, &mut D) -> Result<T, E>,
    E: From<Error>,
{
    let store_error = |operation, source| Error::Store {
        namespace: namespace.to_string(),
        operation,
        source,
    };
    let mut destination = D::open(engine, namespace, isolation)
        .await
        .map_err(|e| store_error("open", e))?;
    let value = context.clone().scope(body(context, &mut destination)).await;
    match value {
        Ok(value) => {
            destination
                .keep_unguarded(engine, namespace)
                .await
                .map_err(|e| store_error("commit", e))?;
            Ok(Report::unguarded(value))
        }
        Err(error) => {
            destination.discard_unguarded(engine, namespace).await;
            Err(error)
        }
    }
}
