//! The PostgreSQL store: the `Store` mapping onto one row per record and one statement
//! per transition.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use idem_core::store::{
    Attempt, Begin, Codec, Completion, Limits, Outcome, Owner, Record, RecordId, Renewal, State,
    StepRecord, StoreError, Written, FORMAT,
};
use idem_core::Store;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{PgPool, Postgres, Row};

use crate::error::store_error;
use crate::sql::{self, Statements};

/// The table a store uses when none is named.
pub const DEFAULT_TABLE: &str = "idem_records";

/// The largest recorded value by default, in bytes.
pub const DEFAULT_MAX_DATA_BYTES: usize = 1024 * 1024;

/// The connections of a store's own for heartbeats, by default.
pub const DEFAULT_HEARTBEAT_CONNECTIONS: u32 = 2;

/// The longest record id the store takes, in bytes: well below the 2,704 bytes a
/// B-tree index entry may hold.
const MAX_ID_BYTES: usize = 1024;

/// idem's records in a PostgreSQL table: see the [crate documentation](crate).
#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    /// The connections heartbeats renew leases on: the store's own, apart from the
    /// application's pool ([`PgStoreBuilder::heartbeat_connections`]).
    heartbeats: PgPool,
    pub(crate) inner: Arc<Table>,
}

/// What every clone of a store shares: where its rows are, and its statements.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) schema: Option<String>,
    /// The table's name, as given.
    pub(crate) name: String,
    /// `"schema"."name"`, quoted: what the statements and messages use.
    pub(crate) table: String,
    pub(crate) max_data_bytes: usize,
    /// Whether transactions hold their keys themselves: [`PgStoreBuilder::lock_held`].
    pub(crate) lock_held: bool,
    pub(crate) statements: Statements,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("table", &self.inner.table)
            .field("max_data_bytes", &self.inner.max_data_bytes)
            .finish_non_exhaustive()
    }
}

/// A name the store refuses: see [`PgStoreBuilder::build`].
#[derive(Debug, thiserror::Error)]
#[error(
    "`{name}` is not a valid {what} name for idem: use 1 to 48 ASCII letters, digits and \
     underscores, not starting with a digit"
)]
pub struct NameError {
    what: &'static str,
    name: String,
}

/// Builds a [`PgStore`]: [`PgStore::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until it is built"]
pub struct PgStoreBuilder {
    pool: PgPool,
    schema: Option<String>,
    table: String,
    max_data_bytes: usize,
    lock_held: bool,
    heartbeat_connections: u32,
}

impl PgStoreBuilder {
    /// How many connections of its own the store keeps for heartbeats
    /// ([`DEFAULT_HEARTBEAT_CONNECTIONS`] by default), opened as the application pool
    /// opens its own (its connect options and its hooks: an `after_connect` that sets
    /// the search path or a role applies to them too), on first use, and kept open. A heartbeat renews a lease while its body runs; on the application's pool it
    /// would wait for a connection behind the bodies that hold them (every
    /// [`run_in_transaction`](idem_core::Call::run_in_transaction) body holds one for its
    /// whole run) and fail after the store timeout, and the lease would lapse under a
    /// running body: a duplicate would take the key over and run beside it. These
    /// connections are used by heartbeats only, each for one short statement, so a few
    /// serve many calls at once; a begin waits until one is open (once, when the store
    /// starts or after the server closed them), so no body starts without one.
    /// `0` runs heartbeats on the application's pool, as earlier versions did: size it
    /// for every body's transaction plus the heartbeats then.
    pub fn heartbeat_connections(mut self, connections: u32) -> Self {
        self.heartbeat_connections = connections;
        self
    }

    /// How [`Call::run_in_transaction`](idem_core::Call::run_in_transaction) holds the
    /// key: `true` by the body's own transaction, opened first, whose lock on the
    /// record's row is the lease (no clock, no heartbeat, and a crash frees the key as
    /// soon as PostgreSQL ends the session); `false` (the default) by a clock lease
    /// committed before the transaction opens and renewed by heartbeats, as a plain
    /// call's. Turn it on once the table is migrated (the fences' sequence) and no older
    /// build runs on it: see the [crate documentation](crate#the-lease-is-the-transaction).
    pub fn lock_held(mut self, lock_held: bool) -> Self {
        self.lock_held = lock_held;
        self
    }

