//! The Redis store: the `Store` mapping onto one hash per record and one script per
//! transition.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{BufMut as _, Bytes};
use futures_util::future::join_all;
use idem_core::store::{
    Attempt, Begin, Codec, Completion, Limits, Outcome, Owner, Record, RecordId, Renewal, State,
    StepRecord, StoreError, Written,
};
use idem_core::Store;
use redis::{Cmd, RedisError, RedisWrite, ToRedisArgs, Value};

use crate::connection::RedisConnection;
use crate::scripts::{Lua, Scripts};
use crate::setup::{Durability, Eviction};

/// The largest recorded value by default, in bytes.
pub const DEFAULT_MAX_DATA_BYTES: usize = 1024 * 1024;

/// idem's records in Redis or Valkey: see the [crate documentation](crate).
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) connection: RedisConnection,
    pub(crate) prefix: String,
    pub(crate) max_data_bytes: usize,
    pub(crate) scripts: Arc<Scripts>,
    pub(crate) eviction: Arc<Eviction>,
    pub(crate) durability: Option<Durability>,
    /// Set while a `WAIT` is in flight on the shared connection: at most one is, so the
    /// begins and heartbeats queued behind it wait one `WAIT` timeout at most.
    pub(crate) waiting: Arc<AtomicBool>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("max_data_bytes", &self.max_data_bytes)
            .field("eviction", &self.eviction)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The key prefix before every record id.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// What [`build`](crate::RedisStoreBuilder::build) learnt of the server's eviction
    /// policy (named in the store's warnings).
    pub fn eviction(&self) -> &Eviction {
        &self.eviction
    }

    /// The Redis key of a record id.
    pub fn key(&self, id: &RecordId) -> String {
        format!("{}{id}", self.prefix)
    }

    /// The Redis key of a record id, as a command argument written in place.
    fn key_arg<'a>(&'a self, id: &'a RecordId) -> RecordKey<'a> {
        RecordKey {
            prefix: &self.prefix,
            id,
        }
    }

    /// What an error of `operation` on `id` names.
    fn context<'a>(&'a self, operation: &'static str, id: &'a RecordId) -> Context<'a> {
        Context {
            operation,
            id,
            prefix: &self.prefix,
        }
    }

    /// `EVALSHA` of `script` on the record's key, its arguments still to add.
    fn invocation(&self, script: &Lua, id: &RecordId) -> Cmd {
        let mut command = redis::cmd("EVALSHA");
        command.arg(&script.hash).arg(1).arg(self.key_arg(id));
        command
    }

    /// Runs a script's `EVALSHA`; a node without the script (`NOSCRIPT`) is sent the
    /// same call as `EVAL` with the script's text, routed by the same key, which caches
    /// it there.
    async fn eval(&self, script: &Lua, evalsha: &Cmd) -> Result<Value, RedisError> {
        match self.connection.query(evalsha).await {
            Err(error) if error.code() == Some("NOSCRIPT") => {
                let mut eval = redis::cmd("EVAL");
                eval.arg(&script.source);
                // EVALSHA's own name and the hash, then numkeys, the key and the args.
                for arg in evalsha.args_iter().skip(2) {
                    if let redis::Arg::Simple(arg) = arg {
                        eval.arg(arg);
                    }
                }
                self.connection.query(&eval).await
            }
            answer => answer,
        }
    }

    /// Runs `invocations` of `script` (each on its own key), each answered alone: on one
    /// server in one pipeline (one round trip); on a cluster, where a pipeline must stay
    /// within one hash slot and a script on many keys fails with `CROSSSLOT`, each sent
    /// alone, all at once. An invocation answered `NOSCRIPT` is sent again as [`eval`]
    /// (Self::eval) sends it. The outer error is a pipeline that got no answer at all.
    async fn eval_all(
        &self,
        script: &Lua,
        invocations: &[Cmd],
    ) -> Result<Vec<Result<Value, RedisError>>, RedisError> {
        let RedisConnection::Server(connection) = &self.connection else {
            return Ok(join_all(invocations.iter().map(|one| self.eval(script, one))).await);
        };
        let mut pipeline = redis::pipe();
        pipeline.ignore_errors();
        for invocation in invocations {
            pipeline.add_command(invocation.clone());
        }
        let answers: Vec<Result<Value, RedisError>> =
            pipeline.query_async(&mut connection.clone()).await?;
        if answers.len() != invocations.len() {
            return Err(RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "a pipeline's answers do not match its commands",
                format!("{} commands, {} answers", invocations.len(), answers.len()),
            )));
        }
        Ok(join_all(
            answers
                .into_iter()
                .zip(invocations)
                .map(|(answer, invocation)| async move {
                    match answer {
                        Err(error) if error.code() == Some("NOSCRIPT") => {
                            self.eval(script, invocation).await
                        }
                        answer => answer,
                    }
                }),
        )
        .await)
    }

    /// A pipeline of `count` items (the first on `first`) that got no answer: the error
    /// for each item.
    fn batch_failed<R>(
        &self,
        operation: &'static str,
        first: &RecordId,
        count: usize,
        error: RedisError,
    ) -> Vec<Result<R, StoreError>> {
        store_error(self.context(operation, first), error).for_each_item(count)
    }

    /// Begin's script call for `request`.
    fn begin_invocation(&self, request: &Begin) -> Cmd {
        // Numbers go as the redis crate writes them (decimal, no allocation).
        let mut invocation = self.invocation(&self.scripts.begin, &request.id);
        invocation
            .arg(&request.owner.to_hex()[..])
            .arg(request.now_ms)
            .arg(request.lease_until_ms)
            .arg(request.expires_at_s)
            .arg(request.fingerprint.as_deref().unwrap_or(""))
            .arg(idem_core::store::FORMAT)
            .arg(Codec::Json.as_str());
        invocation
    }

    /// What the begin script's `answer` to `request` means.
    async fn begun(
        &self,
        request: &Begin,
        answer: Result<Value, RedisError>,
    ) -> Result<Written<u64>, StoreError> {
        let context = self.context("begin", &request.id);
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) if error.code() == Some("OOM") => {
                return self.begin_when_full(request, error).await
            }
            Err(error) => return Err(store_error(context, error)),
        };
        match Self::answer(context, answer)? {
            Written::Applied(Some(fence)) if fence > 0 => Ok(Written::Applied(fence as u64)),
            Written::Applied(_) => Err(StoreError::permanent(format!(
                "{context}: the answer holds no fence"
            ))),
            Written::Refused(current) => Ok(Written::Refused(current)),
        }
    }

    /// Complete's script call for `attempt`.
    fn complete_invocation(&self, attempt: &Attempt, completion: &Completion) -> Cmd {
        let mut invocation = self.invocation(&self.scripts.complete, &attempt.id);
        invocation
            .arg(&attempt.owner.to_hex()[..])
            .arg(attempt.fence)
            .arg(completion.now_ms)
            .arg(completion.expires_at_s)
            .arg(completion.outcome.as_str())
            .arg(completion.data.as_deref().unwrap_or(b""))
            .arg(if completion.data.is_some() { "1" } else { "0" })
            .arg(completion.codec.as_str());
        invocation
    }

    /// Whether `written`, the answer to `attempt`'s completion, shows it applied: a
    /// refusal that shows this attempt's own completion is one applied by an earlier
    /// send (the engine's resend, or the cluster client's retry after a dropped
    /// connection), and is waited for too.
    fn completion_applied(attempt: &Attempt, written: &Result<Written<()>, StoreError>) -> bool {
        match written {
            Ok(Written::Applied(())) => true,
            Ok(Written::Refused(Some(current))) => current.shows_completion_by(attempt),
            Ok(Written::Refused(None)) | Err(_) => false,
        }
    }

    /// `{1, ...}` applied, `{0, fields}` refused with the current record.
    fn answer(context: Context<'_>, value: Value) -> Result<Written<Option<i64>>, StoreError> {
        let Value::Array(mut items) = value else {
            return Err(StoreError::permanent(format!(
                "{context}: unexpected script answer {value:?}"
            )));
        };
        match items.as_mut_slice() {
            [Value::Int(1)] => Ok(Written::Applied(None)),
            [Value::Int(1), Value::Int(fence)] => Ok(Written::Applied(Some(*fence))),
            [Value::Int(0), Value::Array(fields)] => Ok(Written::Refused(decode_fields(
                context,
                std::mem::take(fields),
            )?)),
            _ => Err(StoreError::permanent(format!(
                "{context}: unexpected script answer {items:?}"
            ))),
        }
    }

    /// Begin's answer when the server refused the script for lack of memory: begin
    /// refuses a live record without writing, so that refusal needs no memory and is
    /// given from a read (a duplicate of a completed key still replays, one of a key in
    /// progress still waits); a free or missing record would need a write, and the
    /// server's `-OOM` is returned, transient.
    async fn begin_when_full(
        &self,
        request: &Begin,
        error: RedisError,
    ) -> Result<Written<u64>, StoreError> {
        let full = store_error(self.context("begin", &request.id), error);
        match self.read(&request.id).await {
            Ok(Some(current)) if current.is_live(request.now_ms) => {
                Ok(Written::Refused(Some(current)))
            }
            Ok(_) | Err(_) => {
                tracing::warn!(target: "idem", prefix = %self.prefix, eviction = %self.eviction,
                    error = %full,
                    "Redis is out of memory: a key cannot be taken until memory frees");
                Err(full)
            }
        }
    }

    /// `WAIT` or `WAITAOF` after an applied completion or journal write (`write`, as
    /// the log names it), on the connection that wrote it. The write is applied
    /// whatever the answer: a shortfall or an error is logged, never returned.
    async fn wait_for(&self, durability: Durability, attempt: &Attempt, write: Write) {
        let Write { after, applied } = write;
        let (command, asked_local, asked_replicas) = match durability {
            Durability::Replicas {
                replicas,
                timeout_ms,
            } => {
                let mut command = redis::cmd("WAIT");
                command.arg(replicas).arg(timeout_ms);
                (command, false, replicas)
            }
            Durability::Aof {
                local,
                replicas,
                timeout_ms,
            } => {
                let mut command = redis::cmd("WAITAOF");
                command.arg(u8::from(local)).arg(replicas).arg(timeout_ms);
                (command, local, replicas)
            }
        };
        // `WAIT` blocks the connection on the server, and every call of this store
        // shares it: a second `WAIT` queued behind the first would hold the begins and
        // heartbeats behind both, and under load the queue would grow until leases
        // lapse. One at a time; a completion that finds one in flight is not waited for.
        if self.waiting.swap(true, Ordering::AcqRel) {
            tracing::warn!(target: "idem", prefix = %self.prefix, id = %attempt.id,
                command = %durability,
                "Redis WAIT after {after} skipped: another WAIT is in flight on the shared connection; {applied} is applied on the primary and counts, but a failover or restart may lose it");
            return;
        }
        let _done = WaitDone(&self.waiting);
        // On the master that holds the record: WAIT counts the replicas that have
        // every write of this connection to that node.
        let key = self.key(&attempt.id);
        let answer = self.connection.query_at_key(command, key.as_bytes()).await;
        // (local fsyncs, replicas) that acknowledged the completion.
        let (local, replicas) = match answer {
            Ok(Value::Int(replicas)) => (0, replicas),
            Ok(Value::Array(counts)) => match counts.as_slice() {
                [Value::Int(local), Value::Int(replicas)] => (*local, *replicas),
                _ => (0, 0),
            },
            Ok(_) => (0, 0),
            Err(error) => {
                tracing::warn!(target: "idem", prefix = %self.prefix, id = %attempt.id,
                    command = %durability, %error,
                    "Redis WAIT after {after} failed; {applied} is applied on the primary and counts, but a failover or restart may lose it");
                return;
            }
        };
        if replicas < i64::from(asked_replicas) || (asked_local && local < 1) {
            tracing::warn!(target: "idem", prefix = %self.prefix, id = %attempt.id,
                command = %durability, acknowledged_replicas = replicas, acknowledged_local = local,
                "Redis WAIT after {after}: fewer acknowledged it than asked; {applied} is applied on the primary and counts, but a failover or restart may lose it");
        }
    }

    async fn held_write(
        &self,
        operation: &'static str,
        attempt: &Attempt,
        script: &Lua,
        invocation: &Cmd,
    ) -> Result<Written<()>, StoreError> {
        let answer = self.eval(script, invocation).await;
        self.held_answer(operation, attempt, answer)
    }

    /// The answer to a script of the attempt holding the record (complete, extend,
    /// release).
    fn held_answer(
        &self,
        operation: &'static str,
        attempt: &Attempt,
        answer: Result<Value, RedisError>,
    ) -> Result<Written<()>, StoreError> {
        let context = self.context(operation, &attempt.id);
        let answer = answer.map_err(|e| store_error(context, e))?;
        let written = Self::answer(context, answer)?.map(|_| ());
        if written == Written::Refused(None) {
            // The attempt held the record (a takeover would have left it with a higher
            // fence), and its key outlives the lease by the record's TTL: short of an
            // attempt later than that, the record was lost, not expired.
            tracing::warn!(target: "idem", prefix = %self.prefix, id = %attempt.id,
                fence = attempt.fence, operation, eviction = %self.eviction,
                "a Redis record vanished under its holder: evicted, lost in a restart without persistence or a failover, or deleted; a duplicate may run the body again");
        }
        Ok(written)
    }
}

