//! The four transitions and the journal write as server-side Lua scripts, one key each
//! (so one slot of a Redis Cluster). Each
//! answers `{1, fence}` / `{1}` when applied, or `{0, HGETALL}` with the record as it is
//! when refused (`{0, {}}` when there is none): the refusal and the current record in
//! the same round trip.
//!
//! Each script opens with a Redis 7 shebang, which sets how it meets a full memory
//! (`maxmemory` reached under `noeviction`). Begin declares no flag, so the server
//! refuses it with `-OOM` before it runs: the key is not taken and the body does not
//! run. A script without a shebang would be refused only at its first write, and
//! begin's first write is a delete, which always gets through. Complete, extend and
//! release declare `allow-oom`: an attempt whose body ran can still be recorded (or
//! give its key back) when memory filled up meanwhile. Journal declares no flag, as
//! begin: a full server refuses it up front (`-OOM`, a transient error), so a step's
//! value never grows a full memory; the step's result is then not journaled, the body
//! does not go on, and the next attempt runs the step again (with the same key).
//!
//! # The journal in the hash
//! The record stays one hash (one key, one slot; every script still single-key), and
//! each step is one field of it: `s:<name>` (the name's UTF-8 bytes as they are, so
//! any name is a field of its own and none meets the record's fields, none of which
//! starts with `s:`), whose value packs the entry:
//!
//! ```text
//! <position>:<outcome>:<codec length>:<codec>[=<data>]
//! ```
//!
//! `position` the order of its first write (1, 2, ...), `outcome` `started` (an
//! at-most-once step that started) or the outcome's name (`ok`, `err`), the codec's
//! name as stored (an unknown one kept), and `=` then the data's bytes as they are
//! (Redis strings are binary-safe: a `bytes` value is never base64), absent when the
//! entry has no data. The field `steps` counts the positions handed out. A field per
//! step rather than one field holding the whole journal: the journal write sends and
//! writes one step, never the others again (a journal of N steps costs N writes of one
//! step each, not N² bytes), and replacing an entry keeps its position from its own
//! value. `HGETALL` (every script's read, and the store's `read`) returns the steps
//! with the record in the same round trip. Begin, extend and release write named
//! fields only, so they keep the steps; complete deletes every `s:` field and `steps`
//! in its own script, looking for them only when `steps` is there (a record without
//! steps costs complete nothing more). A record written before steps existed has no
//! `s:` fields and reads as an empty journal.
//!
//! Numbers travel as the engine's decimal strings and are written back as given; Lua
//! turns only the fence and comparisons into numbers (all below 2^53). A record with a
//! missing or unreadable field is refused with its fields, and decoded (as malformed)
//! by the store, never overwritten.

/// Reads the record into `h` and keeps the raw reply for a refusal.
const PRELUDE: &str = r#"
local raw = redis.call('HGETALL', KEYS[1])
local h = {}
for i = 1, #raw, 2 do h[raw[i]] = raw[i + 1] end
local function held(owner, fence)
  return h.state == 'INPROGRESS' and h.owner == owner and h.fence == fence
end
local function expire_at(lease_until_ms, expires_at_s, now_ms)
  local until_ms = math.max(tonumber(lease_until_ms) or 0, (tonumber(expires_at_s) or 0) * 1000)
  local ttl = until_ms - tonumber(now_ms)
  if ttl < 1 then ttl = 1 end
  redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl))
end
"#;

/// ARGV: owner, now_ms, lease_until_ms, expires_at_s, fingerprint ('' for none),
/// format, codec. Applied iff there is no record or it is free at `now_ms`.
const BEGIN: &str = r#"
local now = tonumber(ARGV[2])
local fence = 0
if #raw > 0 then
  local live
  if h.state == 'COMPLETED' then
    local expires = tonumber(h.expires_at_s)
    if not expires then return {0, raw} end
    live = now < expires * 1000
  elseif h.state == 'INPROGRESS' then
    local lease = tonumber(h.lease_until_ms)
    if not lease then return {0, raw} end
    live = now < lease
  else
    return {0, raw}
  end
  if live then return {0, raw} end
  fence = tonumber(h.fence)
  if not fence then return {0, raw} end
end
fence = fence + 1
redis.call('HDEL', KEYS[1], 'outcome', 'data', 'fingerprint')
redis.call('HSET', KEYS[1], 'state', 'INPROGRESS', 'owner', ARGV[1],
  'fence', string.format('%d', fence), 'lease_until_ms', ARGV[3], 'expires_at_s', ARGV[4],
  'format', ARGV[6], 'codec', ARGV[7])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'fingerprint', ARGV[5]) end