    /// The table's schema; by default the first schema of the connections' search path.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// The table's name; [`DEFAULT_TABLE`] by default.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The largest value or error, in bytes once encoded, that is recorded
    /// ([`DEFAULT_MAX_DATA_BYTES`] by default). A larger one is completed as not stored:
    /// the body's effect is kept (and committed, in a transaction) and duplicates get
    /// `Error::ResultNotStored` until the record expires.
    pub fn max_data_bytes(mut self, max_data_bytes: usize) -> Self {
        self.max_data_bytes = max_data_bytes;
        self
    }

    /// The store. Names are checked here, since they are written into its SQL: 1 to 48
    /// ASCII letters, digits and underscores, not starting with a digit.
    pub fn build(self) -> Result<PgStore, NameError> {
        let check = |what, name: &str| {
            let valid = (1..=48).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit();
            if valid {
                Ok(())
            } else {
                Err(NameError {
                    what,
                    name: name.to_owned(),
                })
            }
        };
        check("table", &self.table)?;
        if let Some(schema) = &self.schema {
            check("schema", schema)?;
        }
        let statements = Statements::new(self.schema.as_deref(), &self.table);
        // No connection is opened here, and no task spawned (no idle timeout, no
        // lifetime, no minimum): building needs neither a database nor a runtime.
        let heartbeats = match self.heartbeat_connections {
            0 => self.pool.clone(),
            // The application pool's options, hooks included (an `after_connect` that
            // sets the search path or a role applies to heartbeats too: an unqualified
            // table is the same table), with a size of its own.
            connections => self
                .pool
                .options()
                .clone()
                .max_connections(connections)
                .min_connections(0)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_lazy_with((*self.pool.connect_options()).clone()),
        };
        Ok(PgStore {
            heartbeats,
            pool: self.pool,
            inner: Arc::new(Table {
                table: sql::qualified(self.schema.as_deref(), &self.table),
                schema: self.schema,
                name: self.table,
                max_data_bytes: self.max_data_bytes,
                lock_held: self.lock_held,
                statements,
            }),
        })
    }
}

impl PgStore {
    /// A store on `pool`, in the table [`DEFAULT_TABLE`] of the search path's schema.
    pub fn new(pool: PgPool) -> PgStore {
        PgStore::builder(pool)
            .build()
            .expect("the default table name is valid")
    }

    /// A builder on `pool`, to name the table and its schema or set the size limit.
    pub fn builder(pool: PgPool) -> PgStoreBuilder {
        PgStoreBuilder {
            pool,
            schema: None,
            table: DEFAULT_TABLE.to_owned(),
            max_data_bytes: DEFAULT_MAX_DATA_BYTES,
            lock_held: false,
            heartbeat_connections: DEFAULT_HEARTBEAT_CONNECTIONS,
        }
    }

    /// The pool the store runs on.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The table, quoted and qualified by its schema if it has one.
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// The SQL [`migrate`](PgStore::migrate) runs, for a migration tool of your own.
    pub fn migration(&self) -> String {
        sql::migration(self.inner.schema.as_deref(), &self.inner.name)
    }

