//! The body's transaction, in which the completion commits with the body's writes.

use std::ops::{Deref, DerefMut};

use async_trait::async_trait;
use idem_core::store::{Attempt, Completion, StoreError, Transaction, Written};
use sqlx::{PgConnection, Postgres};

use crate::store::PgStore;

/// A transaction on the store's pool, handed to a body run with
/// [`Call::run_in_transaction`](idem_core::Call::run_in_transaction): the body writes in
/// it, idem writes the completion in it and commits both together.
///
/// It dereferences to the transaction's connection, so sqlx queries run on it as on any
/// connection: `sqlx::query(...).execute(&mut **tx)`. The body must not commit or roll
/// it back; idem does, after the body returns.
pub struct PgTransaction {
    transaction: sqlx::Transaction<'static, Postgres>,
    store: PgStore,
}

impl std::fmt::Debug for PgTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTransaction")
            .field("table", &self.store.table())
            .finish_non_exhaustive()
    }
}

impl PgTransaction {
    /// The transaction's connection (what `&mut **tx` gives too).
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.transaction
    }
}

impl Deref for PgTransaction {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.transaction
    }
}

impl DerefMut for PgTransaction {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.transaction
    }
}

#[async_trait]
impl Transaction for PgTransaction {
    type Store = PgStore;

    async fn open(store: &PgStore) -> Result<Self, StoreError> {
        let transaction = store
            .pool
            .begin()
            .await
            .map_err(|e| store.error("open", e))?;
        Ok(PgTransaction {
            transaction,
            store: store.clone(),
        })
    }

    /// The store's complete statement, on this transaction's connection: the row stays
    /// locked until the commit, so a competing begin waits for it and then sees the
    /// completed record (or, after a rollback, the held one).
    async fn complete(
        &mut self,
        attempt: &Attempt,
        completion: &Completion,
    ) -> Result<Written<()>, StoreError> {
        let row = self
            .store
            .complete_query(attempt, completion)
            .fetch_optional(&mut *self.transaction)
            .await
            .map_err(|e| self.store.error("complete", e))?;
        Ok(self.store.answer(&attempt.id, row)?.map(|_| ()))
    }

    async fn commit(self) -> Result<(), StoreError> {
        let PgTransaction { transaction, store } = self;
        transaction
            .commit()
            .await
            .map_err(|e| store.error("commit", e))
    }

    async fn rollback(self) -> Result<(), StoreError> {
        let PgTransaction { transaction, store } = self;
        transaction
            .rollback()
            .await
            .map_err(|e| store.error("rollback", e))
    }
}
