//! The SQL of one table: its migration and one statement per operation, written once
//! per store (sqlx prepares each once per connection).

use std::sync::Arc;

/// The record's columns, in the order every statement reads them.
const COLUMNS: &str = "state, owner, fence, lease_until_ms, expires_at_s, fingerprint, outcome, \
     data, data_bytes, format, codec, step_names, step_outcomes, step_codecs, step_data";

/// The journal of steps ([`Record::steps`](idem_core::store::Record::steps)): four
/// arrays in the record's own row, one element per step, in the order of first writes,
/// all `NULL` for a record with no steps (and in every row written before steps
/// existed, which reads as an empty journal).
///
/// - `step_names text[]`: the steps' names;
/// - `step_outcomes text[]`: `ok`, `err`, or `NULL` while an at-most-once step has
///   started;
/// - `step_codecs text[]`: `json`, `bytes`, or a codec name this build does not know,
///   kept as stored;
/// - `step_data bytea[]`: the step's encoded value or error as it is, every byte (JSON's
///   UTF-8 text, or a `bytes` value that need not be UTF-8), `NULL` while started.
///
/// Why arrays in the row, and not a `jsonb` column or a child table:
/// - bytes stay `bytea`: `jsonb` would need them in base64 (or hex), a third larger and
///   decoded on every read;
/// - the journal is part of the row, so every statement that returns the record (a
///   read, a refused write's row read `FOR UPDATE`, which is the newest committed
///   version) returns the journal of that very version, in the same round trip and
///   without a join. A child table's rows would be read from the statement's snapshot,
///   which may be older than the locked row, and would cost every completion a `DELETE`
///   on a second table (and every delete and purge a cascade);
/// - a completion empties the journal by setting the four columns to `NULL` in the
///   update it does anyway: nothing more for a record without steps, and `delete` and
///   `purge_expired` need no change;
/// - a journal write is one `UPDATE` of the row under complete's condition, replacing
///   the element of the step's name in place or appending one (subscripted assignment:
///   [`JOURNAL_AT`]).
///
/// What it costs: a journal write rewrites the row with its whole journal (TOASTed
/// when large), which suits journals of a few steps; PostgreSQL holds at most 1 GB in
/// one field, and a journal past it is refused with a store error that says so.
const STEP_COLUMNS: &str = "step_names, step_outcomes, step_codecs, step_data";

/// The subscript a journal write ([`journal`]'s `$4`, the step's name) writes at: the
/// element of that name, or one past the last (the arrays, `NULL` or not, are as long
/// as each other).
const JOURNAL_AT: &str =
    "coalesce(array_position(step_names, $4::text), coalesce(cardinality(step_names), 0) + 1)";

/// What a completion writes into the journal: nothing (a replay needs only the
/// outcome).
const EMPTY_JOURNAL: &str =
    "step_names = NULL, step_outcomes = NULL, step_codecs = NULL, step_data = NULL";

/// What a take writes into the journal of the row `r` it takes over: the row's own (the
/// journal of the record's lifetime, `protocol::begun`), unless the row is completed: a
/// completion empties the journal, and a completed row with one was completed by a build
/// before steps, whose completion left the columns as they were; that journal is not
/// the new lifetime's.
const KEPT_JOURNAL: &str =
    "step_names = CASE WHEN r.state = 'COMPLETED' THEN NULL ELSE r.step_names END,
        step_outcomes = CASE WHEN r.state = 'COMPLETED' THEN NULL ELSE r.step_outcomes END,
        step_codecs = CASE WHEN r.state = 'COMPLETED' THEN NULL ELSE r.step_codecs END,
        step_data = CASE WHEN r.state = 'COMPLETED' THEN NULL ELSE r.step_data END";

/// The journal write ([`Store::journal`](idem_core::Store::journal)): under complete's
/// condition (`$1` id, `$2` owner, `$3` fence), the step (`$4` name, `$5` outcome, `$6`
/// codec, `$7` data) at [`JOURNAL_AT`]; nothing else changes.
fn journal(t: &str) -> String {
    format!(
        "UPDATE {t} SET step_names[{JOURNAL_AT}] = $4, step_outcomes[{JOURNAL_AT}] = $5,
        step_codecs[{JOURNAL_AT}] = $6, step_data[{JOURNAL_AT}] = $7
    WHERE {HELD}"
    )
}