/// A write a `WAIT` follows, as its warnings name it.
#[derive(Clone, Copy)]
struct Write {
    /// "after ...".
    after: &'static str,
    /// "... is applied on the primary".
    applied: &'static str,
}

impl Write {
    const COMPLETION: Write = Write {
        after: "a completion",
        applied: "the completion",
    };
    const JOURNAL: Write = Write {
        after: "a journal write",
        applied: "the journal write",
    };
}

/// What an error names: the store (Redis), the operation, the record and the store's
/// key prefix.
#[derive(Clone, Copy)]
pub(crate) struct Context<'a> {
    pub operation: &'static str,
    pub id: &'a RecordId,
    pub prefix: &'a str,
}

impl std::fmt::Display for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Redis {} of `{}` (key prefix `{}`)",
            self.operation, self.id, self.prefix
        )
    }
}

/// Clears the store's `WAIT`-in-flight flag when the `WAIT` ends, or its future is
/// dropped.
struct WaitDone<'a>(&'a AtomicBool);

impl Drop for WaitDone<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A record's Redis key (the store's prefix, then the record id), written straight
/// into the command's argument: no key string is built first.
struct RecordKey<'a> {
    prefix: &'a str,
    id: &'a RecordId,
}

impl ToRedisArgs for RecordKey<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let mut arg = out.bufmut_for_next_arg(self.prefix.len() + self.id.len());
        arg.put_slice(self.prefix.as_bytes());
        arg.put_slice(self.id.namespace().as_bytes());
        arg.put_slice(b"#");
        arg.put_slice(&self.id.digest_hex().to_ascii());
    }
}

