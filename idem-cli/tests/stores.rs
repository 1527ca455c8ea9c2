//! The CLI against records the engine wrote, in real PostgreSQL and Redis servers and a
//! local DynamoDB (dynalite or moto): through the library's functions, and through the
//! `idem` binary itself.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use idem_cli::ops::{self, Filter};
use idem_cli::{key, ErrorKind, Location, Target};
use idem_core::store::State;
use idem_core::{Call, Engine, Error, Store};
use idem_postgres::PgStore;
use idem_redis::RedisStore;

mod common;

const NS: &str = "cli::charge";

/// A well-formed record id of no record, for the commands that fail before they read it.
const ANY_ID: &str = "a#0000000000000000000000000000000000000000000000000000000000000000";

/// A record id the CLI printed or was given, read back.
fn rid(id: &str) -> idem_core::RecordId {
    id.parse().expect("a record id")
}

fn postgres_url() -> String {
    std::env::var("IDEM_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn redis_url() -> String {
    std::env::var("IDEM_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn unique(label: &str) -> String {
    format!("{label}_{}", uuid::Uuid::new_v4().simple())
}

/// The `idem` binary with `args`, its output.
fn idem(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_idem"))
        .args(args)
        .env_remove("IDEM_STORE")
        .env_remove("IDEM_SECRET")
        .env_remove("IDEM_SECRET_FILE")
        // Local DynamoDB servers take any credentials; the SDK's chain finds these first.
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A call whose body counts its runs and returns its fence.
async fn charge(engine: &Engine, key: &str, runs: &AtomicU32) -> u64 {
    Call::new(NS, key)
        .engine(engine)
        .run(|ctx| async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(ctx.fence())
        })
        .await
        .unwrap()
}

/// What every store must show, on records the engine wrote: `store_args` are the
/// binary's options naming the same store.
async fn scenario(target: &Target, engine: &Engine, store_args: &[&str]) {
    // A completed record: inspect shows it, forget frees it keeping its fence.
    let key = unique("order");
    let key_json = serde_json::to_string(&key).unwrap();
    let runs = AtomicU32::new(0);
    assert_eq!(charge(engine, &key, &runs).await, 1);
    let id = key::record_id(NS, &key_json, None).unwrap().to_string();
    assert_eq!(id, engine.record_id(NS, &key).unwrap().to_string());
    let record = ops::inspect(target, &rid(&id)).await.unwrap();
    assert_eq!((record.state, record.fence), (State::Completed, 1));
    assert!(record.is_live(ops::now_ms()));
    assert_eq!(charge(engine, &key, &runs).await, 1, "replayed");
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    let mut args = store_args.to_vec();
    args.extend(["--json", "inspect", NS, &key_json]);
    let output = idem(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["state"], "COMPLETED");
    assert_eq!(shown["fence"], 1);
    assert_eq!(shown["outcome"], "ok");
    assert_eq!(shown["outcome_bytes"], 1, "the value `1`");
    assert_eq!(shown["live"], true);
    assert_eq!(
        shown["steps"],
        serde_json::json!([]),
        "a completion empties the journal"
    );

    let forgotten = ops::forget(target, &rid(&id), false, ops::now_ms())
        .await
        .unwrap();
    assert_eq!(forgotten.action, "taken_over_and_released");
    assert_eq!(forgotten.fence, 2);
    let record = ops::inspect(target, &rid(&id)).await.unwrap();
    assert_eq!(record.state, State::InProgress);
    assert_eq!((record.fence, record.lease_until_ms), (2, 0));
    assert_eq!((&record.outcome, &record.data), (&None, &None));
    assert!(!record.is_live(ops::now_ms()));
    assert_eq!(
        charge(engine, &key, &runs).await,
        3,
        "the body runs again, fenced above"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    // The binary forgets it again (by id); the next call runs with a higher fence.
    let mut args = store_args.to_vec();
    args.extend(["forget", "--id", &id]);
    let output = idem(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("3 -> 4"));
    assert_eq!(charge(engine, &key, &runs).await, 5);
    assert_eq!(runs.load(Ordering::SeqCst), 3);

    // A record in progress under a live lease: refused without --force.
    let key2 = unique("stuck");
    let key2_json = serde_json::to_string(&key2).unwrap();
    let (started, running) = tokio::sync::oneshot::channel();
    let holder = {
        let engine = engine.clone();
        let key2 = key2.clone();
        tokio::spawn(async move {
            Call::new(NS, &key2)
                .engine(&engine)
                .lease(Duration::from_secs(60))
                .run(|ctx| async move {
                    started.send(ctx.fence()).unwrap();
                    std::future::pending::<()>().await;
                    Ok::<_, Error>(0u64)
                })
                .await
        })
    };
    let fence = running.await.unwrap();
    let id2 = key::record_id(NS, &key2_json, None).unwrap().to_string();
    let record = ops::inspect(target, &rid(&id2)).await.unwrap();
    assert_eq!((record.state, record.fence), (State::InProgress, fence));
    assert!(record.lease_is_live(ops::now_ms()));
    let refused = ops::forget(target, &rid(&id2), false, ops::now_ms())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Refused);
    assert!(
        refused.message().contains("--force"),
        "{}",
        refused.message()
    );
    let mut args = store_args.to_vec();
    args.extend(["forget", NS, &key2_json]);
    let output = idem(&args);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("live lease"));
    assert_eq!(
        ops::inspect(target, &rid(&id2)).await.unwrap(),
        record,
        "untouched"
    );

    // --force releases it in its holder's name, keeping the fence.
    let mut args = store_args.to_vec();
    args.extend(["forget", "--force", NS, &key2_json]);
    let output = idem(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let released = ops::inspect(target, &rid(&id2)).await.unwrap();
    assert_eq!(
        (released.state, released.fence, released.lease_until_ms),
        (State::InProgress, fence, 0)
    );
    holder.abort(); // the holder crashes
    let runs2 = AtomicU32::new(0);
    assert_eq!(charge(engine, &key2, &runs2).await, fence + 1);
    assert_eq!(runs2.load(Ordering::SeqCst), 1);

    // A body that failed after one step and inside an at-most-once one: released, its
    // journal kept; inspect shows the journal, forget keeps it.
    let key3 = unique("steps");
    let key3_json = serde_json::to_string(&key3).unwrap();
    let failed = Call::new(NS, &key3)
        .engine(engine)
        .run(|ctx| async move {
            ctx.step("charge", async { Ok::<_, Error>("ch_1".to_owned()) })
                .await?;
            ctx.step("mail", async {
                Err::<u32, _>(Error::Config("the mail server refused".into()))
            })
            .at_most_once()
            .await
        })
        .await;
    assert!(matches!(failed, Err(Error::Config(_))), "{failed:?}");
    let id3 = key::record_id(NS, &key3_json, None).unwrap().to_string();
    let mut args = store_args.to_vec();
    args.extend(["--json", "inspect", "--id", &id3]);
    let output = idem(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(shown["state"], "INPROGRESS");
    assert_eq!(
        shown["steps"],
        serde_json::json!([
            {"name": "charge", "state": "ok", "bytes": 6},
            {"name": "mail", "state": "started", "bytes": null},
        ]),
        "the journal, `\"ch_1\"` and the at-most-once step that never finished"
    );
    let mut args = store_args.to_vec();
    args.extend(["inspect", "--id", &id3]);
    let output = idem(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("steps         charge: ok (6 bytes)\n              mail: started\n"),
        "{table}"
    );
    let mut args = store_args.to_vec();
    args.extend(["forget", "--id", &id3]);
    let output = idem(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let forgotten = ops::inspect(target, &rid(&id3)).await.unwrap();
    assert_eq!(
        forgotten
            .steps
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["charge", "mail"],
        "forget keeps the journal of a record in progress"
    );

    // A value recorded as bytes (codec `bytes`): its size is listed too.
    let blob = unique("blob");
    Call::new(NS, &blob)
        .engine(engine)
        .run(|_| async { Ok::<_, Error>(bytes::Bytes::from_static(b"\x00\xffpdf")) })
        .await
        .unwrap();
    let blob_id = key::record_id(NS, &serde_json::to_string(&blob).unwrap(), None)
        .unwrap()
        .to_string();

    // Listing finds them by state.
    let all = ops::list(
        target,
        Filter::default(),
        ops::now_ms(),
        &indicatif::ProgressBar::hidden(),
    )
    .await
    .unwrap();
    assert!(all
        .iter()
        .any(|v| v.id == id && v.state == "COMPLETED" && v.fence == 5));
    assert!(
        all.iter()
            .any(|v| v.id == blob_id && v.outcome_bytes == Some(5)),
        "a bytes record lists its size: {all:?}"
    );
    let in_progress = Filter {
        state: Some(State::InProgress),
        older_than: None,
    };
    let found = ops::list(
        target,
        in_progress,
        ops::now_ms(),
        &indicatif::ProgressBar::hidden(),
    )
    .await
    .unwrap();
    assert!(found.iter().all(|v| v.state == "INPROGRESS"));
    // The key forced free above was taken over and completed: not in progress; and an
    // in-progress record released long ago passes --older-than.
    assert!(!found.iter().any(|v| v.id == id2));
    let crashed = unique("crashed");
    let crashed_id = key::record_id(NS, &serde_json::to_string(&crashed).unwrap(), None)
        .unwrap()
        .to_string();
    let begin = idem_core::store::Begin {
        id: rid(&crashed_id),
        owner: idem_core::store::Owner::from_u128(0xc4a5),
        now_ms: ops::now_ms() - 3_600_000,
        lease_until_ms: ops::now_ms() - 3_000_000,
        expires_at_s: ops::now_ms() / 1000 + 600,
        fingerprint: None,
    };
    target.store().begin(&begin).await.unwrap();
    let old = Filter {
        state: Some(State::InProgress),
        older_than: Some(Duration::from_secs(600)),
    };
    let found = ops::list(
        target,
        old,
        ops::now_ms(),
        &indicatif::ProgressBar::hidden(),
    )
    .await
    .unwrap();
    assert!(
        found.iter().any(|v| v.id == crashed_id && !v.live),
        "{found:?}"
    );
    let young = Filter {
        older_than: Some(Duration::from_secs(3600)),
        ..old
    };
    let found = ops::list(
        target,
        young,
        ops::now_ms(),
        &indicatif::ProgressBar::hidden(),
    )
    .await
    .unwrap();
    assert!(!found.iter().any(|v| v.id == crashed_id));
    assert!(!found.iter().any(|v| v.id == id));
    let mut args = store_args.to_vec();
    args.extend(["--json", "list", "--state", "completed"]);
    let output = idem(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert!(listed
        .iter()
        .any(|v| v["id"] == id.as_str() && v["live"] == true && v["fence"] == 5));
    assert!(listed.iter().all(|v| v["state"] == "COMPLETED"));

    // A key that never ran: exit code 4, and a float key is refused before connecting.
    let mut args = store_args.to_vec();
    args.extend(["inspect", NS, "\"never-ran\""]);
    let output = idem(&args);
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    let mut args = store_args.to_vec();
    args.extend(["inspect", NS, "1.5"]);
    let output = idem(&args);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("floats"));
}

async fn postgres_store(table: &str) -> PgStore {
    let pool = sqlx::PgPool::connect(&postgres_url()).await.unwrap();
    let store = PgStore::builder(pool).table(table).build().unwrap();
    store.migrate().await.unwrap();
    store
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL (IDEM_TEST_POSTGRES): run through scripts/test"]
async fn postgres() {
    let table = unique("idem_cli");
    let store = postgres_store(&table).await;
    let engine = Engine::new(store.clone());
    let target = Target::postgres(store.clone()).await.unwrap();
    let url = postgres_url();
    scenario(&target, &engine, &["--store", &url, "--table", &table]).await;

    // purge deletes what expired, and nothing live.
    let output = idem(&["--store", &url, "--table", &table, "purge", "--expired"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("deleted 0"));

    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {}", store.table())))
        .execute(store.pool())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL (IDEM_TEST_POSTGRES): run through scripts/test"]
async fn postgres_purges_expired_records() {
    let table = unique("idem_cli");
    let store = postgres_store(&table).await;
    // A record that expired long ago, as the engine writes one.
    let begin = idem_core::store::Begin {
        id: idem_core::RecordId::new("cli::old", [1; 32]),
        owner: idem_core::store::Owner::from_u128(0x0),
        now_ms: 1_000,
        lease_until_ms: 2_000,
        expires_at_s: 3,
        fingerprint: None,
    };
    assert!(matches!(
        store.begin(&begin).await.unwrap(),
        idem_core::store::Written::Applied(1)
    ));
    let engine = Engine::new(store.clone());
    let runs = AtomicU32::new(0);
    charge(&engine, "live", &runs).await;
    let url = postgres_url();
    let output = idem(&["--store", &url, "--table", &table, "purge", "--expired"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("deleted 1"));
    assert_eq!(
        store
            .read(&idem_core::RecordId::new("cli::old", [1; 32]))
            .await
            .unwrap(),
        None
    );
    let live = engine.record_id(NS, "live").unwrap();
    assert!(store.read(&live).await.unwrap().is_some());
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {}", store.table())))
        .execute(store.pool())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL (IDEM_TEST_POSTGRES): run through scripts/test"]
async fn postgres_errors_name_the_table_and_the_server() {
    let url = postgres_url();
    let location = Location {
        store: url.clone(),
        table: Some("idem_no_such_table".into()),
        ..Location::default()
    };
    let error = Target::connect(&location).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Store);
    assert!(error.message().contains("no table"), "{}", error.message());
    assert!(error.message().contains("idem_no_such_table"));
    let output = idem(&[
        "--store",
        &url,
        "--table",
        "idem_no_such_table",
        "inspect",
        "--id",
        ANY_ID,
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no table"), "{}", stderr(&output));

    let output = idem(&[
        "--store",
        "postgres://postgres@127.0.0.1:1/test",
        "inspect",
        "--id",
        ANY_ID,
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("cannot connect to PostgreSQL"),
        "{}",
        stderr(&output)
    );
    let output = idem(&[
        "--store",
        "postgres://u:hunter2@127.0.0.1:1/test",
        "inspect",
        "--id",
        ANY_ID,
    ]);
    assert!(!stderr(&output).contains("hunter2"), "{}", stderr(&output));
}

/// A role without privileges on the table (the URL's `options` switch the session to
/// it): every command fails, naming the table and PostgreSQL's refusal.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL (IDEM_TEST_POSTGRES): run through scripts/test"]
async fn postgres_missing_permission_is_named() {
    let url = postgres_url();
    let table = unique("idem_cli_perm");
    let store = postgres_store(&table).await;
    let role = unique("idem_cli_reader");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE ROLE {role} NOLOGIN")))
        .execute(store.pool())
        .await
        .unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let as_role = format!("{url}{separator}options=-c%20role%3D{role}");
    let inspect = idem(&[
        "--store", &as_role, "--table", &table, "inspect", "--id", ANY_ID,
    ]);
    let list = idem(&["--store", &as_role, "--table", &table, "list"]);
    // SELECT granted, UPDATE not: reading works, forgetting does not.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "GRANT SELECT ON {table} TO {role}"
    )))
    .execute(store.pool())
    .await
    .unwrap();
    let engine = Engine::new(store.clone());
    let runs = AtomicU32::new(0);
    charge(&engine, "perm-order", &runs).await;
    let listed = idem(&["--store", &as_role, "--table", &table, "list"]);
    let forget = idem(&[
        "--store",
        &as_role,
        "--table",
        &table,
        "forget",
        NS,
        "\"perm-order\"",
    ]);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {table}")))
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE {role}")))
        .execute(store.pool())
        .await
        .unwrap();

    for output in [&inspect, &list, &forget] {
        assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
        assert!(stderr(output).contains(&table), "{}", stderr(output));
        assert!(
            stderr(output).contains("permission denied"),
            "{}",
            stderr(output)
        );
    }
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("COMPLETED"));
}

/// A Redis user whose ACL lacks a command the CLI needs (on a server of the test's own):
/// the command and the refusal are named.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "starts its own Redis (scripts/test runs it)"]
async fn redis_missing_permission_is_named() {
    let server = common::own_server::OwnServer::start(&[]);
    let mut admin = server.connection().await;
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER", "operator", "on", ">pw", "~*", "+@all", "-scan", "-evalsha", "-eval",
        ])
        .query_async(&mut admin)
        .await
        .unwrap();
    let engine = Engine::new(RedisStore::builder(admin).build_unchecked());
    let runs = AtomicU32::new(0);
    charge(&engine, "perm-order", &runs).await;
    let url = format!("redis://operator:pw@127.0.0.1:{}", server.port());

    let inspect = idem(&["--store", &url, "inspect", NS, "\"perm-order\""]);
    assert!(
        inspect.status.success(),
        "reading is allowed: {}",
        stderr(&inspect)
    );
    let list = idem(&["--store", &url, "list"]);
    assert_eq!(list.status.code(), Some(1), "{}", stderr(&list));
    assert!(stderr(&list).contains("SCAN"), "{}", stderr(&list));
    assert!(
        stderr(&list).contains("no permissions"),
        "{}",
        stderr(&list)
    );
    let forget = idem(&["--store", &url, "forget", NS, "\"perm-order\""]);
    assert_eq!(forget.status.code(), Some(1), "{}", stderr(&forget));
    assert!(
        stderr(&forget).contains("no permissions"),
        "{}",
        stderr(&forget)
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Redis (IDEM_TEST_REDIS): run through scripts/test"]
async fn redis() {
    let url = redis_url();
    let prefix = format!("{}:", unique("idem-cli-test"));
    let client = redis::Client::open(url.as_str()).unwrap();
    let connection = redis::aio::ConnectionManager::new(client).await.unwrap();
    let store = RedisStore::builder(connection.clone())
        .prefix(&prefix)
        .build_unchecked();
    let engine = Engine::new(store);
    let target = Target::redis(connection.clone(), prefix.clone())
        .await
        .unwrap();
    scenario(&target, &engine, &["--store", &url, "--prefix", &prefix]).await;

    // An engine with a secret: the binary finds its records only with the same secret,
    // from the environment or a file.
    let secret_engine = Engine::builder(
        RedisStore::builder(connection.clone())
            .prefix(&prefix)
            .build_unchecked(),
    )
    .secret(b"k3y".to_vec())
    .build()
    .unwrap();
    let runs = AtomicU32::new(0);
    charge(&secret_engine, "secret-order", &runs).await;
    let find = |secret: Option<&str>, file: Option<&std::path::Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_idem"));
        command.args(["--store", &url, "--prefix", &prefix]);
        command
            .env_remove("IDEM_SECRET")
            .env_remove("IDEM_SECRET_FILE");
        if let Some(secret) = secret {
            command.env("IDEM_SECRET", secret);
        }
        if let Some(file) = file {
            command.arg("--secret-file").arg(file);
        }
        command.args(["inspect", NS, "\"secret-order\""]);
        command.output().unwrap().status.code()
    };
    assert_eq!(
        find(None, None),
        Some(4),
        "without the secret, another digest"
    );
    assert_eq!(find(Some("other"), None), Some(4));
    assert_eq!(find(Some("k3y"), None), Some(0));
    let file = std::env::temp_dir().join(unique("idem-cli-secret"));
    std::fs::write(&file, "k3y\n").unwrap();
    assert_eq!(find(None, Some(&file)), Some(0));
    std::fs::remove_file(&file).unwrap();

    let output = idem(&["--store", &url, "--prefix", &prefix, "purge", "--expired"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("nothing to purge"));

    // Clean up this test's keys.
    let mut connection = connection;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    for key in keys {
        let _: () = redis::cmd("DEL")
            .arg(key)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "starts its own Redis Cluster (scripts/test runs it)"]
async fn redis_cluster() {
    let cluster = common::own_cluster::OwnCluster::start();
    let prefix = format!("{}:", unique("idem-cli-cluster"));
    let connection = cluster.connection().await;
    let engine = Engine::new(
        RedisStore::builder(connection.clone())
            .prefix(&prefix)
            .build_unchecked(),
    );
    let target = Target::redis(connection, prefix.clone()).await.unwrap();
    assert!(target.describe().contains("Redis Cluster"));
    let node = format!("redis://127.0.0.1:{}", cluster.ports()[0]);
    let args = ["--store", node.as_str(), "--cluster", "--prefix", &prefix];
    scenario(&target, &engine, &args).await;

    // Records spread over the three masters' slots; listing scans every master.
    let keys: Vec<String> = (0..24).map(|i| format!("spread-{i}")).collect();
    let runs = AtomicU32::new(0);
    for key in &keys {
        charge(&engine, key, &runs).await;
    }
    let owners = common::own_cluster::slot_owners(&cluster.masters());
    let masters_holding: std::collections::HashSet<u16> = keys
        .iter()
        .map(|key| {
            let id = engine.record_id(NS, key).unwrap();
            owners[&cluster.slot_of(&format!("{prefix}{id}"))]
        })
        .collect();
    assert_eq!(masters_holding.len(), 3, "the keys are on every master");
    let mut list = args.to_vec();
    list.extend(["--json", "list", "--state", "completed"]);
    let output = idem(&list);
    assert!(output.status.success(), "{}", stderr(&output));
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    for key in &keys {
        let id = engine.record_id(NS, key).unwrap();
        assert!(
            listed.iter().any(|v| v["id"] == id.to_string().as_str()),
            "{key} ({id}) is listed"
        );
    }

    // A node named without --cluster would show one master's keys: refused.
    let output = idem(&["--store", &node, "--prefix", &prefix, "list"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("add --cluster"),
        "{}",
        stderr(&output)
    );
}

/// An `--id` that is not a record id is a usage error that says the form, before any
/// connection is made (the store here does not answer).
#[test]
fn a_malformed_id_is_a_usage_error() {
    for bad in ["a#b", "no-hash", &format!("#{}", &ANY_ID[2..])] {
        let output = idem(&["--store", "redis://127.0.0.1:1", "inspect", "--id", bad]);
        assert_eq!(output.status.code(), Some(2), "{bad}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("is not a record id")
                && stderr(&output).contains("64 lowercase hex digits"),
            "{bad}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn redis_unreachable_is_named() {
    let output = idem(&["--store", "redis://127.0.0.1:1", "inspect", "--id", ANY_ID]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("cannot connect to Redis"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn secrets_digest_keys_as_the_engine_does() {
    let secret = b"k3y".to_vec();
    let engine = Engine::builder(idem_core::MemoryStore::new())
        .secret(secret.clone())
        .build()
        .unwrap();
    let expected = engine.record_id(NS, "abc").unwrap();
    assert_eq!(
        key::record_id(NS, "\"abc\"", Some(&secret)).unwrap(),
        expected
    );
    // Through the binary: the id is computed before connecting, so a missing record
    // on an unreachable server fails on the connection, not the key; a float fails
    // first, whatever the secret.
    let output = Command::new(env!("CARGO_BIN_EXE_idem"))
        .args(["--store", "redis://127.0.0.1:1", "inspect", NS, "[1.5]"])
        .env("IDEM_SECRET", "k3y")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let dir = std::env::temp_dir().join(unique("idem-cli-secret"));
    std::fs::write(&dir, "k3y\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_idem"))
        .args(["--store", "redis://127.0.0.1:1", "--secret-file"])
        .arg(&dir)
        .args(["inspect", NS, "\"abc\""])
        .env("IDEM_SECRET", "k3y")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "both sources: {}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("give one"));
    std::fs::remove_file(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs dynalite and moto (IDEM_TEST_DYNALITE, IDEM_TEST_MOTO): run through scripts/test"]
async fn dynamo() {
    for variable in ["IDEM_TEST_DYNALITE", "IDEM_TEST_MOTO"] {
        let Ok(endpoint) = std::env::var(variable) else {
            panic!("{variable} is not set: run through scripts/test");
        };
        dynamo_on(&endpoint).await;
    }
}

async fn dynamo_on(endpoint: &str) {
    let table = unique("idem-cli");
    let client = idem_dynamo::local_client(endpoint);
    let builder = idem_dynamo::DynamoStore::builder(client.clone(), &table);
    builder.create_table().await.unwrap();
    // dynalite has no TTL.
    let store = builder.check_ttl(false).build().await.unwrap();
    let engine = Engine::new(store);
    let target = Target::dynamo(idem_dynamo::DynamoStore::builder(client.clone(), &table))
        .await
        .unwrap();
    // The binary takes the SDK's credentials chain: `idem` gives it the environment's.
    let store_arg = format!("dynamodb://{table}");
    scenario(
        &target,
        &engine,
        &["--store", &store_arg, "--endpoint-url", endpoint],
    )
    .await;

    // A wrong table is named.
    let missing = unique("idem-cli-missing");
    let output = idem(&[
        "--store",
        &missing,
        "--endpoint-url",
        endpoint,
        "inspect",
        "--id",
        ANY_ID,
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains(&missing), "{}", stderr(&output));
    // Listing warns about the Scan's cost.
    let output = idem(&["--store", &store_arg, "--endpoint-url", endpoint, "list"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("Scan of the whole table"));
    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();

    dynamo_renamed_on(endpoint).await;
}

/// A table whose store renames attributes, prefixes its ids and keeps them in
/// Powertools' sort-key layout: the CLI finds its records when told so, and refuses the
/// table when not.
async fn dynamo_renamed_on(endpoint: &str) {
    let table = unique("idem-cli-renamed");
    let client = idem_dynamo::local_client(endpoint);
    let names = idem_dynamo::AttributeNames {
        id: "pk".into(),
        status: "state".into(),
        data: "payload".into(),
        fence: "token".into(),
        in_progress_expiration: "lease_end".into(),
        steps: "journal".into(),
        ..Default::default()
    };
    let builder = idem_dynamo::DynamoStore::builder(client.clone(), &table)
        .names(names)
        .sort_key("sk", "idem-records")
        .prefix("billing/");
    builder.create_table().await.unwrap();
    let engine = Engine::new(builder.check_ttl(false).build().await.unwrap());
    let store_arg = format!("dynamodb://{table}");
    let attributes = [
        "id=pk",
        "status=state",
        "data=payload",
        "fence=token",
        "in_progress_expiration=lease_end",
        "steps=journal",
    ];
    let mut args = vec![
        "--store",
        &store_arg,
        "--endpoint-url",
        endpoint,
        "--prefix",
        "billing/",
        "--sort-key",
        "sk=idem-records",
    ];
    for attribute in attributes {
        args.extend(["--attribute", attribute]);
    }
    let location = Location {
        store: store_arg.clone(),
        prefix: Some("billing/".into()),
        attributes: attributes.iter().map(|a| a.to_string()).collect(),
        sort_key: Some("sk=idem-records".into()),
        endpoint_url: Some(endpoint.into()),
        ..Default::default()
    };
    let target = Target::dynamo(location.dynamo_builder(client.clone(), &table).unwrap())
        .await
        .unwrap();
    scenario(&target, &engine, &args).await;

    // Listing in the sort-key layout is one partition's Query, and says so.
    let mut list = args.clone();
    list.push("list");
    let output = idem(&list);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("Query of the one partition"),
        "{}",
        stderr(&output)
    );

    // Without the layout the table's key schema does not match, and the CLI says so.
    let output = idem(&[
        "--store",
        &store_arg,
        "--endpoint-url",
        endpoint,
        "inspect",
        "--id",
        ANY_ID,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("pk"), "{}", stderr(&output));
    // A misspelt field is a usage error naming the fields.
    let output = idem(&[
        "--store",
        &store_arg,
        "--attribute",
        "fense=token",
        "inspect",
        "--id",
        ANY_ID,
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no field `fense`"),
        "{}",
        stderr(&output)
    );
    client
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
}

#[test]
fn an_option_of_another_store_is_refused() {
    for (args, named) in [
        (
            vec!["--store", "redis://127.0.0.1:1", "--table", "t"],
            "--table",
        ),
        (
            vec!["--store", "postgres://u@127.0.0.1:1/db", "--cluster"],
            "--cluster",
        ),
        (
            vec!["--store", "postgres://u@127.0.0.1:1/db", "--prefix", "p"],
            "--prefix",
        ),
        (vec!["--store", "table", "--cluster"], "--cluster"),
        (
            vec!["--store", "redis://127.0.0.1:1", "--sort-key", "sk=v"],
            "--sort-key",
        ),
        (
            vec!["--store", "redis://127.0.0.1:1", "--attribute", "id=pk"],
            "--attribute",
        ),
        (vec!["--store", "table", "--sort-key", "sk"], "--sort-key"),
    ] {
        let mut args = args.clone();
        args.extend(["inspect", "--id", ANY_ID]);
        let output = idem(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(named),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}