/// Every statement of one table.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) begin: Arc<str>,
    pub(crate) hold: Arc<str>,
    pub(crate) complete: Arc<str>,
    pub(crate) complete_held: Arc<str>,
    pub(crate) journal: Arc<str>,
    pub(crate) extend: Arc<str>,
    pub(crate) release: Arc<str>,
    pub(crate) read: Arc<str>,
    pub(crate) delete: Arc<str>,
    pub(crate) purge: Arc<str>,
    pub(crate) begin_batch: Arc<str>,
    pub(crate) complete_batch: Arc<str>,
}

/// `"schema"."table"`, or `"table"` (found through the search path).
pub(crate) fn qualified(schema: Option<&str>, table: &str) -> String {
    match schema {
        Some(schema) => format!("\"{schema}\".\"{table}\""),
        None => format!("\"{table}\""),
    }
}

/// The sequence the lock-held form takes its fences from: `"{table}_fence"`, beside
/// the table. A sequence is not rolled back with the transaction that drew from it, so
/// a rolled-back attempt's fence is never handed out again.
pub(crate) fn fences(schema: Option<&str>, table: &str) -> String {
    qualified(schema, &format!("{table}_fence"))
}

/// The columns later versions added, for a table made by an earlier one: `data_bytes`
/// (the bytes codec) and the journal's ([`STEP_COLUMNS`]). Each `ADD COLUMN` of a
/// column with no default changes the catalogue only (no rewrite).
pub(crate) fn add_columns(t: &str) -> String {
    format!(
        "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS data_bytes bytea,
    ADD COLUMN IF NOT EXISTS step_names text[], ADD COLUMN IF NOT EXISTS step_outcomes text[],
    ADD COLUMN IF NOT EXISTS step_codecs text[], ADD COLUMN IF NOT EXISTS step_data bytea[];"
    )
}

/// The migration: the table, with the record's fields as columns, and the index that
/// serves the cleanup. Idempotent (`IF NOT EXISTS`); on a table made by an earlier
/// version it adds the columns of [`add_columns`] (a metadata change, no rewrite).
pub(crate) fn migration(schema: Option<&str>, table: &str) -> String {
    let t = qualified(schema, table);
    let add_columns = add_columns(&t);
    let fences = fences(schema, table);
    let create_schema = match schema {
        Some(schema) => format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\";\n"),
        None => String::new(),
    };
    format!(
        "{create_schema}CREATE TABLE IF NOT EXISTS {t} (
    id             text    PRIMARY KEY,
    state          text    NOT NULL,
    owner          text    NOT NULL,
    fence          bigint  NOT NULL,
    lease_until_ms bigint  NOT NULL,
    expires_at_s   bigint  NOT NULL,
    fingerprint    text,
    outcome        text,
    data           text,
    data_bytes     bytea,
    format         integer NOT NULL,
    codec          text    NOT NULL,
    step_names     text[],
    step_outcomes  text[],
    step_codecs    text[],
    step_data      bytea[]
);
{add_columns}
CREATE INDEX IF NOT EXISTS \"{table}_expires_at_s\" ON {t} (expires_at_s);
CREATE SEQUENCE IF NOT EXISTS {fences};
"
    )
}

/// A write, then, only when it wrote nothing, the record as it is now, in one
/// statement: `applied` and the fence when the write applied, otherwise `applied =
/// false` and the current row (no row at all: there is no record).
///
/// The current row is read `FOR UPDATE`: under READ COMMITTED that is the newest
/// committed version of the row (the one whose lock the write waited for), not the
/// statement's snapshot.
fn write_then_current(t: &str, write: &str) -> String {
    format!(
        "WITH written AS ({write} RETURNING fence),
current AS (
    SELECT {COLUMNS} FROM {t} WHERE id = $1 AND NOT EXISTS (SELECT FROM written) FOR UPDATE
)
{APPLIED} fence{APPLIED_REST} FROM written
UNION ALL
{REFUSED} FROM current"
    )
}