    /// Creates the table and its index (and the schema, when one was named) if they do
    /// not exist. Safe to run from many processes at once: they take turns on an
    /// advisory lock.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let error = |e| store_error("migrate", &self.inner.table, e);
        let mut transaction = self.pool.begin().await.map_err(error)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('idem-postgres migrate'))")
            .execute(&mut *transaction)
            .await
            .map_err(error)?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(self.migration()))
            .execute(&mut *transaction)
            .await
            .map_err(error)?;
        transaction.commit().await.map_err(error)
    }

    /// Deletes up to `batch` records that are past both their expiry and their lease
    /// (by the system clock), and answers how many it deleted. Such records are free
    /// already (a begin takes them over); this only gives their space back.
    ///
    /// Each call is one short statement; rows that a live call holds locked are
    /// skipped, not waited for, so it never blocks live calls. Call it in a loop until
    /// it answers less than `batch`, from a periodic job:
    ///
    /// ```no_run
    /// # async fn purge(store: idem_postgres::PgStore) -> Result<(), idem_core::store::StoreError> {
    /// while store.purge_expired(1000).await? == 1000 {}
    /// # Ok(()) }
    /// ```
    pub async fn purge_expired(&self, batch: u32) -> Result<u64, StoreError> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let deleted = self
            .query(&self.inner.statements.purge)
            .bind(to_i64(now_ms / 1000))
            .bind(to_i64(now_ms))
            .bind(i64::from(batch))
            .execute(&self.pool)
            .await
            .map_err(|e| self.error("purge", e))?;
        Ok(deleted.rows_affected())
    }

    /// Waits until the heartbeats' pool has a connection open, when it has none (once
    /// when the store starts, or after the server closed them): the begin that takes a
    /// key waits for it, bounded by the engine's store timeout, so no body starts
    /// with a lease its heartbeats cannot reach the database to renew.
    async fn reserve_heartbeats(&self) -> Result<(), StoreError> {
        if self.heartbeats.size() == 0 {
            // Returned to the pool when dropped, and kept open there.
            self.heartbeats
                .acquire()
                .await
                .map_err(|e| self.error("begin", e))?;
        }
        Ok(())
    }

    /// One of the store's statements (its text is shared, not copied), to bind.
    pub(crate) fn query<'q>(&self, sql: &Arc<str>) -> Query<'q, Postgres, PgArguments> {
        // Built by `Statements::new` from names `build` checked.
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
    }

    pub(crate) fn error(&self, operation: &'static str, error: sqlx::Error) -> StoreError {
        store_error(operation, &self.inner.table, error)
    }

    /// A statement that takes the key (begin, or hold) with `request` bound.
    pub(crate) fn begin_query<'q>(
        &self,
        sql: &Arc<str>,
        request: &'q Begin,
    ) -> Query<'q, Postgres, PgArguments> {
        self.query(sql)
            .bind(request.id.to_string())
            .bind(request.owner.to_string())
            .bind(to_i64(request.now_ms))
            .bind(to_i64(request.lease_until_ms))
            .bind(to_i64(request.expires_at_s))
            .bind(request.fingerprint.as_deref())
            .bind(FORMAT as i32)
            .bind(Codec::Json.as_str())
    }

    /// A complete statement (`sql`) with its arguments bound, conditioned on the row's
    /// `fence`.
    pub(crate) fn complete_query<'q>(
        &'q self,
        sql: &Arc<str>,
        attempt: &'q Attempt,
        fence: u64,
        completion: &'q Completion,
    ) -> Query<'q, Postgres, PgArguments> {
        let (text, bytes) = data_columns(completion);
        self.query(sql)
            .bind(attempt.id.to_string())
            .bind(attempt.owner.to_string())
            .bind(to_i64(fence))
            .bind(completion.outcome.as_str())
            .bind(text)
            .bind(to_i64(completion.expires_at_s))
            .bind(bytes)
            .bind(completion.codec.as_str())
    }

    /// The answer of a write (`write_then_current`): applied with its fence, or refused
    /// with the current record.
    pub(crate) fn answer(
        &self,
        id: &RecordId,
        row: Option<PgRow>,
    ) -> Result<Written<u64>, StoreError> {
        let Some(row) = row else {
            return Ok(Written::Refused(None));
        };
        let column = |e| self.error("decode", e);
        let applied: bool = row.try_get("applied").map_err(column)?;
        if applied {
            let fence: i64 = row.try_get("fence").map_err(column)?;
            return Ok(Written::Applied(from_i64(id, "fence", fence)?));
        }
        self.decode(id, &row)
            .map(|record| Written::Refused(Some(Arc::new(record))))
    }

    /// A record from its row; an error names the store, the table and the record, and
    /// keeps sqlx's error as its source.
    fn decode(&self, id: &RecordId, row: &PgRow) -> Result<Record, StoreError> {
        let context = format!("PostgreSQL row of `{id}` in {}", self.inner.table);
        let malformed = |e: sqlx::Error| {
            StoreError::malformed(format!("{context} cannot be decoded: {e}")).with_source(e)
        };
        let text = |name: &str| row.try_get::<String, _>(name).map_err(malformed);
        let optional = |name: &str| row.try_get::<Option<String>, _>(name).map_err(malformed);
        let number = |name: &str| {
            let value: i64 = row.try_get(name).map_err(malformed)?;
            u64::try_from(value).map_err(|_| {
                StoreError::malformed(format!("{context}: column `{name}` is negative"))
            })
        };
        let state: State = text("state")?
            .parse()
            .map_err(|e: String| StoreError::malformed(format!("{context}: {e}")))?;
        let outcome = match optional("outcome")? {
            Some(outcome) => Some(
                outcome
                    .parse::<Outcome>()
                    .map_err(|e| StoreError::malformed(format!("{context}: {e}")))?,
            ),
            None => None,
        };
        let format: i32 = row.try_get("format").map_err(malformed)?;
        let codec = Codec::from_stored(&text("codec")?);
        let data = match codec {
            Codec::Json => optional("data")?.map(Bytes::from),
            _ => row
                .try_get::<Option<Vec<u8>>, _>("data_bytes")
                .map_err(malformed)?
                .map(Bytes::from),
        };
        Ok(Record {
            id: id.clone(),
            state,
            owner: Owner::from_stored(&text("owner")?),
            fence: number("fence")?,
            lease_until_ms: number("lease_until_ms")?,
            expires_at_s: number("expires_at_s")?,
            fingerprint: optional("fingerprint")?,
            outcome,
            data,
            format: u32::try_from(format).map_err(|_| {
                StoreError::malformed(format!("{context}: the format is negative: {format}"))
            })?,
            codec,
            steps: decode_steps(row, &context)?.into(),
        })
    }

    /// A journal write (`sql::journal`) of `step` by `attempt`, conditioned on the
    /// row's `fence`, to run on the pool or in a transaction.
    pub(crate) fn journal_query<'q>(
        &self,
        attempt: &'q Attempt,
        fence: u64,
        step: &'q StepRecord,
    ) -> Query<'q, Postgres, PgArguments> {
        self.query(&self.inner.statements.journal)
            .bind(attempt.id.to_string())
            .bind(attempt.owner.to_string())
            .bind(to_i64(fence))
            .bind(step.name.as_str())
            .bind(step.outcome.map(Outcome::as_str))
            .bind(step.codec.as_str())
            .bind(step.data.as_deref())
    }

    /// The answers to a batch statement (`batch_write_then_current`) in the order of
    /// `ids`: applied, refused with the current row, or refused with none. A key with no
    /// row at all may have been inserted by a concurrent begin that the statement's
    /// snapshot cannot see: it is read again, as a single begin does.
    async fn batch_answers(
        &self,
        operation: &'static str,
        ids: &[&RecordId],
        texts: &[String],
        rows: Result<Vec<PgRow>, sqlx::Error>,
    ) -> Vec<Result<Written<u64>, StoreError>> {
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => return self.error(operation, error).for_each_item(ids.len()),
        };
        let mut by_id = HashMap::with_capacity(rows.len());
        for row in rows {
            match row.try_get::<String, _>("id") {
                Ok(id) => {
                    by_id.insert(id, row);
                }
                Err(error) => return self.error("decode", error).for_each_item(ids.len()),
            }
        }
        let mut answers = Vec::with_capacity(ids.len());
        for (id, text) in ids.iter().zip(texts) {
            answers.push(match self.answer(id, by_id.remove(text)) {
                Ok(Written::Refused(None)) => self.read(id).await.map(Written::Refused),
                answer => answer,
            });
        }
        answers
    }

    /// A write conditioned on the attempt holding the record, on `pool`.
    async fn held_write(
        &self,
        operation: &'static str,
        attempt: &Attempt,
        pool: &PgPool,
        query: Query<'_, Postgres, PgArguments>,
    ) -> Result<Written<()>, StoreError> {
        let row = query
            .fetch_optional(pool)
            .await
            .map_err(|e| self.error(operation, e))?;
        Ok(self.answer(&attempt.id, row)?.map(|_| ()))
    }
}

