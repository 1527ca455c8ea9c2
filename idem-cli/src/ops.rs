//! The commands' work, on a [`Target`]: reading a record, freeing it, listing and
//! purging.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use idem_core::store::{ceil_secs, Attempt, Begin, Owner, Record, RecordId, State, Written};
use idem_core::Store;
use idem_dynamo::KeyLayout;
use idem_redis::RedisConnection;
use indicatif::ProgressBar;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use serde::Serialize;
use sqlx::Row as _;

use crate::error::{CliError, ErrorKind};
use crate::target::Target;

/// How long a record that `forget` took over and released stays in the store (its
/// `expires_at_s`, counted from the instant the begin was sent at): the released record
/// keeps the key's fence for the next begin, then expires like any other.
pub const FORGOTTEN_RECORD_KEEP: Duration = Duration::from_secs(24 * 60 * 60);

/// The system clock, epoch milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One record as the CLI shows it: every field but the recorded value itself, whose
/// size alone is shown (it may hold personal data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordView {
    /// The record id, `{namespace}#{digest}`, without the store's prefix.
    pub id: String,
    /// `INPROGRESS` or `COMPLETED`.
    pub state: String,
    /// Whether the record is live now (a completed record not expired, a lease not
    /// lapsed): a begin would be refused.
    pub live: bool,
    /// The fencing number.
    pub fence: u64,
    /// The owner of the attempt that wrote the record.
    pub owner: String,
    /// The lease's end, epoch milliseconds (`0`: released).
    pub lease_until_ms: u64,
    /// The record's expiry, epoch seconds.
    pub expires_at_s: u64,
    /// Completed records: `ok`, `err` or `not_stored`.
    pub outcome: Option<String>,
    /// The size of the recorded value or error, in bytes, when there is one.
    pub outcome_bytes: Option<usize>,
    /// Whether the call that began gave a payload fingerprint.
    pub fingerprint: bool,
}

impl RecordView {
    /// The view of `record` at `now_ms`.
    pub fn new(record: &Record, now_ms: u64) -> Self {
        RecordView {
            id: record.id.to_string(),
            state: record.state.as_str().to_owned(),
            live: record.is_live(now_ms),
            fence: record.fence,
            owner: record.owner.to_string(),
            lease_until_ms: record.lease_until_ms,
            expires_at_s: record.expires_at_s,
            outcome: record.outcome.map(|o| o.as_str().to_owned()),
            outcome_bytes: record.data.as_ref().map(|data| data.len()),
            fingerprint: record.fingerprint.is_some(),
        }
    }
}

/// One step of a record's journal as the CLI shows it: its name, how far it got and
/// the size of its journaled value (the value itself is not shown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepView {
    /// The step's name.
    pub name: String,
    /// `ok` or `err` (the step finished with a value or a journaled error), or
    /// `started` (an at-most-once step that started and never journaled its result: the
    /// next attempt answers `StepUncertain` for it).
    pub state: String,
    /// The size of the journaled value or error, in bytes, when there is one.
    pub bytes: Option<usize>,
}

/// What `idem inspect` shows: the record, and its journal of steps (empty for a body
/// without steps and for every completed record, whose completion emptied it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inspected {
    /// The record's fields.
    #[serde(flatten)]
    pub record: RecordView,
    /// The journal, in the order its steps were first written.
    pub steps: Vec<StepView>,
}

impl Inspected {
    /// The view of `record` and its journal at `now_ms`.
    pub fn new(record: &Record, now_ms: u64) -> Self {
        Inspected {
            record: RecordView::new(record, now_ms),
            steps: record
                .steps
                .iter()
                .map(|step| StepView {
                    name: step.name.clone(),
                    state: step
                        .outcome
                        .map_or("started", |outcome| outcome.as_str())
                        .to_owned(),
                    bytes: step.data.as_ref().map(|data| data.len()),
                })
                .collect(),
        }
    }
}

