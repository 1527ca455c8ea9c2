//! The Redis store: the `Store` mapping onto one hash per record and one script per
//! transition.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use idem_core::store::{
    Attempt, Begin, Completion, Limits, Outcome, Record, Renewal, State, StoreError, Written,
};
use idem_core::Store;
use redis::aio::ConnectionManager;
use redis::{RedisError, Value};

use crate::scripts::Scripts;

/// The largest recorded value by default, in bytes.
pub const DEFAULT_MAX_DATA_BYTES: usize = 1024 * 1024;

/// idem's records in Redis or Valkey: see the [crate documentation](crate).
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) connection: ConnectionManager,
    pub(crate) prefix: String,
    pub(crate) max_data_bytes: usize,
    pub(crate) scripts: Arc<Scripts>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("max_data_bytes", &self.max_data_bytes)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The key prefix before every record id.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of a record id.
    pub fn key(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    /// Runs one script on the record's key.
    async fn script(
        &self,
        operation: &'static str,
        script: &redis::Script,
        id: &str,
        args: &[&str],
    ) -> Result<Value, StoreError> {
        let mut invocation = script.key(self.key(id));
        for arg in args {
            invocation.arg(*arg);
        }
        let mut connection = self.connection.clone();
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| store_error(operation, e))
    }

    /// `{1, ...}` applied, `{0, fields}` refused with the current record.
    fn answer(&self, id: &str, value: Value) -> Result<Written<Option<i64>>, StoreError> {
        let Value::Array(items) = value else {
            return Err(StoreError::permanent(format!(
                "unexpected script answer for `{id}`: {value:?}"
            )));
        };
        match items.as_slice() {
            [Value::Int(1)] => Ok(Written::Applied(None)),
            [Value::Int(1), Value::Int(fence)] => Ok(Written::Applied(Some(*fence))),
            [Value::Int(0), Value::Array(fields)] => {
                Ok(Written::Refused(decode_fields(id, fields)?))
            }
            _ => Err(StoreError::permanent(format!(
                "unexpected script answer for `{id}`: {items:?}"
            ))),
        }
    }

    async fn held_write(
        &self,
        operation: &'static str,
        script: &redis::Script,
        attempt: &Attempt,
        args: &[&str],
    ) -> Result<Written<()>, StoreError> {
        let answer = self.script(operation, script, &attempt.id, args).await?;
        Ok(self.answer(&attempt.id, answer)?.map(|_| ()))
    }
}

/// Classes a `redis` error: a lost or refused connection, a timeout, and the server's
/// "not now" answers (`BUSY`, `LOADING`, `TRYAGAIN`, `CLUSTERDOWN`, `MOVED`, `ASK`,
/// `MASTERDOWN`, `READONLY` during a failover) are transient; the rest (`WRONGTYPE`, a
/// script error, a missing permission) permanent.
pub(crate) fn store_error(operation: &'static str, error: RedisError) -> StoreError {
    const TRANSIENT_CODES: &[&str] = &[
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
    let message = format!("Redis {operation} failed: {error}");
    let classified = if transient {
        StoreError::transient(message)
    } else {
        StoreError::permanent(message)
    };
    classified.with_source(error)
}

/// A record from its hash's fields (`HGETALL`'s flat list); `None` for no fields.
pub(crate) fn decode_fields(id: &str, fields: &[Value]) -> Result<Option<Record>, StoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let mut map = HashMap::new();
    for pair in fields.chunks(2) {
        match pair {
            [Value::BulkString(name), Value::BulkString(value)] => {
                let name = String::from_utf8_lossy(name).into_owned();
                let value = String::from_utf8(value.clone()).map_err(|_| {
                    StoreError::malformed(format!("field `{name}` of `{id}` is not UTF-8"))
                })?;
                map.insert(name, value);
            }
            other => {
                return Err(StoreError::malformed(format!(
                    "the hash of `{id}` holds an unexpected entry: {other:?}"
                )))
            }
        }
    }
    decode(id, &map).map(Some)
}