/// Classes a `redis` error: a lost or refused connection, a timeout, and the server's
/// "not now" answers (`OOM` when memory is full, `NOREPLICAS` under
/// `min-replicas-to-write`, `MISCONF` when it cannot persist, `BUSY`, `LOADING`,
/// `TRYAGAIN`, `CLUSTERDOWN`, `MOVED`, `ASK`, `MASTERDOWN`, `READONLY` during a failover)
/// are transient; the rest (`WRONGTYPE`, a
/// script error, a missing permission) permanent.
pub(crate) fn store_error(context: Context<'_>, error: RedisError) -> StoreError {
    const TRANSIENT_CODES: &[&str] = &[
        "OOM",
        "NOREPLICAS",
        "MISCONF",
        "BUSY",
        "LOADING",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "MOVED",
        "ASK",
        "MASTERDOWN",
        "READONLY",
    ];
    let transient = error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error
            .code()
            .is_some_and(|code| TRANSIENT_CODES.contains(&code));
    let message = format!("{context} failed: {error}");
    let classified = if transient {
        StoreError::transient(message)
    } else {
        StoreError::permanent(message)
    };
    classified.with_source(error)
}

/// A record's fields as the hash holds them, by name.
#[derive(Default)]
struct Fields {
    state: Option<String>,
    owner: Option<String>,
    fence: Option<String>,
    lease_until_ms: Option<String>,
    expires_at_s: Option<String>,
    fingerprint: Option<String>,
    outcome: Option<String>,
    /// Raw bytes: JSON text, or a bytes-codec value as it is.
    data: Option<Vec<u8>>,
    format: Option<String>,
    codec: Option<String>,
    /// The journal's entries with their positions, as found (`s:<name>` fields).
    steps: Vec<(u64, StepRecord)>,
}

