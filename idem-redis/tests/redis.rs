//! What is specific to Redis: a connection killed mid-call, expiry observed on the
//! server, records that cannot be decoded, a key of the wrong type, the size limit, the
//! journal of steps in the record's hash.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{client_id, connection, store, TestStore};
use idem_core::store::{
    ceil_secs, Codec, Outcome, Record, State, StepRecord, StoreErrorKind, Written,
};
use idem_core::testkit::{attempt, begin_at, completion_at};
use idem_core::{Call, Clock, Engine, EngineBuilder, Error, Store, SystemClock};
use idem_redis::RedisStore;
use redis::aio::ConnectionManager;

const NS: &str = "tests::redis";

/// `CLIENT PAUSE` holds every client's writes, server-wide, past the redis crate's
/// 500 ms response timeout under load: the test that pauses runs alone, the others of
/// this binary beside each other.
static SERVER_WIDE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn engine(store: &Arc<TestStore>) -> Engine {
    EngineBuilder::from_arc(store.clone()).build().unwrap()
}

async fn exists(key: &str) -> bool {
    let mut connection = connection().await;
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(&mut connection)
        .await
        .unwrap()
        == 1
}

/// Holds every client's writes at the server for `ms` milliseconds (`CLIENT PAUSE`).
async fn pause_writes(admin: &mut ConnectionManager, ms: u64) {
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(ms)
        .arg("WRITE")
        .query_async::<()>(admin)
        .await
        .unwrap();
}