/// Reads the record `id` (strongly consistent, through [`Store::read`]); no record is
/// an [`ErrorKind::NotFound`] error naming the id and where it was looked for.
pub async fn inspect(target: &Target, id: &RecordId) -> Result<Record, CliError> {
    match target.store().read(id).await? {
        Some(record) => Ok(Arc::unwrap_or_clone(record)),
        None => Err(not_found(target, id)),
    }
}

fn not_found(target: &Target, id: &RecordId) -> CliError {
    CliError::new(
        ErrorKind::NotFound,
        format!(
            "no record `{id}` in {} (a key that never ran, or expired; check the namespace, the secret and the store's table or prefix)",
            target.describe()
        ),
    )
}

/// What [`forget`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Forgotten {
    /// The record id.
    pub id: String,
    /// How the record was freed: `released` (an in-progress record, released in its
    /// holder's name) or `taken_over_and_released` (a completed record).
    pub action: &'static str,
    /// The record as it was read before.
    pub before: RecordView,
    /// The fence the record keeps now: the next call gets a higher one.
    pub fence: u64,
    /// A note for the operator, when something is worth saying.
    pub note: Option<String>,
}

/// Frees the record `id` so that the key's next call runs its body again, keeping its
/// fence: see "Forget" in the [crate documentation](crate) for why it is done this way.
///
/// - An **in-progress** record is released with its own owner and fence
///   ([`Store::release`], conditional on both): refused while its lease is live at
///   `now_ms` unless `force`.
/// - A **completed** record is taken over by a begin sent at the instant the record
///   itself becomes free (its expiry, or `now_ms` if later), with a fresh owner, and
///   that attempt is released at once: the fence goes up by one, the outcome is gone,
///   and the key is free.
///
/// Any write refused because the record changed since it was read is an
/// [`ErrorKind::Refused`] error showing the record as it is now.
pub async fn forget(
    target: &Target,
    id: &RecordId,
    force: bool,
    now_ms: u64,
) -> Result<Forgotten, CliError> {
    let store = target.store();
    let record = inspect(target, id).await?;
    let before = RecordView::new(&record, now_ms);
    match record.state {
        State::InProgress => {
            if record.lease_is_live(now_ms) && !force {
                return Err(CliError::new(
                    ErrorKind::Refused,
                    format!(
                        "`{id}` is in progress under a live lease (fence {}, owner {}, {} ms left): its body may still be running; give --force to release it anyway",
                        record.fence,
                        record.owner,
                        record.lease_until_ms - now_ms
                    ),
                ));
            }
            let attempt = Attempt {
                id: id.clone(),
                owner: record.owner,
                fence: record.fence,
            };
            match store.release(&attempt).await? {
                Written::Applied(()) => Ok(Forgotten {
                    id: id.to_string(),
                    action: "released",
                    fence: record.fence,
                    note: record.lease_is_live(now_ms).then(|| {
                        "the lease was live: a body still running keeps its fence and may still record its outcome, unless a new call takes the key over first".to_owned()
                    }),
                    before,
                }),
                Written::Refused(current) => Err(changed(id, current.as_deref(), now_ms)),
            }
        }
        State::Completed => {
            let at = now_ms.max(record.expires_at_s.saturating_mul(1000));
            let owner = Owner::random();
            let begin = Begin {
                id: id.clone(),
                owner,
                now_ms: at,
                // A lease that ends 1 ms after the record would have expired anyway: if
                // the release below never happens, the key is held no longer than it was.
                lease_until_ms: at.saturating_add(1),
                expires_at_s: ceil_secs(
                    at.saturating_add(FORGOTTEN_RECORD_KEEP.as_millis() as u64),
                ),
                fingerprint: None,
            };
            let fence = match store.begin(&begin).await? {
                Written::Applied(fence) => fence,
                Written::Refused(current) => return Err(changed(id, current.as_deref(), now_ms)),
            };
            let attempt = Attempt {
                id: id.clone(),
                owner,
                fence,
            };
            match store.release(&attempt).await? {
                Written::Applied(()) => {}
                Written::Refused(current) => return Err(changed(id, current.as_deref(), now_ms)),
            }
            let note = (fence != record.fence + 1).then(|| {
                format!(
                    "the record was replaced between the read and the write (fence {} read, {fence} now): it had been deleted and written again",
                    record.fence
                )
            });
            Ok(Forgotten {
                id: id.to_string(),
                action: "taken_over_and_released",
                before,
                fence,
                note,
            })
        }
    }
}

