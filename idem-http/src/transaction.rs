//! The handler's database writes and the layer's record in **one transaction**, for a
//! layer built with [`in_transaction`](crate::IdempotencyLayer::in_transaction): the
//! guarded call is the engine's
//! [`run_in_transaction`](idem_core::Call::run_in_transaction), whose transaction is lent
//! to the handler as a [`RequestTransaction`]; the handler writes its rows in it, the
//! layer reads its response whole, and the engine writes the recorded response in the
//! same transaction and commits both. Only then does the client get the response.
//!
//! The engine's rules stay the engine's (the key taken, the completion conditional on
//! the attempt holding it, the rollback of a failed or panicking handler, the commit
//! whose answer is lost): this module only lends the transaction, through a
//! [`Transaction`] of idem's that wraps the store's own ([`Shared`]). It names no
//! database: any store's transaction works (`idem_postgres::PgTransaction` today), so
//! idem-http does not depend on sqlx, and idem-postgres not on HTTP.

use std::future::Future;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use idem_core::store::{
    Attempt, Begin, Completion, Hold, Isolation, StoreError, Transaction, Written,
};
use idem_core::{Call, Report};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};

use crate::guard::Failed;
use crate::record::Recorded;

/// The request's database transaction, lent to its handler by a layer built with
/// [`in_transaction`](crate::IdempotencyLayer::in_transaction): the transaction in
/// which the layer records the handler's response. What the handler writes in it
/// commits with that record, after the handler's response body has ended, or not at
/// all: one request, one record, one transaction.
///
/// It dereferences to the store's transaction (`idem_postgres::PgTransaction`), so
/// queries run on it as on that one: `sqlx::query(...).execute(&mut **tx)`. The handler
/// must not commit or roll it back (the layer does), and gives it back by dropping it
/// (returning from the handler does): the layer commits once the response has ended, and
/// a transaction still held then is not committed (the request gets 503
/// `store-unavailable` and a retry runs the handler again).
///
/// In an axum handler (feature `axum`, on by default) it is an extractor:
///
/// ```no_run
/// use axum::{routing::post, Router};
/// use idem_core::Engine;
/// use idem_http::{IdempotencyLayer, RequestTransaction};
/// use idem_postgres::{PgStore, PgTransaction};
///
/// async fn pay(mut tx: RequestTransaction<PgTransaction>, body: String) -> (axum::http::StatusCode, String) {
///     sqlx::query("INSERT INTO ledger (note) VALUES ($1)")
///         .bind(&body)
///         .execute(&mut **tx)
///         .await
///         .expect("a real handler answers its own error");
///     (axum::http::StatusCode::CREATED, "paid".to_owned())
/// }
///
/// # async fn start() -> Result<(), Box<dyn std::error::Error>> {
/// // The pool holds one connection per guarded request in progress, plus headroom.
/// let pool = sqlx::postgres::PgPoolOptions::new()
///     .max_connections(20)
///     .connect("postgres://app@127.0.0.1/app")
///     .await?;
/// let store = PgStore::new(pool);
/// store.migrate().await?; // idem's table (once, at start-up or in your migrations)
/// let app: Router = Router::new().route("/payments", post(pay)).layer(
///     IdempotencyLayer::new(Engine::new(store))
///         .scope(|request| Some(request.headers.get("x-tenant")?.to_str().ok()?.to_owned()))
///         .in_transaction::<PgTransaction>(),
/// );
/// # let _ = app; Ok(()) }
/// ```
///
/// Elsewhere (a tower service), [`take`](RequestTransaction::take) it from the request's
/// extensions.
pub struct RequestTransaction<Tx> {
    held: OwnedMappedMutexGuard<Option<Tx>, Tx>,
}

impl<Tx> std::fmt::Debug for RequestTransaction<Tx> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTransaction").finish_non_exhaustive()
    }
}

impl<Tx: Transaction> RequestTransaction<Tx> {
    /// Takes the request's transaction from its extensions (where the layer put it), once
    /// per request: a second take, or a take on a request the layer did not run in a
    /// transaction of this type, is [`TransactionMissing`].
    pub async fn take(extensions: &mut http::Extensions) -> Result<Self, TransactionMissing> {
        let Lent(lent) = extensions
            .remove::<Lent<Tx>>()
            .ok_or(TransactionMissing::NotLent)?;
        OwnedMutexGuard::try_map(lent.lock_owned().await, Option::as_mut)
            .map(|held| RequestTransaction { held })
            .map_err(|_| TransactionMissing::Ended)
    }
}

impl<Tx> Deref for RequestTransaction<Tx> {
    type Target = Tx;

    fn deref(&self) -> &Tx {
        &self.held
    }
}

impl<Tx> DerefMut for RequestTransaction<Tx> {
    fn deref_mut(&mut self) -> &mut Tx {
        &mut self.held
    }
}