/// Kills the connection with `id` (`CLIENT KILL ID`).
async fn kill_client(admin: &mut ConnectionManager, id: i64) {
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async::<()>(admin)
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs the Redis server that scripts/test checks"]
async fn a_connection_killed_mid_call_is_a_transient_error_and_the_next_call_works() {
    let _alone = SERVER_WIDE.write().await;
    // The store's connection (clones share it): its id on the server.
    let mut own = connection().await;
    let id = client_id(&mut own).await;
    let store = Arc::new(common::cleaned(
        RedisStore::builder(own)
            .prefix(common::unique_prefix("killed"))
            .build()
            .await
            .unwrap(),
    ));
    let engine = engine(&store);
    // Hold writes at the server, so the begin below is in flight when its connection
    // is killed.
    let mut admin = connection().await;
    pause_writes(&mut admin, 400).await;
    let runs = AtomicUsize::new(0);
    let call = || {
        Call::new(NS, "killed").engine(&engine).run(|_| async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(1)
        })
    };
    let (killed, ()) = tokio::join!(call(), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        kill_client(&mut admin, id).await;
    });
    match &killed {
        Err(error @ Error::Store { .. }) => assert!(error.is_retryable(), "{error}"),
        other => panic!("expected a transient store error, got {other:?}"),
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the body did not run");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The connection manager reconnects: the next calls work.
    let mut answered = None;
    for _ in 0..20 {
        match call().await {
            Ok(value) => {
                answered = Some(value);
                break;
            }
            Err(error) if error.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(error) => panic!("{error}"),
        }
    }
    assert_eq!(answered, Some(1));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// The server deletes a record's key at its expiry; a record in progress outlives a TTL
/// shorter than its lease (the key expires at the later of the two).
#[tokio::test]
#[ignore = "needs the Redis server that scripts/test checks"]
async fn the_server_expires_records_at_the_later_of_lease_and_ttl() {
    let _beside = SERVER_WIDE.read().await;
    let store = store("expiry").await;
    let id = idem_core::testkit::test_id(&format!("{NS}#expiry"));
    let key = store.key(&id);
    let now = SystemClock.now_ms();
    let lease_until_ms = now + 3_000;
    let begin = idem_core::store::Begin {
        lease_until_ms,
        expires_at_s: ceil_secs(lease_until_ms + 1_000),
        ..begin_at(&id, "a", now, None)
    };
    assert_eq!(store.begin(&begin).await.unwrap(), Written::Applied(1));
    let mut connection = connection().await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(
        pttl > 3_000,
        "the key outlives the lease and the ttl: {pttl} ms"
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        exists(&key).await,
        "in progress past its 1 s ttl: still there"
    );

    let now = SystemClock.now_ms();
    let done = idem_core::store::Completion {
        now_ms: now,
        expires_at_s: ceil_secs(now + 1_000),
        outcome: idem_core::store::Outcome::Ok,
        data: Some("1".into()),
        codec: idem_core::store::Codec::Json,
    };
    // The completion's expiry (1 s) is earlier than the lease's end: the key lives to
    // the lease's end.
    store.complete(&attempt(&id, "a", 1), &done).await.unwrap();
    tokio::time::sleep(Duration::from_millis(
        lease_until_ms.saturating_sub(SystemClock.now_ms()) + 1_200,
    ))
    .await;
    assert!(!exists(&key).await, "the server deleted the expired record");
    assert_eq!(store.read(&id).await.unwrap(), None);
}

#[tokio::test]
#[ignore = "needs the Redis server that scripts/test checks"]
async fn a_hash_that_cannot_be_decoded_is_a_decode_error_and_never_a_body_run() {
    let _beside = SERVER_WIDE.read().await;
    let store = Arc::new(store("malformed").await);
    let engine = engine(&store);
    let id = engine.record_id(NS, "malformed").unwrap();
    let mut connection = connection().await;
    redis::cmd("HSET")
        .arg(store.key(&id))
        .arg("state")
        .arg("BOGUS")
        .arg("fence")
        .arg("1")
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
    let runs = AtomicUsize::new(0);
    let result = Call::new(NS, "malformed")
        .engine(&engine)
        .run(|_| async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(())
        })
        .await;
    assert!(matches!(result, Err(Error::Decode { .. })), "{result:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    // A key of another type: a permanent error, body not run.
    let id = engine.record_id(NS, "string").unwrap();
    redis::cmd("SET")
        .arg(store.key(&id))
        .arg("not a hash")
        .query_async::<()>(&mut connection)
        .await
        .unwrap();
    let result = Call::new(NS, "string")
        .engine(&engine)
        .run(|_| async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(())
        })
        .await;
    match result {
        Err(error @ Error::Store { .. }) => {
            assert!(!error.is_retryable(), "{error}");
            // The store's error names Redis, the operation and the prefix, and keeps the
            // redis error as its source.
            let store_error = std::error::Error::source(&error).expect("the store's error");
            let message = store_error.to_string();
            for expected in ["Redis", "begin", store.prefix(), "WRONGTYPE"] {
                assert!(message.contains(expected), "{expected}: {message}");
            }
            assert!(store_error
                .source()
                .and_then(|source| source.downcast_ref::<redis::RedisError>())
                .is_some_and(|redis| redis.code() == Some("WRONGTYPE")));
        }
        other => panic!("expected a permanent store error, got {other:?}"),
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
#[ignore = "needs the Redis server that scripts/test checks"]
async fn a_value_over_the_size_limit_is_completed_as_not_stored() {
    let _beside = SERVER_WIDE.read().await;
    let prefix = common::unique_prefix("size");
    let store = Arc::new(common::cleaned(
        RedisStore::builder(connection().await)
            .prefix(prefix)
            .max_data_bytes(64)
            .build()
            .await
            .unwrap(),
    ));
    let engine = engine(&store);
    let big = "x".repeat(100);
    let call = || Call::new(NS, "big").engine(&engine);
    let first = call()
        .run(|_| async { Ok::<_, Error>(big.clone()) })
        .await
        .unwrap();
    assert_eq!(first, big, "the call that ran gets its value");
    let duplicate = call()
        .run(|_| async { Ok::<_, Error>(String::new()) })
        .await;
    assert!(
        matches!(duplicate, Err(Error::ResultNotStored { .. })),
        "{duplicate:?}"
    );
}

/// A server that lost its script cache (a restart, `SCRIPT FLUSH`) answers `NOSCRIPT`;
/// the script is loaded again and the call goes through, no error reaching the caller.
#[tokio::test]
#[ignore = "needs the Redis server that scripts/test checks"]
async fn a_flushed_script_cache_is_reloaded_without_an_error() {
    let _beside = SERVER_WIDE.read().await;
    let store = Arc::new(store("noscript").await);
    let engine = engine(&store);
    let call = |key: &'static str| {
        Call::new(NS, key)
            .engine(&engine)
            .run(|_| async { Ok::<_, Error>(5) })
    };
    assert_eq!(call("before").await.unwrap(), 5);
    let mut admin = connection().await;
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    assert_eq!(call("after").await.unwrap(), 5);
    assert_eq!(call("after").await.unwrap(), 5, "replayed");
}

/// A completion whose connection is killed while it is in flight is sent again (the
/// connection manager reconnects) and recorded: the caller is told it ran and
/// recorded, and a duplicate replays, instead of `RanNotRecorded` and a second run
/// once the lease lapses. Against a server of the test's own, since it pauses writes.
#[tokio::test]
#[ignore = "starts its own redis-server (scripts/test runs it)"]
async fn a_completion_whose_connection_is_killed_is_sent_again_and_recorded() {
    let server = common::own_server::OwnServer::start(&[]);
    let mut own = server.connection().await;
    let id = client_id(&mut own).await;
    let store = RedisStore::builder(own).build().await.unwrap();
    let engine = EngineBuilder::from_arc(Arc::new(store)).build().unwrap();
    let admin = server.connection().await;
    let runs = AtomicUsize::new(0);
    let call = || Call::new(NS, "killed-at-completion").engine(&engine);
    let first = call()
        .run_reported(|_| async {
            runs.fetch_add(1, Ordering::SeqCst);
            // Writes are held at the server, so the completion is in flight when its
            // connection is killed.
            let mut admin = admin.clone();
            pause_writes(&mut admin, 400).await;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                kill_client(&mut admin, id).await;
            });
            Ok::<_, Error>(1u8)
        })
        .await
        .unwrap();
    assert_eq!(first.source, idem_core::Source::Ran);
    let again = call()
        .run_reported(|_| async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(2u8)
        })
        .await
        .unwrap();
    assert_eq!(
        (again.value, again.source),
        (1, idem_core::Source::Replayed)
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

fn entry(name: &str, outcome: Option<Outcome>, data: Option<&[u8]>, codec: Codec) -> StepRecord {
    StepRecord {
        name: name.to_owned(),
        outcome,
        data: data.map(bytes::Bytes::copy_from_slice),
        codec,
    }
}

/// The record's hash as the server holds it, field by field.
async fn hash(key: &str) -> std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    let mut connection = connection().await;
    redis::cmd("HGETALL")
        .arg(key)
        .query_async(&mut connection)
        .await
        .unwrap()
}