/// A record from its fields by name.
pub(crate) fn decode(id: &str, map: &HashMap<String, String>) -> Result<Record, StoreError> {
    let text = |field: &str| {
        map.get(field)
            .ok_or_else(|| StoreError::malformed(format!("`{id}` has no `{field}` field")))
    };
    let number = |field: &str| -> Result<u64, StoreError> {
        text(field)?.parse().map_err(|_| {
            StoreError::malformed(format!("field `{field}` of `{id}` is not a whole number"))
        })
    };
    let state: State = text("state")?
        .parse()
        .map_err(|e: String| StoreError::malformed(format!("`{id}`: {e}")))?;
    let outcome = match map.get("outcome") {
        Some(outcome) => Some(
            outcome
                .parse::<Outcome>()
                .map_err(|e| StoreError::malformed(format!("`{id}`: {e}")))?,
        ),
        None => None,
    };
    Ok(Record {
        id: id.to_owned(),
        state,
        owner: text("owner")?.clone(),
        fence: number("fence")?,
        lease_until_ms: number("lease_until_ms")?,
        expires_at_s: number("expires_at_s")?,
        fingerprint: map.get("fingerprint").cloned(),
        outcome,
        data: map.get("data").cloned(),
        format: u32::try_from(number("format")?)
            .map_err(|_| StoreError::malformed(format!("the format of `{id}` is too large")))?,
        codec: text("codec")?.clone(),
    })
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
        let (now, lease, expires, format) = (
            request.now_ms.to_string(),
            request.lease_until_ms.to_string(),
            request.expires_at_s.to_string(),
            idem_core::store::FORMAT.to_string(),
        );
        let args = [
            request.owner.as_str(),
            &now,
            &lease,
            &expires,
            request.fingerprint.as_deref().unwrap_or(""),
            &format,
            idem_core::store::CODEC_JSON,
        ];
        let answer = self
            .script("begin", &self.scripts.begin, &request.id, &args)
            .await?;
        match self.answer(&request.id, answer)? {
            Written::Applied(Some(fence)) if fence > 0 => Ok(Written::Applied(fence as u64)),
            Written::Applied(_) => Err(StoreError::permanent(format!(
                "Redis's answer to begin on `{}` holds no fence",
                request.id
            ))),
            Written::Refused(current) => Ok(Written::Refused(current)),
        }
    }

    async fn complete(
        &self,
        attempt: &Attempt,
        completion: &Completion,
    ) -> Result<Written<()>, StoreError> {
        let (fence, now, expires) = (
            attempt.fence.to_string(),
            completion.now_ms.to_string(),
            completion.expires_at_s.to_string(),
        );
        let args = [
            attempt.owner.as_str(),
            &fence,
            &now,
            &expires,
            completion.outcome.as_str(),
            completion.data.as_deref().unwrap_or(""),
            if completion.data.is_some() { "1" } else { "0" },
        ];
        self.held_write("complete", &self.scripts.complete, attempt, &args)
            .await
    }

    async fn extend(
        &self,
        attempt: &Attempt,
        renewal: &Renewal,
    ) -> Result<Written<()>, StoreError> {
        let (fence, now, lease, expires) = (
            attempt.fence.to_string(),
            renewal.now_ms.to_string(),
            renewal.lease_until_ms.to_string(),
            renewal.expires_at_s.to_string(),
        );
        let args = [attempt.owner.as_str(), &fence, &now, &lease, &expires];
        self.held_write("extend", &self.scripts.extend, attempt, &args)
            .await
    }

    async fn release(&self, attempt: &Attempt) -> Result<Written<()>, StoreError> {
        let fence = attempt.fence.to_string();
        let args = [attempt.owner.as_str(), &fence];
        self.held_write("release", &self.scripts.release, attempt, &args)
            .await
    }

    async fn read(&self, id: &str) -> Result<Option<Record>, StoreError> {
        let mut connection = self.connection.clone();
        let fields: Value = redis::cmd("HGETALL")
            .arg(self.key(id))
            .query_async(&mut connection)
            .await
            .map_err(|e| store_error("read", e))?;
        match fields {
            Value::Array(fields) => decode_fields(id, &fields),
            Value::Map(pairs) => {
                let flat: Vec<Value> = pairs.into_iter().flat_map(|(k, v)| [k, v]).collect();
                decode_fields(id, &flat)
            }
            other => Err(StoreError::malformed(format!(
                "HGETALL of `{id}` answered {other:?}"
            ))),
        }
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        redis::cmd("DEL")
            .arg(self.key(id))
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| store_error("delete", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idem_core::store::StoreErrorKind;

    /// An error as the server sends it (`-CODE message`), parsed by the `redis` crate.
    fn server_error(reply: &str) -> RedisError {
        redis::parse_redis_value(format!("-{reply}\r\n").as_bytes())
            .and_then(|value| value.extract_error())
            .expect_err("an error reply")
    }

    #[test]
    fn the_servers_not_now_answers_are_transient_the_rest_permanent() {
        for reply in [
            "BUSY Redis is busy running a script",
            "LOADING Redis is loading the dataset in memory",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "CLUSTERDOWN The cluster is down",
            "MOVED 3999 127.0.0.1:6381",
            "ASK 3999 127.0.0.1:6381",
            "MASTERDOWN Link with MASTER is down",
            "READONLY You can't write against a read only replica.",
        ] {
            let error = store_error("begin", server_error(reply));
            assert_eq!(error.kind(), StoreErrorKind::Transient, "{reply}");
        }
        for reply in [
            "WRONGTYPE Operation against a key holding the wrong kind of value",
            "ERR Error running script (call to f_0123): user_script:1: oops",
            "NOPERM this user has no permissions to run the 'evalsha' command",
        ] {
            let error = store_error("begin", server_error(reply));
            assert_eq!(error.kind(), StoreErrorKind::Permanent, "{reply}");
        }
    }
}