/// The journal of a row (`sql::STEP_COLUMNS`): four arrays as long as each other, or
/// all `NULL` (no steps, or a row written before steps existed).
fn decode_steps(row: &PgRow, context: &str) -> Result<Vec<StepRecord>, StoreError> {
    let malformed = |e: sqlx::Error| {
        StoreError::malformed(format!("{context} cannot be decoded: {e}")).with_source(e)
    };
    let texts = |name: &str| {
        row.try_get::<Option<Vec<Option<String>>>, _>(name)
            .map_err(malformed)
    };
    let names = texts("step_names")?;
    let outcomes = texts("step_outcomes")?;
    let codecs = texts("step_codecs")?;
    let data = row
        .try_get::<Option<Vec<Option<Vec<u8>>>>, _>("step_data")
        .map_err(malformed)?;
    let Some(names) = names else {
        return match (outcomes, codecs, data) {
            (None, None, None) => Ok(Vec::new()),
            _ => Err(StoreError::malformed(format!(
                "{context}: the journal has no step names but other step columns"
            ))),
        };
    };
    let (outcomes, codecs, data) = (
        outcomes.unwrap_or_default(),
        codecs.unwrap_or_default(),
        data.unwrap_or_default(),
    );
    if [outcomes.len(), codecs.len(), data.len()] != [names.len(); 3] {
        return Err(StoreError::malformed(format!(
            "{context}: the journal's columns differ in length ({} names, {} outcomes, {} \
             codecs, {} data)",
            names.len(),
            outcomes.len(),
            codecs.len(),
            data.len()
        )));
    }
    names
        .into_iter()
        .zip(outcomes)
        .zip(codecs)
        .zip(data)
        .map(|(((name, outcome), codec), data)| {
            let name = name.ok_or_else(|| {
                StoreError::malformed(format!("{context}: a step of the journal has no name"))
            })?;
            let outcome = outcome
                .map(|outcome| {
                    outcome.parse::<Outcome>().map_err(|e| {
                        StoreError::malformed(format!("{context}: step `{name}`: {e}"))
                    })
                })
                .transpose()?;
            let codec = codec.ok_or_else(|| {
                StoreError::malformed(format!("{context}: step `{name}` has no codec"))
            })?;
            Ok(StepRecord {
                name,
                outcome,
                data: data.map(Bytes::from),
                codec: Codec::from_stored(&codec),
            })
        })
        .collect()
}