expire_at(ARGV[3], ARGV[4], ARGV[2])
return {1, fence}
"#;

/// ARGV: owner, fence, now_ms, expires_at_s, outcome, data (raw bytes), has_data ('1'
/// or '0'), codec. Applied iff the attempt holds the record.
const COMPLETE: &str = r#"
if not held(ARGV[1], ARGV[2]) then return {0, raw} end
redis.call('HSET', KEYS[1], 'state', 'COMPLETED', 'outcome', ARGV[5], 'expires_at_s', ARGV[4],
  'codec', ARGV[8])
if ARGV[7] == '1' then
  redis.call('HSET', KEYS[1], 'data', ARGV[6])
else
  redis.call('HDEL', KEYS[1], 'data')
end
if h.steps then
  for name in pairs(h) do
    if string.sub(name, 1, 2) == 's:' then redis.call('HDEL', KEYS[1], name) end
  end
  redis.call('HDEL', KEYS[1], 'steps')
end
expire_at(h.lease_until_ms, ARGV[4], ARGV[3])
return {1}
"#;

/// ARGV: owner, fence, the step's name, the entry packed without its position
/// (`<outcome>:<codec length>:<codec>[=<data>]`). Applied iff the attempt holds the
/// record (complete's condition); the entry of the same name keeps its position, a new
/// one takes the next. Nothing else changes, the key's expiry neither.
const JOURNAL: &str = r#"
if not held(ARGV[1], ARGV[2]) then return {0, raw} end
local field = 's:' .. ARGV[3]
local position
local entry = h[field]
if entry then
  position = string.match(entry, '^(%d+):')
  if not position then return {0, raw} end
else
  local count = 0
  if h.steps then
    count = tonumber(h.steps)
    if not count then return {0, raw} end
  end
  position = string.format('%d', count + 1)
  redis.call('HSET', KEYS[1], 'steps', position)
end
redis.call('HSET', KEYS[1], field, position .. ':' .. ARGV[4])
return {1}
"#;

/// ARGV: owner, fence, now_ms, lease_until_ms, expires_at_s. Applied iff the attempt
/// holds the record and has not released it.
const EXTEND: &str = r#"
if not held(ARGV[1], ARGV[2]) or (tonumber(h.lease_until_ms) or 0) <= 0 then return {0, raw} end
redis.call('HSET', KEYS[1], 'lease_until_ms', ARGV[4], 'expires_at_s', ARGV[5])
expire_at(ARGV[4], ARGV[5], ARGV[3])
return {1}
"#;

/// ARGV: owner, fence. Applied iff the attempt holds the record; the key's expiry stays
/// (the record keeps its fence until it expires).
const RELEASE: &str = r#"
if not held(ARGV[1], ARGV[2]) then return {0, raw} end
redis.call('HSET', KEYS[1], 'lease_until_ms', '0')
return {1}
"#;

/// The scripts, called by their hash (`EVALSHA`). A node that does not have a script
/// (a new or restarted node, a replica just promoted, a slot just moved to another
/// master, `SCRIPT FLUSH`) answers `NOSCRIPT`, and the store sends the same call with
/// the script's text (`EVAL`), routed like the first by the record's key, which runs it
/// and caches it on that node: no error reaches the caller, and no other node is asked.
pub(crate) struct Scripts {
    pub begin: Lua,
    pub complete: Lua,
    pub extend: Lua,
    pub release: Lua,
    pub journal: Lua,
}

/// One script: its text and its SHA-1.
pub(crate) struct Lua {
    pub source: String,
    pub hash: String,
}

/// The shebang of a script that the server refuses up front when memory is full.
const DENY_OOM: &str = "#!lua";
/// The shebang of a script that runs, and writes, when memory is full.
const ALLOW_OOM: &str = "#!lua flags=allow-oom";

/// A script's source: its shebang, the prelude, its body.
fn source(shebang: &str, body: &str) -> String {
    format!("{shebang}\n{PRELUDE}{body}")
}

/// Begin's source, which `build` loads to check that the server takes script flags
/// (Redis 7 or newer).
pub(crate) fn begin_source() -> String {
    source(DENY_OOM, BEGIN)
}

impl Scripts {
    pub fn new() -> Self {
        let script = |shebang: &str, body: &str| {
            let source = source(shebang, body);
            let hash = redis::Script::new(&source).get_hash().to_owned();
            Lua { source, hash }
        };
        Scripts {
            begin: script(DENY_OOM, BEGIN),
            complete: script(ALLOW_OOM, COMPLETE),
            extend: script(ALLOW_OOM, EXTEND),
            release: script(ALLOW_OOM, RELEASE),
            journal: script(DENY_OOM, JOURNAL),
        }
    }
}