/// The journal is a field per step in the record's one hash (`s:<name>`, the entry's
/// position, outcome and codec in front of its data), raw bytes as they are, any name
/// and an unknown codec kept; an entry replaced keeps its position; the completion
/// removes every step field and the position count in its own script.
#[tokio::test]
#[ignore = "needs the Redis server that scripts/test checks"]
async fn the_journal_is_a_field_per_step_in_the_records_hash_and_the_completion_removes_it() {
    let _beside = SERVER_WIDE.read().await;
    let store = store("journal-layout").await;
    let id = &idem_core::testkit::test_id("tests::redis#journal-layout");
    let key = store.key(id);
    let now = SystemClock.now_ms();
    assert_eq!(
        store.begin(&begin_at(id, "a", now, None)).await.unwrap(),
        Written::Applied(1)
    );
    let a = attempt(id, "a", 1);
    let raw = entry(
        "render ✓:=s:",
        Some(Outcome::Ok),
        Some(&[0xff, 0x00, 0xfe, b'"', b'=']),
        Codec::Bytes,
    );
    let started = entry("charge", None, None, Codec::Json);
    let unknown = entry(
        "",
        Some(Outcome::Ok),
        Some(b""),
        Codec::from_stored("cbor:x"),
    );
    let declined = entry(
        "mail",
        Some(Outcome::Err),
        Some(b"{\"declined\":true}"),
        Codec::Json,
    );
    for step in [&raw, &started, &unknown, &declined] {
        assert_eq!(store.journal(&a, step).await.unwrap(), Written::Applied(()));
    }
    let fields = hash(&key).await;
    let field = |name: &str| fields.get(format!("s:{name}").as_bytes()).cloned();
    assert_eq!(
        field("render ✓:=s:").unwrap(),
        b"1:ok:5:bytes=\xff\x00\xfe\"=".to_vec(),
        "raw bytes as they are"
    );
    assert_eq!(field("charge").unwrap(), b"2:started:4:json".to_vec());
    assert_eq!(field("").unwrap(), b"3:ok:6:cbor:x=".to_vec());
    assert_eq!(fields.get(&b"steps"[..]).unwrap(), b"4");
    let record = store.read(id).await.unwrap().unwrap();
    assert_eq!(
        record.steps,
        vec![raw.clone(), started, unknown.clone(), declined.clone()]
    );

    // Replaced in place: the entry keeps its position.
    let charged = entry(
        "charge",
        Some(Outcome::Ok),
        Some(b"{\"id\":1}"),
        Codec::Json,
    );
    assert_eq!(
        store.journal(&a, &charged).await.unwrap(),
        Written::Applied(())
    );
    let record = store.read(id).await.unwrap().unwrap();
    assert_eq!(record.steps, vec![raw, charged, unknown, declined]);
    assert_eq!(
        hash(&key).await.get(&b"steps"[..]).unwrap(),
        b"4",
        "a replaced entry takes no new position"
    );

    assert_eq!(
        store
            .complete(&a, &completion_at(now + 1, Outcome::Ok, Some("1")))
            .await
            .unwrap(),
        Written::Applied(())
    );
    let left: Vec<_> = hash(&key).await.into_keys().collect();
    assert!(
        left.iter()
            .all(|name| !name.starts_with(b"s:") && name != b"steps"),
        "{:?}",
        left.iter()
            .map(|n| String::from_utf8_lossy(n))
            .collect::<Vec<_>>()
    );
    assert_eq!(store.read(id).await.unwrap().unwrap().steps, Vec::new());
}