impl Fields {
    fn slot(&mut self, name: &[u8]) -> Option<&mut Option<String>> {
        Some(match name {
            b"state" => &mut self.state,
            b"owner" => &mut self.owner,
            b"fence" => &mut self.fence,
            b"lease_until_ms" => &mut self.lease_until_ms,
            b"expires_at_s" => &mut self.expires_at_s,
            b"fingerprint" => &mut self.fingerprint,
            b"outcome" => &mut self.outcome,
            b"format" => &mut self.format,
            b"codec" => &mut self.codec,
            _ => return None,
        })
    }
}

/// A record from its hash's fields (`HGETALL`'s flat list), moved out of the reply
/// without copies; `None` for no fields.
pub(crate) fn decode_fields(
    context: Context<'_>,
    fields: Vec<Value>,
) -> Result<Option<Arc<Record>>, StoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let mut by_name = Fields::default();
    let mut entries = fields.into_iter();
    while let Some(name) = entries.next() {
        match (name, entries.next()) {
            (Value::BulkString(name), Some(Value::BulkString(value))) if name == b"data" => {
                by_name.data = Some(value);
            }
            (Value::BulkString(name), Some(Value::BulkString(value)))
                if name.starts_with(STEP_PREFIX) =>
            {
                by_name.steps.push(unpack_step(context, name, value)?);
            }
            (Value::BulkString(name), Some(Value::BulkString(value))) => {
                let value = String::from_utf8(value).map_err(|_| {
                    StoreError::malformed(format!(
                        "{context}: field `{}` is not UTF-8",
                        String::from_utf8_lossy(&name)
                    ))
                })?;
                // Fields of a newer version are ignored, as before.
                if let Some(slot) = by_name.slot(&name) {
                    *slot = Some(value);
                }
            }
            other => {
                return Err(StoreError::malformed(format!(
                    "{context}: the hash holds an unexpected entry {other:?}"
                )))
            }
        }
    }
    decode(context, by_name).map(|record| Some(Arc::new(record)))
}