/// The first columns of an applied write's answer, up to its fence (`applied`), and,
/// after the fence, the rest, empty: the same columns as [`REFUSED`].
const APPLIED: &str = "SELECT true AS applied,";
const APPLIED_REST: &str = " AS fence, NULL::text AS state, NULL::text AS owner,
       NULL::bigint AS lease_until_ms, NULL::bigint AS expires_at_s, NULL::text AS fingerprint,
       NULL::text AS outcome, NULL::text AS data, NULL::bytea AS data_bytes,
       NULL::integer AS format, NULL::text AS codec, NULL::text[] AS step_names,
       NULL::text[] AS step_outcomes, NULL::text[] AS step_codecs, NULL::bytea[] AS step_data";

/// A refused write's answer: `applied = false` and the row's columns.
const REFUSED: &str = "SELECT false, fence, state, owner, lease_until_ms, expires_at_s, \
     fingerprint, outcome, data, data_bytes, format, codec, step_names, step_outcomes, \
     step_codecs, step_data";

/// The hold: the lock-held form's take, in the body's transaction, in one statement.
///
/// 1. `seen`: the record as last committed (the statement's snapshot, read without a
///    lock, so it never waits for one), if it is live at `$3`. Then the hold is refused
///    with it and nothing is written or locked: however many duplicates of a completed
///    record arrive at once, none waits for another, nor keeps the row locked for the
///    next one to time out on.
/// 2. Otherwise begin's write (inserted, or updated if free), waiting for a locked row
///    at most `$9` ([`BOUNDED`]). The row keeps its fence while it is held (0 when
///    inserted): nobody sees it before the completion writes the attempt's.
/// 3. The attempt's fence, drawn from the sequence `fences` once the write is done,
///    that is once this transaction holds the row (as the answer's row is produced, in
///    the outer `SELECT`): added to the row's, it is higher than the fence of every
///    attempt that held the key before, rolled back or crashed. A fence drawn before the
///    statement waits would not be: two attempts queued on one key may take it in the
///    other order than they drew (a waiting insert proceeds with its values once the
///    insert it waited for is rolled back, and so does an update).
/// 4. When the write was refused (the row changed after the snapshot, by a transaction
///    the write waited for), the row as it is now, `FOR UPDATE`, as
///    [`write_then_current`] reads it.
///
/// The answer has `held_fence`, the row's fence, beside the attempt's: the completion
/// is conditioned on the former and writes the latter (`complete_held`).
fn hold(t: &str, fences: &str) -> String {
    let write = take(
        t,
        "FROM bounded WHERE NOT EXISTS (SELECT FROM seen)",
        "0",
        "r.fence",
        "0",
    );
    format!(
        "WITH {BOUNDED}seen AS MATERIALIZED (
    SELECT {COLUMNS} FROM {t} AS r WHERE r.id = $1 AND NOT ({FREE})
),
written AS ({write} RETURNING fence),
current AS (
    SELECT {COLUMNS} FROM {t}
     WHERE id = $1 AND NOT EXISTS (SELECT FROM written) AND NOT EXISTS (SELECT FROM seen)
       FOR UPDATE
)
{APPLIED} fence + nextval('{fences}'){APPLIED_REST}, fence AS held_fence, {RESTORED} AS restored
  FROM written
UNION ALL
{REFUSED}, NULL, NULL FROM current
UNION ALL
{REFUSED}, NULL, NULL FROM seen"
    )
}

/// [`write_then_current`] for many keys in one statement: the requests are the rows of
/// `input` (a `SELECT` over `unnest` of one array per field, with a column `id`); with
/// `lock_first`, `write` joins `locked`, the existing rows of those ids locked in id
/// order. Every row lock is taken in id order (the begin's insert takes its rows from
/// `input` ordered by id, and its conflicts lock the rows in that order; an update
/// joined with `locked` finds its rows locked already, whatever order its own join
/// produces them in), so two batches sharing keys cannot deadlock. One row
/// per id that is applied (`applied`, `id`, `fence`) or has a current row (`applied =
/// false`, `id` and the record); an id with neither has no record in the statement's
/// snapshot.
fn batch_write_then_current(t: &str, input: &str, lock_first: bool, write: &str) -> String {
    let locked = match lock_first {
        true => format!(
            "locked AS MATERIALIZED (
    SELECT id FROM {t} WHERE id IN (SELECT id FROM input) ORDER BY id FOR UPDATE
),\n"
        ),
        false => String::new(),
    };
    format!(
        "WITH input AS ({input}),
{locked}written AS ({write} RETURNING r.id, r.fence),
current AS (
    SELECT id, {COLUMNS} FROM {t}
     WHERE id IN (SELECT id FROM input) AND id NOT IN (SELECT id FROM written)
     ORDER BY id FOR UPDATE
)
SELECT true AS applied, id, fence, NULL::text AS state, NULL::text AS owner,
       NULL::bigint AS lease_until_ms, NULL::bigint AS expires_at_s, NULL::text AS fingerprint,
       NULL::text AS outcome, NULL::text AS data, NULL::bytea AS data_bytes,
       NULL::integer AS format, NULL::text AS codec, NULL::text[] AS step_names,
       NULL::text[] AS step_outcomes, NULL::text[] AS step_codecs, NULL::bytea[] AS step_data
  FROM written
UNION ALL
SELECT false, id, fence, state, owner, lease_until_ms, expires_at_s, fingerprint, outcome, data,
       data_bytes, format, codec, {STEP_COLUMNS}
  FROM current"
    )
}