/// A record written before steps existed (no step field, no `steps`) reads with an empty
/// journal, in progress or completed, and its holder journals into it.
#[tokio::test]
#[ignore = "needs the Redis server that scripts/test checks"]
async fn a_record_written_before_steps_reads_as_an_empty_journal_and_takes_steps() {
    let _beside = SERVER_WIDE.read().await;
    let store = store("journal-upgrade").await;
    let now = SystemClock.now_ms();
    let lease = (now + 60_000).to_string();
    let expires = ((now + 120_000) / 1000).to_string();
    let mut connection = connection().await;
    for (id, state, outcome) in [
        ("tests::redis#old-in-progress", "INPROGRESS", None),
        ("tests::redis#old-completed", "COMPLETED", Some("ok")),
    ] {
        let id = &idem_core::testkit::test_id(id);
        let mut hset = redis::cmd("HSET");
        hset.arg(store.key(id))
            .arg("state")
            .arg(state)
            .arg("owner")
            .arg(idem_core::testkit::owner("a").to_string())
            .arg("fence")
            .arg("3")
            .arg("lease_until_ms")
            .arg(&lease)
            .arg("expires_at_s")
            .arg(&expires)
            .arg("format")
            .arg("1")
            .arg("codec")
            .arg("json");
        if let Some(outcome) = outcome {
            hset.arg("outcome").arg(outcome).arg("data").arg("7");
        }
        hset.query_async::<()>(&mut connection).await.unwrap();
        redis::cmd("PEXPIRE")
            .arg(store.key(id))
            .arg(120_000)
            .query_async::<()>(&mut connection)
            .await
            .unwrap();
        let record = store.read(id).await.unwrap().unwrap();
        assert_eq!(
            (record.fence, record.steps.to_vec()),
            (3, Vec::new()),
            "{id}"
        );
    }
    let id = &idem_core::testkit::test_id("tests::redis#old-in-progress");
    let step = entry("s1", Some(Outcome::Ok), Some(b"1"), Codec::Json);
    assert_eq!(
        store.journal(&attempt(id, "a", 3), &step).await.unwrap(),
        Written::Applied(())
    );
    let record = store.read(id).await.unwrap().unwrap();
    assert_eq!(record.steps, vec![step]);
    assert_eq!(record.state, State::InProgress);
}