/// The prefix of a step's field in the record's hash: `s:<name>`.
const STEP_PREFIX: &[u8] = b"s:";
/// The outcome a started step's entry holds (it has none yet).
const STARTED: &str = "started";

/// A step's field value without its position (which the script puts in front):
/// `<outcome>:<codec length>:<codec>`, then `=` and the data's bytes as they are if
/// there are any (see the layout in `scripts.rs`).
fn pack_step(step: &StepRecord) -> Vec<u8> {
    let outcome = step.outcome.map_or(STARTED, Outcome::as_str);
    let codec = step.codec.as_str();
    let mut packed = Vec::with_capacity(outcome.len() + codec.len() + step.data_len() + 24);
    packed.extend_from_slice(format!("{outcome}:{}:{codec}", codec.len()).as_bytes());
    if let Some(data) = &step.data {
        packed.push(b'=');
        packed.extend_from_slice(data);
    }
    packed
}

/// A step's entry and position from its field (`s:<name>`) and value
/// (`<position>:<outcome>:<codec length>:<codec>[=<data>]`).
fn unpack_step(
    context: Context<'_>,
    field: Vec<u8>,
    value: Vec<u8>,
) -> Result<(u64, StepRecord), StoreError> {
    let name = String::from_utf8(field[STEP_PREFIX.len()..].to_vec());
    let malformed = |what: &str| {
        StoreError::malformed(format!(
            "{context}: the journal's field `{}` {what}",
            String::from_utf8_lossy(&field)
        ))
    };
    let name = name.map_err(|_| malformed("names a step that is not UTF-8"))?;
    // The header: position, outcome, codec length, each ended by `:`.
    let mut rest = value.as_slice();
    let mut header = [""; 3];
    for part in &mut header {
        let end = rest
            .iter()
            .position(|&byte| byte == b':')
            .ok_or_else(|| malformed("holds an entry that cannot be read"))?;
        *part = std::str::from_utf8(&rest[..end])
            .map_err(|_| malformed("holds an entry that cannot be read"))?;
        rest = &rest[end + 1..];
    }
    let [position, outcome, codec_len] = header;
    let position: u64 = position
        .parse()
        .map_err(|_| malformed("holds no position"))?;
    let outcome = match outcome {
        STARTED => None,
        outcome => Some(
            outcome
                .parse::<Outcome>()
                .map_err(|e| malformed(&format!("holds an unknown outcome: {e}")))?,
        ),
    };
    let codec_len: usize = codec_len
        .parse()
        .map_err(|_| malformed("holds no codec length"))?;
    if rest.len() < codec_len {
        return Err(malformed("holds a truncated codec"));
    }
    let (codec, rest) = rest.split_at(codec_len);
    let codec =
        std::str::from_utf8(codec).map_err(|_| malformed("holds a codec that is not UTF-8"))?;
    let data = match rest {
        [] => None,
        [b'=', data @ ..] => Some(Bytes::copy_from_slice(data)),
        _ => return Err(malformed("holds an entry that cannot be read")),
    };
    Ok((
        position,
        StepRecord {
            name,
            outcome,
            data,
            codec: Codec::from_stored(codec),
        },
    ))
}

