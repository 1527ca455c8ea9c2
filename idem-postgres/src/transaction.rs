//! The body's transaction, in which the completion commits with the body's writes.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use async_trait::async_trait;
use idem_core::store::{
    Attempt, Begin, Completion, Hold, Isolation, StepRecord, StoreError, Transaction, Written,
};
use sqlx::{PgConnection, Postgres, Row};

use crate::error::{is_conflict, is_lock_timeout};
use crate::store::{from_i64, to_i64, PgStore};

/// The `BEGIN` of a transaction at `isolation`.
fn begin_statement(isolation: Isolation) -> &'static str {
    match isolation {
        Isolation::ReadCommitted => "BEGIN ISOLATION LEVEL READ COMMITTED",
        Isolation::RepeatableRead => "BEGIN ISOLATION LEVEL REPEATABLE READ",
        // A new level idem-core may add is not weaker than serializable's promise to
        // the body; the database's strongest is asked for.
        Isolation::Serializable | _ => "BEGIN ISOLATION LEVEL SERIALIZABLE",
    }
}

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
    /// The key this transaction holds (the lock-held form), once its hold applied.
    held: Option<Held>,
}

/// A key held by the transaction: the attempt's fence, and the fence its row keeps
/// until the completion writes the attempt's (see `sql::hold`).
#[derive(Debug, Clone, Copy)]
struct Held {
    fence: u64,
    row_fence: u64,
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

    async fn open(store: &PgStore, isolation: Option<Isolation>) -> Result<Self, StoreError> {
        let transaction = match isolation {
            Some(isolation) => store.pool.begin_with(begin_statement(isolation)).await,
            None => store.pool.begin().await,
        }
        .map_err(|e| store.error("open", e))?;
        Ok(PgTransaction {
            transaction,
            store: store.clone(),
            held: None,
        })
    }

    fn holds_key(store: &PgStore) -> bool {
        store.inner.lock_held
    }

    /// One statement (`sql::hold`): refused at once, without a lock, by a record that
    /// was live as last committed; otherwise the record's row inserted, or updated if it
    /// is free, and locked until this transaction ends, under a fence drawn once the
    /// row is held; refused with the row as it is now if it turned out live. A row
    /// another transaction holds locked is waited for up to `wait` (1 ms without one:
    /// `lock_timeout` 0 would wait forever), then the key is busy (`55P03`). A
    /// serialization failure or a deadlock is a conflict: a fresh transaction sees what
    /// the one waited for committed.
    async fn hold(&mut self, request: &Begin, wait: Option<Duration>) -> Result<Hold, StoreError> {
        let lock_wait = format!("{}ms", wait.map_or(1, |wait| wait.as_millis().max(1)));
        let answer = self
            .store
            .begin_query(&self.store.inner.statements.hold, request)
            .bind(lock_wait.as_str())
            .fetch_optional(&mut *self.transaction)
            .await;
        let row = match answer {
            Ok(row) => row,
            Err(error) if is_lock_timeout(&error) => return Ok(Hold::Busy),
            Err(error) if is_conflict(&error) => return Ok(Hold::Conflict),
            Err(error) => return Err(self.store.error("begin", error)),
        };
        let row_fence = match &row {
            Some(row) => row
                .try_get::<Option<i64>, _>("held_fence")
                .map_err(|e| self.store.error("decode", e))?,
            None => None,
        };
        Ok(match (self.store.answer(&request.id, row)?, row_fence) {
            (Written::Applied(fence), Some(row_fence)) => {
                self.held = Some(Held {
                    fence,
                    row_fence: from_i64(&request.id, "fence", row_fence)?,
                });
                Hold::Taken(fence)
            }
            (Written::Applied(_), None) => {
                return Err(StoreError::malformed(format!(
                    "the hold of `{}` on {} applied without the row's fence",
                    request.id,
                    self.store.table()
                )))
            }
            (Written::Refused(record), _) => Hold::Refused(record),
        })
    }

    /// The store's complete statement, on this transaction's connection: the row stays
    /// locked until the commit, so a competing begin waits for it and then sees the
    /// completed record (or, after a rollback, the held one). For the attempt this
    /// transaction holds the key for, it is conditioned on the fence the row kept while
    /// held and writes the attempt's.
    async fn complete(
        &mut self,
        attempt: &Attempt,
        completion: &Completion,
    ) -> Result<Written<()>, StoreError> {
        let statements = &self.store.inner.statements;
        let query = match self.held {
            Some(held) if held.fence == attempt.fence => self
                .store
                .complete_query(
                    &statements.complete_held,
                    attempt,
                    held.row_fence,
                    completion,
                )
                .bind(to_i64(attempt.fence)),
            _ => {
                self.store
                    .complete_query(&statements.complete, attempt, attempt.fence, completion)
            }
        };
        let row = query
            .fetch_optional(&mut *self.transaction)
            .await
            .map_err(|e| self.store.error("complete", e))?;
        Ok(self.store.answer(&attempt.id, row)?.map(|_| ()))
    }

    /// The store's journal statement, on this transaction's connection: the step's entry
    /// commits with what the transaction wrote (a database step's rows), or not at all,
    /// and the row stays locked until then, so no takeover comes between the condition
    /// and the commit. For the attempt this transaction holds the key for (the lock-held
    /// form), conditioned on the fence the row keeps while held, as its completion is.
    async fn journal(
        &mut self,
        attempt: &Attempt,
        step: &StepRecord,
    ) -> Result<Written<()>, StoreError> {
        let fence = match self.held {
            Some(held) if held.fence == attempt.fence => held.row_fence,
            _ => attempt.fence,
        };
        let row = self
            .store
            .journal_query(attempt, fence, step)
            .fetch_optional(&mut *self.transaction)
            .await
            .map_err(|e| self.store.error("journal", e))?;
        Ok(self.store.answer(&attempt.id, row)?.map(|_| ()))
    }

    async fn commit(self) -> Result<(), StoreError> {
        let PgTransaction {
            transaction, store, ..
        } = self;
        transaction
            .commit()
            .await
            .map_err(|e| store.error("commit", e))
    }

    async fn rollback(self) -> Result<(), StoreError> {
        let PgTransaction {
            transaction, store, ..
        } = self;
        transaction
            .rollback()
            .await
            .map_err(|e| store.error("rollback", e))
    }
}