/// A refused journal write answers with the record as it is, its journal included
/// (raw bytes as written), from the same round trip; it writes nothing.
#[tokio::test]
#[ignore = "needs the Redis server that scripts/test checks"]
async fn a_refused_journal_write_returns_the_record_with_its_steps() {
    let _beside = SERVER_WIDE.read().await;
    let store = store("journal-refused").await;
    let id = &idem_core::testkit::test_id("tests::redis#journal-refused");
    let now = SystemClock.now_ms();
    store.begin(&begin_at(id, "a", now, None)).await.unwrap();
    let a = attempt(id, "a", 1);
    let s1 = entry("s1", Some(Outcome::Ok), Some(&[0x80, 0xff]), Codec::Bytes);
    assert_eq!(store.journal(&a, &s1).await.unwrap(), Written::Applied(()));
    assert_eq!(store.release(&a).await.unwrap(), Written::Applied(()));
    assert_eq!(
        store
            .begin(&begin_at(id, "b", now + 1, None))
            .await
            .unwrap(),
        Written::Applied(2)
    );
    let late = entry("s2", Some(Outcome::Ok), Some(b"2"), Codec::Json);
    let Written::Refused(Some(current)) = store.journal(&a, &late).await.unwrap() else {
        panic!("a stale journal write is refused with the record");
    };
    let current: &Record = &current;
    assert_eq!(
        (current.owner, current.fence),
        (idem_core::testkit::owner("b"), 2)
    );
    assert_eq!(current.steps, vec![s1.clone()]);
    assert_eq!(store.read(id).await.unwrap().unwrap().steps, vec![s1]);
}

/// A step's data past the store's limit is a permanent error that says the journal
/// entry is too large, and nothing is written; at the limit it is journaled.
#[tokio::test]
#[ignore = "needs the Redis server that scripts/test checks"]
async fn a_journal_entry_over_the_size_limit_is_a_permanent_error() {
    let _beside = SERVER_WIDE.read().await;
    let prefix = common::unique_prefix("journal-size");
    let store = common::cleaned(
        RedisStore::builder(connection().await)
            .prefix(prefix)
            .max_data_bytes(64)
            .build()
            .await
            .unwrap(),
    );
    let id = &idem_core::testkit::test_id("tests::redis#journal-size");
    store
        .begin(&begin_at(id, "a", SystemClock.now_ms(), None))
        .await
        .unwrap();
    let a = attempt(id, "a", 1);
    let big = entry("big", Some(Outcome::Ok), Some(&[7; 65]), Codec::Bytes);
    let error = store.journal(&a, &big).await.expect_err("too large");
    assert_eq!(error.kind(), StoreErrorKind::Permanent);
    let message = error.to_string();
    for expected in ["too large", "big", "65", "64", "Redis journal"] {
        assert!(message.contains(expected), "{expected}: {message}");
    }
    assert_eq!(store.read(id).await.unwrap().unwrap().steps, Vec::new());
    let fits = entry("fits", Some(Outcome::Ok), Some(&[7; 64]), Codec::Bytes);
    assert_eq!(
        store.journal(&a, &fits).await.unwrap(),
        Written::Applied(())
    );
}