/// A record from its fields by name.
fn decode(context: Context<'_>, fields: Fields) -> Result<Record, StoreError> {
    let id = context.id;
    let text = |field: Option<String>, name: &str| {
        field.ok_or_else(|| StoreError::malformed(format!("{context}: no `{name}` field")))
    };
    let number = |field: Option<String>, name: &str| -> Result<u64, StoreError> {
        text(field, name)?.parse().map_err(|_| {
            StoreError::malformed(format!("{context}: field `{name}` is not a whole number"))
        })
    };
    let state: State = text(fields.state, "state")?
        .parse()
        .map_err(|e: String| StoreError::malformed(format!("{context}: {e}")))?;
    let outcome = match fields.outcome {
        Some(outcome) => Some(
            outcome
                .parse::<Outcome>()
                .map_err(|e| StoreError::malformed(format!("{context}: {e}")))?,
        ),
        None => None,
    };
    Ok(Record {
        id: id.clone(),
        state,
        owner: Owner::from_stored(&text(fields.owner, "owner")?),
        fence: number(fields.fence, "fence")?,
        lease_until_ms: number(fields.lease_until_ms, "lease_until_ms")?,
        expires_at_s: number(fields.expires_at_s, "expires_at_s")?,
        fingerprint: fields.fingerprint,
        outcome,
        data: fields.data.map(Bytes::from),
        format: u32::try_from(number(fields.format, "format")?)
            .map_err(|_| StoreError::malformed(format!("{context}: the format is too large")))?,
        codec: Codec::from_stored(&text(fields.codec, "codec")?),
        steps: journal(fields.steps).into(),
    })
}

/// The journal in the order of its entries' first writes (their positions).
fn journal(mut steps: Vec<(u64, StepRecord)>) -> Vec<StepRecord> {
    steps.sort_unstable_by_key(|(position, _)| *position);
    steps.into_iter().map(|(_, step)| step).collect()
}

#[async_trait]
impl Store for RedisStore {
    fn limits(&self) -> Limits {
        Limits {
            max_id_bytes: 4096 - self.prefix.len().min(4096),
            max_data_bytes: self.max_data_bytes,
        }
    }

    async fn begin(&self, request: &Begin) -> Result<Written<u64>, StoreError> {
        let invocation = self.begin_invocation(request);
        let answer = self.eval(&self.scripts.begin, &invocation).await;
        self.begun(request, answer).await
    }

    /// The begin script for every request, in one pipeline on one server (one round
    /// trip); on a cluster each sent alone, all at once (see [`RedisStore`]'s batch
    /// notes in the crate documentation).
    async fn begin_batch(&self, requests: &[Begin]) -> Vec<Result<Written<u64>, StoreError>> {
        let Some(first) = requests.first() else {
            return Vec::new();
        };
        let invocations: Vec<Cmd> = requests.iter().map(|r| self.begin_invocation(r)).collect();
        match self.eval_all(&self.scripts.begin, &invocations).await {
            Ok(answers) => {
                join_all(
                    requests
                        .iter()
                        .zip(answers)
                        .map(|(request, answer)| self.begun(request, answer)),
                )
                .await
            }
            Err(error) => self.batch_failed(
                "pipelined begin (first key)",
                &first.id,
                requests.len(),
                error,
            ),
        }
    }

    async fn complete(
        &self,
        attempt: &Attempt,
        completion: &Completion,
    ) -> Result<Written<()>, StoreError> {
        let invocation = self.complete_invocation(attempt, completion);
        let written = self
            .held_write("complete", attempt, &self.scripts.complete, &invocation)
            .await;
        if let (true, Some(durability)) =
            (Self::completion_applied(attempt, &written), self.durability)
        {
            self.wait_for(durability, attempt, Write::COMPLETION).await;
        }
        written
    }

    /// The complete script for every completion, in one pipeline on one server (one
    /// round trip), then one `WAIT` (if the store waits) for them all; on a cluster each
    /// sent alone, all at once.
    async fn complete_batch(
        &self,
        completions: &[(Attempt, Completion)],
    ) -> Vec<Result<Written<()>, StoreError>> {
        let Some((first, _)) = completions.first() else {
            return Vec::new();
        };
        let invocations: Vec<Cmd> = completions
            .iter()
            .map(|(attempt, completion)| self.complete_invocation(attempt, completion))
            .collect();
        let answers = match self.eval_all(&self.scripts.complete, &invocations).await {
            Ok(answers) => answers,
            Err(error) => {
                return self.batch_failed(
                    "pipelined complete (first key)",
                    &first.id,
                    completions.len(),
                    error,
                )
            }
        };
        let written: Vec<_> = completions
            .iter()
            .zip(answers)
            .map(|((attempt, _), answer)| self.held_answer("complete", attempt, answer))
            .collect();
        if let Some(durability) = self.durability {
            // One server: every completion went on the connection one `WAIT` counts.
            // A cluster: each master holds its own completions and counts its own
            // replicas, so each slot written is waited for on its master (one `WAIT` per
            // slot, one at a time: at least one per master involved).
            let mut waited = std::collections::HashSet::new();
            for ((attempt, _), written) in completions.iter().zip(&written) {
                if !Self::completion_applied(attempt, written) {
                    continue;
                }
                let slot = redis::cluster_routing::Slot::for_key(self.key(&attempt.id));
                if !self.connection.is_cluster() && !waited.is_empty() {
                    break;
                }
                if waited.insert(slot) {
                    self.wait_for(durability, attempt, Write::COMPLETION).await;
                }
            }
        }
        written
    }