fn changed(id: &RecordId, current: Option<&Record>, now_ms: u64) -> CliError {
    let now = match current {
        None => "there is no record now".to_owned(),
        Some(r) => {
            let v = RecordView::new(r, now_ms);
            format!(
                "it is now {} with fence {}, owner {}{}",
                v.state,
                v.fence,
                v.owner,
                if v.live { ", live" } else { "" }
            )
        }
    };
    CliError::new(
        ErrorKind::Refused,
        format!("`{id}` changed since it was read, nothing was written: {now}; inspect it and try again"),
    )
}

/// Which records [`list`] shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only records in this state.
    pub state: Option<State>,
    /// Only records whose last lease ended at least this long ago: for a record in
    /// progress, how long it has been left by its holder (a released lease, `0`, counts
    /// as ended long ago); for a completed one, at least this long since it completed
    /// (a completion comes before the lease ends). The record does not keep when it
    /// began, so nothing closer can be told.
    pub older_than: Option<Duration>,
}

impl Filter {
    /// Whether `record` passes at `now_ms`.
    pub fn accepts(&self, record: &RecordView, now_ms: u64) -> bool {
        if let Some(state) = self.state {
            if record.state != state.as_str() {
                return false;
            }
        }
        match self.older_than {
            Some(age) => record.lease_until_ms <= now_ms.saturating_sub(age.as_millis() as u64),
            None => true,
        }
    }
}

/// The warning printed before a DynamoDB listing.
pub const DYNAMO_SCAN_WARNING: &str = "DynamoDB cannot query records by state or age: this is a Scan of the whole table, billed for every item it reads (4 KB per read unit, eventually consistent), and it takes the table's read capacity while it runs";

/// The warning printed before a DynamoDB listing in Powertools' sort-key layout.
pub const DYNAMO_QUERY_WARNING: &str = "DynamoDB cannot query records by state or age: this is a Query of the one partition every record shares (the sort-key layout), billed for every record in it (4 KB per read unit, eventually consistent), and it takes that partition's read capacity while it runs";

/// What listing on `target` costs, where it costs more than the records listed: a
/// DynamoDB table's whole Scan, or its one partition's Query.
pub fn list_warning(target: &Target) -> Option<&'static str> {
    match target {
        Target::Dynamo(store) => Some(match store.key_layout() {
            KeyLayout::SortKey { .. } => DYNAMO_QUERY_WARNING,
            _ => DYNAMO_SCAN_WARNING,
        }),
        _ => None,
    }
}

/// Lists the records that pass `filter` at `now_ms`, oldest lease first: PostgreSQL by
/// a query, Redis by `SCAN` over the store's prefix (each record then read through the
/// store), DynamoDB by a `Scan` of the table (see [`DYNAMO_SCAN_WARNING`]). `progress`
/// counts the records examined.
pub async fn list(
    target: &Target,
    filter: Filter,
    now_ms: u64,
    progress: &ProgressBar,
) -> Result<Vec<RecordView>, CliError> {
    let mut found = match target {
        Target::Postgres(store) => list_postgres(store, filter, now_ms, progress).await?,
        Target::Redis(store, connection) => {
            list_redis(store, connection, filter, now_ms, progress).await?
        }
        Target::Dynamo(store) => list_dynamo(store, filter, now_ms, progress).await?,
    };
    found.sort_by(|a, b| (a.lease_until_ms, &a.id).cmp(&(b.lease_until_ms, &b.id)));
    Ok(found)
}