/// One array parameter of a batch statement: `field` of each item.
fn column<'a, T, U>(items: &'a [T], field: impl Fn(&'a T) -> U) -> Vec<U> {
    items.iter().map(field).collect()
}

/// A completion's data as its two columns: JSON in `data` (text), anything else in
/// `data_bytes` (bytea).
fn data_columns(completion: &Completion) -> (Option<&str>, Option<&[u8]>) {
    match (&completion.codec, completion.data.as_deref()) {
        (Codec::Json, Some(json)) => match std::str::from_utf8(json) {
            Ok(json) => (Some(json), None),
            Err(_) => (None, Some(json)),
        },
        (_, data) => (None, data),
    }
}

/// A time or fence as PostgreSQL's `bigint`; idem's never reach `i64::MAX`, and one that
/// did would be written as the largest, still in the future.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn from_i64(id: &RecordId, name: &str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::malformed(format!("column `{name}` of `{id}` is negative")))
}

#[async_trait]
impl Store for PgStore {
    fn limits(&self) -> Limits {
        Limits {
            max_id_bytes: MAX_ID_BYTES,
            max_data_bytes: self.inner.max_data_bytes,
        }
    }

    /// Before the first begin (and after the server closed them), waits until a
    /// heartbeat connection is open: no body starts with its lease unrenewable.
    async fn begin(&self, request: &Begin) -> Result<Written<u64>, StoreError> {
        self.reserve_heartbeats().await?;
        let row = self
            .begin_query(&self.inner.statements.begin, request)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error("begin", e))?;
        match self.answer(&request.id, row)? {
            // Refused by a row that its statement's snapshot cannot see: one inserted by
            // a concurrent begin of the same new key, which this insert waited for. A
            // second statement (a new snapshot) reads it; only that race pays for it.
            Written::Refused(None) => Ok(Written::Refused(self.read(&request.id).await?)),
            answer => Ok(answer),
        }
    }

    /// One statement for every begin: the single begin's insert over `unnest`, its
    /// rows taken in id order.
    async fn begin_batch(&self, requests: &[Begin]) -> Vec<Result<Written<u64>, StoreError>> {
        if requests.is_empty() {
            return Vec::new();
        }
        if let Err(error) = self.reserve_heartbeats().await {
            return error.for_each_item(requests.len());
        }
        let ids = column(requests, |r| r.id.to_string());
        let rows = self
            .query(&self.inner.statements.begin_batch)
            .bind(&ids)
            .bind(column(requests, |r| r.owner.to_string()))
            .bind(column(requests, |r| to_i64(r.now_ms)))
            .bind(column(requests, |r| to_i64(r.lease_until_ms)))
            .bind(column(requests, |r| to_i64(r.expires_at_s)))
            .bind(column(requests, |r| r.fingerprint.as_deref()))
            .bind(FORMAT as i32)
            .bind(Codec::Json.as_str())
            .fetch_all(&self.pool)
            .await;
        self.batch_answers("begin_batch", &column(requests, |r| &r.id), &ids, rows)
            .await
    }

    /// One statement for every completion: the single complete's update over `unnest`,
    /// on rows locked in id order.
    async fn complete_batch(
        &self,
        completions: &[(Attempt, Completion)],
    ) -> Vec<Result<Written<()>, StoreError>> {
        if completions.is_empty() {
            return Vec::new();
        }
        let ids = column(completions, |(a, _)| a.id.to_string());
        let data = column(completions, |(_, c)| data_columns(c));
        let rows = self
            .query(&self.inner.statements.complete_batch)
            .bind(&ids)
            .bind(column(completions, |(a, _)| a.owner.to_string()))
            .bind(column(completions, |(a, _)| to_i64(a.fence)))
            .bind(column(completions, |(_, c)| c.outcome.as_str()))
            .bind(column(&data, |(text, _)| *text))
            .bind(column(completions, |(_, c)| to_i64(c.expires_at_s)))
            .bind(column(&data, |(_, bytes)| *bytes))
            .bind(column(completions, |(_, c)| c.codec.as_str()))
            .fetch_all(&self.pool)
            .await;
        self.batch_answers(
            "complete_batch",
            &column(completions, |(a, _)| &a.id),
            &ids,
            rows,
        )
        .await
        .into_iter()
        .map(|answer| answer.map(|written| written.map(|_| ())))
        .collect()
    }

    async fn complete(
        &self,
        attempt: &Attempt,
        completion: &Completion,
    ) -> Result<Written<()>, StoreError> {
        let query = self.complete_query(
            &self.inner.statements.complete,
            attempt,
            attempt.fence,
            completion,
        );
        self.held_write("complete", attempt, &self.pool, query)
            .await
    }

    async fn extend(
        &self,
        attempt: &Attempt,
        renewal: &Renewal,
    ) -> Result<Written<()>, StoreError> {
        let query = self
            .query(&self.inner.statements.extend)
            .bind(attempt.id.to_string())
            .bind(attempt.owner.to_string())
            .bind(to_i64(attempt.fence))
            .bind(to_i64(renewal.lease_until_ms))
            .bind(to_i64(renewal.expires_at_s));
        // On the store's own connections: never behind the bodies that hold the
        // application's.
        self.held_write("extend", attempt, &self.heartbeats, query)
            .await
    }

    /// One statement (`sql::journal`): the step written into the row's journal under
    /// complete's condition, or the row as it is now, journal included.
    async fn journal(
        &self,
        attempt: &Attempt,
        step: &StepRecord,
    ) -> Result<Written<()>, StoreError> {
        let query = self.journal_query(attempt, attempt.fence, step);
        self.held_write("journal", attempt, &self.pool, query).await
    }

    async fn release(&self, attempt: &Attempt) -> Result<Written<()>, StoreError> {
        let query = self
            .query(&self.inner.statements.release)
            .bind(attempt.id.to_string())
            .bind(attempt.owner.to_string())
            .bind(to_i64(attempt.fence));
        self.held_write("release", attempt, &self.pool, query).await
    }

    async fn read(&self, id: &RecordId) -> Result<Option<Arc<Record>>, StoreError> {
        let row = self
            .query(&self.inner.statements.read)
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error("read", e))?;
        row.map(|row| self.decode(id, &row).map(Arc::new))
            .transpose()
    }

    async fn delete(&self, id: &RecordId) -> Result<(), StoreError> {
        self.query(&self.inner.statements.delete)
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(|e| self.error("delete", e))?;
        Ok(())
    }
}