    async fn extend(
        &self,
        attempt: &Attempt,
        renewal: &Renewal,
    ) -> Result<Written<()>, StoreError> {
        let mut invocation = self.invocation(&self.scripts.extend, &attempt.id);
        invocation
            .arg(&attempt.owner.to_hex()[..])
            .arg(attempt.fence)
            .arg(renewal.now_ms)
            .arg(renewal.lease_until_ms)
            .arg(renewal.expires_at_s);
        self.held_write("extend", attempt, &self.scripts.extend, &invocation)
            .await
    }

    async fn release(&self, attempt: &Attempt) -> Result<Written<()>, StoreError> {
        let mut invocation = self.invocation(&self.scripts.release, &attempt.id);
        invocation
            .arg(&attempt.owner.to_hex()[..])
            .arg(attempt.fence);
        self.held_write("release", attempt, &self.scripts.release, &invocation)
            .await
    }

    /// The journal script: one round trip, complete's condition, the step's field
    /// written in the record's hash (see the crate's "Key layout"); waited for
    /// (`WAIT`/`WAITAOF`) like a completion when the store waits.
    async fn journal(
        &self,
        attempt: &Attempt,
        step: &StepRecord,
    ) -> Result<Written<()>, StoreError> {
        // Redis bounds no hash but by memory (a full one refuses the script, `-OOM`,
        // transient); the store's own limit on a value applies to each step's, as to
        // the outcome's.
        if step.data_len() > self.max_data_bytes {
            return Err(StoreError::permanent(format!(
                "{}: the journal entry of step `{}` is too large: {} bytes of data, the \
                 store's limit is {} (RedisStoreBuilder::max_data_bytes)",
                self.context("journal", &attempt.id),
                step.name,
                step.data_len(),
                self.max_data_bytes
            )));
        }
        let mut invocation = self.invocation(&self.scripts.journal, &attempt.id);
        invocation
            .arg(&attempt.owner.to_hex()[..])
            .arg(attempt.fence)
            .arg(&step.name)
            .arg(pack_step(step));
        let written = self
            .held_write("journal", attempt, &self.scripts.journal, &invocation)
            .await;
        let applied = match &written {
            Ok(Written::Applied(())) => true,
            Ok(Written::Refused(Some(current))) => current.shows_journal_by(attempt, step),
            Ok(Written::Refused(None)) | Err(_) => false,
        };
        if let (true, Some(durability)) = (applied, self.durability) {
            self.wait_for(durability, attempt, Write::JOURNAL).await;
        }
        written
    }

    async fn read(&self, id: &RecordId) -> Result<Option<Arc<Record>>, StoreError> {
        let context = self.context("read", id);
        let mut command = redis::cmd("HGETALL");
        command.arg(self.key_arg(id));
        let fields = self
            .connection
            .query(&command)
            .await
            .map_err(|e| store_error(context, e))?;
        match fields {
            Value::Array(fields) => decode_fields(context, fields),
            Value::Map(pairs) => {
                let flat: Vec<Value> = pairs.into_iter().flat_map(|(k, v)| [k, v]).collect();
                decode_fields(context, flat)
            }
            other => Err(StoreError::malformed(format!(
                "{context}: HGETALL answered {other:?}"
            ))),
        }
    }

    async fn delete(&self, id: &RecordId) -> Result<(), StoreError> {
        let mut command = redis::cmd("DEL");
        command.arg(self.key_arg(id));
        self.connection
            .query(&command)
            .await
            .map(drop)
            .map_err(|e| store_error(self.context("delete", id), e))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use idem_core::store::StoreErrorKind;

    /// An error as the server sends it (`-CODE message`), parsed by the `redis` crate.
    pub(crate) fn server_error(reply: &str) -> RedisError {
        redis::parse_redis_value(format!("-{reply}\r\n").as_bytes())
            .and_then(|value| value.extract_error())
            .expect_err("an error reply")
    }

    static ID: std::sync::LazyLock<RecordId> =
        std::sync::LazyLock::new(|| RecordId::new("billing", [0x0f; 32]));

    fn context() -> Context<'static> {
        Context {
            operation: "complete",
            id: &ID,
            prefix: "svc-a:",
        }
    }