async fn list_postgres(
    store: &idem_postgres::PgStore,
    filter: Filter,
    now_ms: u64,
    progress: &ProgressBar,
) -> Result<Vec<RecordView>, CliError> {
    // The table name was checked by the store's builder (letters, digits, underscores)
    // and is quoted by it.
    let sql = format!(
        "SELECT id, state, owner, fence, lease_until_ms, expires_at_s, outcome,
                CASE codec WHEN 'json' THEN octet_length(data) ELSE octet_length(data_bytes) END AS outcome_bytes, fingerprint IS NOT NULL AS has_fingerprint
         FROM {} WHERE ($1::text IS NULL OR state = $1) AND lease_until_ms <= $2",
        store.table()
    );
    let until = match filter.older_than {
        Some(age) => now_ms.saturating_sub(age.as_millis() as u64),
        None => u64::MAX,
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(filter.state.map(State::as_str))
        .bind(i64::try_from(until).unwrap_or(i64::MAX))
        .fetch_all(store.pool())
        .await
        .map_err(|e| {
            CliError::store(format!("PostgreSQL list on {} failed", store.table())).with_source(e)
        })?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        progress.inc(1);
        let decode = |e: sqlx::Error| {
            CliError::store(format!(
                "PostgreSQL list on {}: a row cannot be decoded",
                store.table()
            ))
            .with_source(e)
        };
        let state: String = row.try_get("state").map_err(decode)?;
        let number = |name: &str| -> Result<u64, CliError> {
            let value: i64 = row.try_get(name).map_err(decode)?;
            Ok(u64::try_from(value).unwrap_or(0))
        };
        let lease_until_ms = number("lease_until_ms")?;
        let expires_at_s = number("expires_at_s")?;
        let live = match state.as_str() {
            "COMPLETED" => now_ms < expires_at_s.saturating_mul(1000),
            _ => now_ms < lease_until_ms,
        };
        let outcome_bytes: Option<i32> = row.try_get("outcome_bytes").map_err(decode)?;
        out.push(RecordView {
            id: row.try_get("id").map_err(decode)?,
            state,
            live,
            fence: number("fence")?,
            owner: row.try_get("owner").map_err(decode)?,
            lease_until_ms,
            expires_at_s,
            outcome: row.try_get("outcome").map_err(decode)?,
            outcome_bytes: outcome_bytes.map(|n| usize::try_from(n).unwrap_or(0)),
            fingerprint: row.try_get("has_fingerprint").map_err(decode)?,
        });
    }
    Ok(out)
}

async fn list_redis(
    store: &idem_redis::RedisStore,
    connection: &RedisConnection,
    filter: Filter,
    now_ms: u64,
    progress: &ProgressBar,
) -> Result<Vec<RecordView>, CliError> {
    let mut out = Vec::new();
    match connection {
        RedisConnection::Server(server) => {
            let at = ScanAt::Server(server);
            scan_redis(store, &at, filter, now_ms, progress, &mut out).await?;
        }
        RedisConnection::Cluster(cluster) => {
            // Each master keeps its own keys, and a SCAN cursor is one node's: every
            // master is scanned on its own, by its address.
            for (host, port) in cluster_masters(cluster).await? {
                let at = ScanAt::Master(cluster, host, port);
                scan_redis(store, &at, filter, now_ms, progress, &mut out).await?;
            }
        }
        _ => {
            return Err(CliError::usage(
                "a kind of Redis connection this CLI does not know",
            ))
        }
    }
    Ok(out)
}