/// Why a handler has no [`RequestTransaction`]: a server misconfiguration, answered 500.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransactionMissing {
    /// The request has no transaction of this type: its layer was not built with
    /// [`in_transaction`](crate::IdempotencyLayer::in_transaction) for this type, the
    /// request was not guarded (no key on an optional route, or an unguarded method), or
    /// the handler already took it.
    #[error("the request has no transaction of this type: build its IdempotencyLayer with in_transaction::<Tx>() for the same type, guard the route's method and require its key, and take the transaction once")]
    NotLent,
    /// The request's transaction has ended (the handler took it after its response).
    #[error("the request's transaction has already ended")]
    Ended,
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for TransactionMissing {
    fn into_response(self) -> axum_core::response::Response {
        tracing::error!(target: "idem", error = %self, "a handler's transaction is missing");
        (http::StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

#[cfg(feature = "axum")]
impl<Tx: Transaction, S: Sync> axum_core::extract::FromRequestParts<S> for RequestTransaction<Tx> {
    type Rejection = TransactionMissing;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, TransactionMissing> {
        RequestTransaction::take(&mut parts.extensions).await
    }
}

/// The transaction as a request's extension: the handler's way to it.
struct Lent<Tx>(Arc<Mutex<Option<Tx>>>);

impl<Tx> Clone for Lent<Tx> {
    fn clone(&self) -> Self {
        Lent(self.0.clone())
    }
}

/// The store's transaction `Tx`, shared between the engine, which opens, completes and
/// commits it, and the handler, which writes in it meanwhile. The engine uses it only
/// once the handler has let go of it (its response has ended).
///
/// Its `Transaction` impl forwards every method of the trait to `Tx`: a method the
/// trait gains (a provided one included) must be forwarded here too, or `Tx`'s own is
/// lost behind the default.
struct Shared<Tx> {
    lent: Arc<Mutex<Option<Tx>>>,
}

/// What the engine is told when the handler still holds the transaction at the end of
/// its response.
const KEPT: &str = "the handler still holds its RequestTransaction after its response \
                    ended (moved into a task or the response body?); it is not committed, \
                    and it rolls back when the handler drops it";

impl<Tx> Shared<Tx> {
    /// The transaction, given back by the handler; an error if it still holds it.
    fn given_back(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Tx>>, StoreError> {
        self.lent
            .try_lock()
            .map_err(|_| StoreError::permanent(KEPT))
    }
}

#[async_trait]
impl<Tx: Transaction> Transaction for Shared<Tx> {
    type Store = Tx::Store;

    async fn open(store: &Tx::Store, isolation: Option<Isolation>) -> Result<Self, StoreError> {
        Ok(Shared {
            lent: Arc::new(Mutex::new(Some(Tx::open(store, isolation).await?))),
        })
    }

    fn holds_key(store: &Tx::Store) -> bool {
        Tx::holds_key(store)
    }

    /// Before the handler runs: the engine has it alone.
    async fn hold(&mut self, request: &Begin, wait: Option<Duration>) -> Result<Hold, StoreError> {
        let mut held = self.given_back()?;
        let transaction = held
            .as_mut()
            .ok_or_else(|| StoreError::permanent("the transaction has ended"))?;
        transaction.hold(request, wait).await
    }

    async fn complete(
        &mut self,
        attempt: &Attempt,
        completion: &Completion,
    ) -> Result<Written<()>, StoreError> {
        let mut held = self.given_back()?;
        let transaction = held
            .as_mut()
            .ok_or_else(|| StoreError::permanent("the transaction has ended"))?;
        transaction.complete(attempt, completion).await
    }

    async fn commit(self) -> Result<(), StoreError> {
        let transaction = self.given_back()?.take();
        match transaction {
            Some(transaction) => transaction.commit().await,
            None => Err(StoreError::permanent("the transaction has ended")),
        }
    }

    async fn rollback(self) -> Result<(), StoreError> {
        let transaction = self.given_back()?.take();
        match transaction {
            Some(transaction) => transaction.rollback().await,
            None => Ok(()),
        }
    }
}

/// The handler's part of a guarded call in a transaction: given the way to lend the
/// transaction to the request, it runs the handler and reads its response. Its error's
/// inner service error is kept aside by the caller (the type is not known here).
pub(crate) type Handler = Box<
    dyn FnOnce(Lend) -> Pin<Box<dyn Future<Output = Result<Recorded, Failed<()>>> + Send>> + Send,
>;

/// A guarded call in a transaction, its service error's type left out (see [`Handler`]).
pub(crate) type Outcome =
    Pin<Box<dyn Future<Output = Result<Report<Recorded>, Failed<()>>> + Send>>;

/// Puts the call's transaction into a request's extensions.
pub(crate) struct Lend(Box<dyn FnOnce(&mut http::Extensions) + Send>);

impl Lend {
    /// Lends the transaction to the request whose extensions these are.
    pub(crate) fn to(self, extensions: &mut http::Extensions) {
        (self.0)(extensions);
    }
}

/// A guarded call run in a transaction of one store's type, chosen when the layer is
/// built (so that the layer's type does not name it).
pub(crate) trait InTransaction: Send + Sync {
    /// The engine's transactional call, its transaction lent to `handler`.
    fn run(&self, call: Call, handler: Handler) -> Outcome;
}

/// [`InTransaction`] for the store transaction `Tx`.
pub(crate) struct Of<Tx>(PhantomData<fn() -> Tx>);

impl<Tx> Of<Tx> {
    pub(crate) fn new() -> Self {
        Of(PhantomData)
    }
}

impl<Tx: Transaction> InTransaction for Of<Tx> {
    fn run(&self, call: Call, handler: Handler) -> Outcome {
        Box::pin(
            call.run_in_transaction_reported(async move |_, shared: &mut Shared<Tx>| {
                let lent = Lent(shared.lent.clone());
                let lend = Lend(Box::new(move |extensions: &mut http::Extensions| {
                    extensions.insert(lent);
                }));
                handler(lend).await
            }),
        )
    }
}