    /// Names the store, the operation, the record and the prefix.
    fn assert_named(error: &StoreError) {
        let message = error.to_string();
        for expected in ["Redis", "complete", "billing#0f0f0f", "svc-a:"] {
            assert!(message.contains(expected), "{expected}: {message}");
        }
    }

    #[test]
    fn a_redis_error_is_kept_as_the_source_and_the_message_names_store_operation_and_prefix() {
        let error = store_error(context(), server_error("WRONGTYPE Operation against a key"));
        assert_named(&error);
        let source = std::error::Error::source(&error).expect("the redis error is the source");
        let source = source
            .downcast_ref::<RedisError>()
            .expect("a redis::RedisError");
        assert_eq!(source.code(), Some("WRONGTYPE"));

        let dropped = store_error(
            context(),
            RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        );
        assert_named(&dropped);
        assert!(std::error::Error::source(&dropped)
            .and_then(|source| source.downcast_ref::<RedisError>())
            .is_some());
    }

    #[test]
    fn an_answer_that_cannot_be_read_names_store_operation_and_prefix() {
        let bulk = |text: &str| Value::BulkString(text.as_bytes().to_vec());
        let fields = |fence: &str, format: &str, outcome: &str| {
            [
                ("state", "COMPLETED"),
                ("owner", "a"),
                ("fence", fence),
                ("lease_until_ms", "0"),
                ("expires_at_s", "0"),
                ("outcome", outcome),
                ("format", format),
                ("codec", "json"),
            ]
            .into_iter()
            .flat_map(|(name, value)| [bulk(name), bulk(value)])
            .collect::<Vec<_>>()
        };
        assert!(decode_fields(context(), fields("1", "1", "ok")).is_ok());
        let malformed = [
            fields("x", "1", "ok"),
            fields("1", "99999999999", "ok"),
            fields("1", "1", "bogus"),
            vec![bulk("state"), bulk("BOGUS")],
            vec![bulk("state"), bulk("INPROGRESS")],
            vec![bulk("state"), Value::Int(1)],
            vec![bulk("state"), Value::BulkString(vec![0xff])],
        ];
        for fields in malformed {
            let error = decode_fields(context(), fields).expect_err("malformed");
            assert_eq!(error.kind(), StoreErrorKind::Malformed);
            assert_named(&error);
        }
        for answer in [Value::Int(3), Value::Array(vec![Value::Int(2)])] {
            let error = RedisStore::answer(context(), answer).expect_err("unexpected");
            assert_eq!(error.kind(), StoreErrorKind::Permanent);
            assert_named(&error);
        }
    }

    #[test]
    fn a_step_entry_reads_back_as_packed_with_the_scripts_position_in_front() {
        let entries = [
            StepRecord::started("charge"),
            StepRecord {
                name: "render: s:=".into(),
                outcome: Some(Outcome::Ok),
                data: Some(Bytes::from_static(&[0xff, b':', b'=', 0x00])),
                codec: Codec::Bytes,
            },
            StepRecord {
                name: String::new(),
                outcome: Some(Outcome::Err),
                data: Some(Bytes::new()),
                codec: Codec::from_stored("x:y=z"),
            },
        ];
        for (position, entry) in entries.into_iter().enumerate() {
            let mut value = format!("{}:", position + 1).into_bytes();
            value.extend_from_slice(&pack_step(&entry));
            let field = [STEP_PREFIX, entry.name.as_bytes()].concat();
            let read = unpack_step(context(), field, value).expect("reads back");
            assert_eq!(read, (position as u64 + 1, entry));
        }
    }

    #[test]
    fn the_servers_not_now_answers_are_transient_the_rest_permanent() {
        for reply in [
            "OOM command not allowed when used memory > 'maxmemory'.",
            "NOREPLICAS Not enough good replicas to write.",
            "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.",
            "BUSY Redis is busy running a script",
            "LOADING Redis is loading the dataset in memory",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "CLUSTERDOWN The cluster is down",
            "MOVED 3999 127.0.0.1:6381",
            "ASK 3999 127.0.0.1:6381",
            "MASTERDOWN Link with MASTER is down",
            "READONLY You can't write against a read only replica.",
        ] {
            let error = store_error(context(), server_error(reply));
            assert_eq!(error.kind(), StoreErrorKind::Transient, "{reply}");
        }
        for reply in [
            "WRONGTYPE Operation against a key holding the wrong kind of value",
            "ERR Error running script (call to f_0123): user_script:1: oops",
            "NOPERM this user has no permissions to run the 'evalsha' command",
        ] {
            let error = store_error(context(), server_error(reply));
            assert_eq!(error.kind(), StoreErrorKind::Permanent, "{reply}");
        }
    }
}