/// The key's row locks are waited for at most `$9` (a `lock_timeout`, text: `'1ms'`),
/// in the statement's own transaction: `lock_timeout` as it was is kept in `saved`,
/// and set for this transaction in `bounded`, which the write reads first.
const BOUNDED: &str =
    "saved AS MATERIALIZED (SELECT current_setting('lock_timeout') AS lock_timeout),
bounded AS MATERIALIZED (SELECT set_config('lock_timeout', $9, true) FROM saved),
";

/// `lock_timeout` as it was before [`BOUNDED`], set back once the key is taken, for the
/// statements that follow in the same transaction (the body's). A refused hold leaves
/// it bounded: its transaction is rolled back at once.
const RESTORED: &str = "set_config('lock_timeout', (SELECT lock_timeout FROM saved), true)";

/// The record is free at `$3`: completed and expired, or in progress past its lease.
const FREE: &str = "CASE r.state WHEN 'COMPLETED' THEN $3 >= r.expires_at_s * 1000
                       ELSE $3 >= r.lease_until_ms END";

/// The attempt holds the record: in progress, its owner ($2) and fence ($3).
const HELD: &str = "id = $1 AND state = 'INPROGRESS' AND owner = $2 AND fence = $3";

/// The write that takes a key: the row inserted with the fence `new_fence`, or, if the
/// record is free at `$3`, updated with `fence` (over the row `r`, and `excluded`, the
/// row that was to be inserted); in progress, owned by `$2`, its lease until `lease`.
/// `from` is what the inserted row is selected from first (nothing, or [`BOUNDED`]'s
/// `FROM bounded`).
fn take(t: &str, from: &str, new_fence: &str, fence: &str, lease: &str) -> String {
    format!(
        "INSERT INTO {t} AS r (id, state, owner, fence, lease_until_ms, expires_at_s,
                        fingerprint, outcome, data, data_bytes, format, codec)
    SELECT $1, 'INPROGRESS', $2, {new_fence}, {lease}, $5, $6, NULL, NULL, NULL, $7, $8
      {from}
    ON CONFLICT (id) DO UPDATE SET state = 'INPROGRESS', owner = excluded.owner,
        fence = {fence}, lease_until_ms = excluded.lease_until_ms,
        expires_at_s = excluded.expires_at_s, fingerprint = excluded.fingerprint,
        outcome = NULL, data = NULL, data_bytes = NULL, format = excluded.format,
        codec = excluded.codec, {KEPT_JOURNAL}
    WHERE {FREE}"
    )
}