/// Where a `SCAN` goes: the one server, or one master of a cluster by its address.
enum ScanAt<'a> {
    Server(&'a redis::aio::ConnectionManager),
    Master(&'a redis::cluster_async::ClusterConnection, String, u16),
}

impl ScanAt<'_> {
    /// Sends one `SCAN` step: the next cursor and the keys found.
    async fn scan(&self, command: redis::Cmd) -> redis::RedisResult<(u64, Vec<String>)> {
        match self {
            ScanAt::Server(server) => command.query_async(&mut (*server).clone()).await,
            ScanAt::Master(cluster, host, port) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                let answer = (*cluster).clone().route_command(command, routing).await?;
                redis::FromRedisValue::from_redis_value(answer).map_err(Into::into)
            }
        }
    }
}

/// `SCAN` over the store's prefix on one server (or one cluster master), each key read
/// through the store; the records that pass `filter` are pushed onto `out`.
async fn scan_redis(
    store: &idem_redis::RedisStore,
    at: &ScanAt<'_>,
    filter: Filter,
    now_ms: u64,
    progress: &ProgressBar,
    out: &mut Vec<RecordView>,
) -> Result<(), CliError> {
    let prefix = store.prefix();
    let pattern = format!("{}*", glob_escape(prefix));
    let mut cursor: u64 = 0;
    loop {
        let mut command = redis::cmd("SCAN");
        command
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(500);
        let (next, keys) = at.scan(command).await.map_err(|e| {
            CliError::store(format!("Redis SCAN over `{prefix}*` failed")).with_source(e)
        })?;
        for key in keys {
            progress.inc(1);
            // A key that is not a record id is not one of idem's records.
            let Some(Ok(id)) = key.strip_prefix(prefix).map(str::parse::<RecordId>) else {
                continue;
            };
            // A key may expire between SCAN and the read.
            if let Some(record) = store.read(&id).await? {
                let view = RecordView::new(&record, now_ms);
                if filter.accepts(&view, now_ms) {
                    out.push(view);
                }
            }
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// The addresses of a cluster's masters, from `CLUSTER SLOTS` (each slot range's first
/// node is its master).
async fn cluster_masters(
    cluster: &redis::cluster_async::ClusterConnection,
) -> Result<Vec<(String, u16)>, CliError> {
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut cluster.clone())
        .await
        .map_err(|e| CliError::store("Redis CLUSTER SLOTS failed").with_source(e))?;
    let mut masters = Vec::new();
    for range in slots {
        // [start, end, [host, port, id, ...], replicas...]
        let master = match range {
            redis::Value::Array(parts) => parts.into_iter().nth(2),
            _ => None,
        };
        let address = master.and_then(|master| match master {
            redis::Value::Array(node) if node.len() >= 2 => {
                let host: String = redis::FromRedisValue::from_redis_value(node[0].clone()).ok()?;
                let port: u16 = redis::FromRedisValue::from_redis_value(node[1].clone()).ok()?;
                Some((host, port))
            }
            _ => None,
        });
        let Some(address) = address else {
            return Err(CliError::store(
                "Redis CLUSTER SLOTS answered a range without its master's address",
            ));
        };
        if !masters.contains(&address) {
            masters.push(address);
        }
    }
    Ok(masters)
}

/// `prefix` with Redis glob's special characters escaped, for `SCAN MATCH`.
fn glob_escape(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

async fn list_dynamo(
    store: &idem_dynamo::DynamoStore,
    filter: Filter,
    now_ms: u64,
    progress: &ProgressBar,
) -> Result<Vec<RecordView>, CliError> {
    let table = store.table();
    let names = store.names();
    let mut out = Vec::new();
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        // Partition-key layout: a Scan of the table. Sort-key layout: every record
        // shares one partition, which one Query reads.
        let (items, last) = match store.key_layout() {
            KeyLayout::SortKey {
                partition_value, ..
            } => {
                let page = store
                    .client()
                    .query()
                    .table_name(table)
                    .key_condition_expression("#pk = :pk")
                    .expression_attribute_names("#pk", &names.id)
                    .expression_attribute_values(":pk", AttributeValue::S(partition_value.clone()))
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| {
                        CliError::store(format!("DynamoDB Query of `{table}` failed"))
                            .with_source(e)
                    })?;
                (page.items, page.last_evaluated_key)
            }
            _ => {
                let page = store
                    .client()
                    .scan()
                    .table_name(table)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(|e| {
                        CliError::store(format!("DynamoDB Scan of `{table}` failed")).with_source(e)
                    })?;
                (page.items, page.last_evaluated_key)
            }
        };
        for item in items.unwrap_or_default() {
            progress.inc(1);
            let Some(view) = dynamo_view(store, &item, now_ms) else {
                continue;
            };
            if filter.accepts(&view, now_ms) {
                out.push(view);
            }
        }
        match last {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(out),
        }
    }
}

/// The view of an item; `None` for an item that is not one of this prefix's records
/// (another service's, or one that cannot be decoded: `inspect` names its fault).
fn dynamo_view(
    store: &idem_dynamo::DynamoStore,
    item: &HashMap<String, AttributeValue>,
    now_ms: u64,
) -> Option<RecordView> {
    let names = store.names();
    let string = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let number = |name: &str| item.get(name)?.as_n().ok()?.parse::<u64>().ok();
    let stored_id = match store.key_layout() {
        KeyLayout::SortKey { attribute, .. } => string(attribute)?,
        _ => string(&names.id)?,
    };
    let id = stored_id.strip_prefix(store.prefix())?.to_owned();
    let state = string(&names.status)?;
    let lease_until_ms = number(&names.in_progress_expiration)?;
    let expires_at_s = number(&names.expiration)?;
    let live = match state.as_str() {
        "COMPLETED" => now_ms < expires_at_s.saturating_mul(1000),
        "INPROGRESS" => now_ms < lease_until_ms,
        _ => return None,
    };
    Some(RecordView {
        id,
        state,
        live,
        fence: number(&names.fence)?,
        owner: string(&names.owner)?,
        lease_until_ms,
        expires_at_s,
        outcome: string(&names.outcome),
        // JSON as a string, bytes as Binary.
        outcome_bytes: item.get(&names.data).and_then(|data| match data {
            AttributeValue::S(json) => Some(json.len()),
            AttributeValue::B(bytes) => Some(bytes.as_ref().len()),
            _ => None,
        }),
        fingerprint: item.contains_key(&names.validation),
    })
}

/// Deletes expired records where the store needs it: PostgreSQL, through
/// `PgStore::purge_expired` in batches of `batch` until a batch comes back short;
/// `progress` counts the rows deleted. Answers how many were deleted, or `None` for a
/// store that expires records itself (Redis's key expiry, DynamoDB's TTL).
pub async fn purge_expired(
    target: &Target,
    batch: u32,
    progress: &ProgressBar,
) -> Result<Option<u64>, CliError> {
    let Target::Postgres(store) = target else {
        return Ok(None);
    };
    let mut total = 0;
    loop {
        let deleted = store.purge_expired(batch).await?;
        total += deleted;
        progress.inc(deleted);
        if deleted < u64::from(batch) {
            return Ok(Some(total));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_is_escaped() {
        assert_eq!(glob_escape("idem:"), "idem:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn filter_by_state_and_age() {
        let view = |state: &str, lease_until_ms| RecordView {
            id: "ns#d".into(),
            state: state.into(),
            live: false,
            fence: 1,
            owner: "o".into(),
            lease_until_ms,
            expires_at_s: 0,
            outcome: None,
            outcome_bytes: None,
            fingerprint: false,
        };
        let now = 1_000_000;
        let old = Filter {
            state: Some(State::InProgress),
            older_than: Some(Duration::from_secs(600)),
        };
        assert!(old.accepts(&view("INPROGRESS", 0), now));
        assert!(old.accepts(&view("INPROGRESS", now - 600_000), now));
        assert!(!old.accepts(&view("INPROGRESS", now - 599_999), now));
        assert!(!old.accepts(&view("COMPLETED", 0), now));
        assert!(Filter::default().accepts(&view("COMPLETED", now + 5), now));
    }
}