/// A step field that cannot be read is a decode error (Malformed), on a read and on a
/// journal write's refusal alike; the script never overwrites it.
#[tokio::test]
#[ignore = "needs the Redis server that scripts/test checks"]
async fn a_step_field_that_cannot_be_read_is_a_decode_error() {
    let _beside = SERVER_WIDE.read().await;
    let store = store("journal-malformed").await;
    let id = &idem_core::testkit::test_id("tests::redis#journal-malformed");
    store
        .begin(&begin_at(id, "a", SystemClock.now_ms(), None))
        .await
        .unwrap();
    let mut connection = connection().await;
    for bad in [
        &b"1:ok:9:json=1"[..],
        b"1:bogus:4:json",
        b"1:ok:4:json1",
        b"x:ok:4:json=1",
    ] {
        redis::cmd("HSET")
            .arg(store.key(id))
            .arg("s:bad")
            .arg(bad)
            .query_async::<()>(&mut connection)
            .await
            .unwrap();
        let error = store.read(id).await.expect_err("malformed");
        assert_eq!(error.kind(), StoreErrorKind::Malformed, "{error}");
        assert!(error.to_string().contains("s:bad"), "{error}");
    }
    // The last one has no position: the script refuses it rather than overwrite.
    let step = entry("bad", Some(Outcome::Ok), Some(b"1"), Codec::Json);
    let error = store
        .journal(&attempt(id, "a", 1), &step)
        .await
        .expect_err("refused with a record that cannot be read");
    assert_eq!(error.kind(), StoreErrorKind::Malformed, "{error}");
}

#[derive(Debug, PartialEq)]
enum StepsError {
    Later,
    Idem(String),
}

impl From<Error> for StepsError {
    fn from(error: Error) -> Self {
        StepsError::Idem(error.to_string())
    }
}

/// Steps through the engine on Redis: a body that fails after its first step (not
/// recorded: the key is released, the journal kept) is retried; the retry replays the
/// first step's value (raw bytes and JSON) without running it and runs the second; the
/// completion empties the journal, and a duplicate replays the value.
#[tokio::test]
#[ignore = "needs the Redis server that scripts/test checks"]
async fn a_retry_through_the_engine_replays_the_journaled_steps_and_runs_the_rest() {
    let _beside = SERVER_WIDE.read().await;
    let store = Arc::new(store("journal-engine").await);
    let engine = engine(&store);
    let runs = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let runs = &runs;
    let body = |fail: bool| {
        move |ctx: idem_core::Context| async move {
            let charge: String = ctx
                .step("charge", async {
                    runs[0].fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Error>("ch_1".to_owned())
                })
                .await?;
            if fail {
                return Err(StepsError::Later);
            }
            let sent: u64 = ctx
                .step("mail", async {
                    runs[1].fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Error>(7)
                })
                .await?;
            Ok(format!("{charge}/{sent}"))
        }
    };
    let call = || Call::new(NS, "steps").engine(&engine);
    assert_eq!(call().run(body(true)).await, Err(StepsError::Later));
    let id = engine.record_id(NS, "steps").unwrap();
    let record = store.read(&id).await.unwrap().unwrap();
    assert_eq!(
        record
            .steps
            .iter()
            .map(|step| step.name.as_str())
            .collect::<Vec<_>>(),
        ["charge"],
        "the released record keeps its journal"
    );
    assert_eq!(call().run(body(false)).await.unwrap(), "ch_1/7");
    assert_eq!(
        runs.each_ref().map(|n| n.load(Ordering::SeqCst)),
        [1, 1],
        "the journaled step did not run again"
    );
    let record = store.read(&id).await.unwrap().unwrap();
    assert_eq!((record.state, record.steps.len()), (State::Completed, 0));
    assert_eq!(call().run(body(false)).await.unwrap(), "ch_1/7");
    assert_eq!(runs.each_ref().map(|n| n.load(Ordering::SeqCst)), [1, 1]);
}