impl Statements {
    pub(crate) fn new(schema: Option<&str>, table: &str) -> Statements {
        let t = qualified(schema, table);
        // The recorded value is in `data` (text) for the JSON codec, as every version
        // wrote it, and in `data_bytes` (bytea) for the bytes codec.
        // Begin: applied iff there is no row or the row is free at $3; the fence is
        // incremented in place.
        let begin = write_then_current(&t, &take(&t, "", "1", "r.fence + 1", "$4"));
        // Hold (the lock-held form, in the body's transaction): see `hold`.
        let hold = hold(&t, &fences(schema, table));
        let completion = format!(
            "UPDATE {t} SET state = 'COMPLETED', outcome = $4, data = $5, data_bytes = $7,
        codec = $8, expires_at_s = $6, {EMPTY_JOURNAL}"
        );
        let complete = write_then_current(&t, &format!("{completion}\n    WHERE {HELD}"));
        // The completion of a held key, in its transaction: conditioned on the fence
        // the row kept while held ($3), it writes the attempt's ($9).
        let complete_held =
            write_then_current(&t, &format!("{completion}, fence = $9\n    WHERE {HELD}"));
        let extend = write_then_current(
            &t,
            &format!(
                "UPDATE {t} SET lease_until_ms = $4, expires_at_s = $5
    WHERE {HELD} AND lease_until_ms > 0"
            ),
        );
        let release = write_then_current(
            &t,
            &format!("UPDATE {t} SET lease_until_ms = 0 WHERE {HELD}"),
        );
        // Begin for many keys: the single begin's insert over `unnest` ($1 ids, $2 owners,
        // $3 clocks, $4 leases, $5 expiries, $6 fingerprints; $7 format, $8 codec),
        // inserted in id order (which is the order its conflicts lock rows in), each
        // row's freedom judged at its own request's clock.
        let begin_batch = batch_write_then_current(
            &t,
            "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[],
        $5::bigint[], $6::text[])
        AS i(id, owner, now_ms, lease_until_ms, expires_at_s, fingerprint)",
            false,
            &format!(
                "INSERT INTO {t} AS r (id, state, owner, fence, lease_until_ms, expires_at_s,
                        fingerprint, outcome, data, data_bytes, format, codec)
    SELECT id, 'INPROGRESS', owner, 1, lease_until_ms, expires_at_s, fingerprint, NULL, NULL,
           NULL, $7, $8
      FROM input ORDER BY id
    ON CONFLICT (id) DO UPDATE SET state = 'INPROGRESS', owner = excluded.owner,
        fence = r.fence + 1, lease_until_ms = excluded.lease_until_ms,
        expires_at_s = excluded.expires_at_s, fingerprint = excluded.fingerprint,
        outcome = NULL, data = NULL, data_bytes = NULL, format = excluded.format,
        codec = excluded.codec, {KEPT_JOURNAL}
    WHERE CASE r.state
        WHEN 'COMPLETED' THEN (SELECT now_ms FROM input WHERE input.id = r.id) >= r.expires_at_s * 1000
        ELSE (SELECT now_ms FROM input WHERE input.id = r.id) >= r.lease_until_ms END"
            ),
        );
        // Complete for many attempts: the single complete's update over `unnest` ($1
        // ids, $2 owners, $3 fences, $4 outcomes, $5 JSON data, $6 expiries, $7 bytes
        // data, $8 codecs), on the rows `locked` took in id order (the update's own scan
        // would lock them in whatever order its join produces them).
        let complete_batch = batch_write_then_current(
            &t,
            "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
        $6::bigint[], $7::bytea[], $8::text[])
        AS i(id, owner, fence, outcome, data, expires_at_s, data_bytes, codec)",
            true,
            &format!(
                "UPDATE {t} AS r SET state = 'COMPLETED', outcome = i.outcome, data = i.data,
        data_bytes = i.data_bytes, codec = i.codec, expires_at_s = i.expires_at_s,
        {EMPTY_JOURNAL}
    FROM input i
    WHERE r.id = i.id AND r.id IN (SELECT id FROM locked) AND r.state = 'INPROGRESS'
      AND r.owner = i.owner AND r.fence = i.fence"
            ),
        );
        Statements {
            begin_batch: begin_batch.into(),
            complete_batch: complete_batch.into(),
            begin: begin.into(),
            hold: hold.into(),
            complete: complete.into(),
            complete_held: complete_held.into(),
            journal: write_then_current(&t, &journal(&t)).into(),
            extend: extend.into(),
            release: release.into(),
            read: format!("SELECT {COLUMNS} FROM {t} WHERE id = $1").into(),
            delete: format!("DELETE FROM {t} WHERE id = $1").into(),
            // Past both its expiry ($1, seconds) and its lease ($2, milliseconds); rows a
            // live call holds locked are skipped, not waited for.
            purge: format!(
                "DELETE FROM {t} WHERE id IN (
    SELECT id FROM {t} WHERE expires_at_s <= $1 AND lease_until_ms <= $2
     ORDER BY expires_at_s LIMIT $3 FOR UPDATE SKIP LOCKED)"
            )
            .into(),
        }
    }
}
