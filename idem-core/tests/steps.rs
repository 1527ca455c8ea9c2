//! Steps (docs/protocol.md, steps): a journaled step never runs again in a later attempt
//! of the same record, an unjournaled one runs again with the same step key, an
//! at-most-once step found started is uncertain, a stale attempt cannot journal; on the
//! in-memory store with a manual clock, crashes as aborted tasks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idem_core::key::step_token;
use idem_core::store::{Outcome, Record, State};
use idem_core::testkit::{Fault, FaultyStore, Operation};
use idem_core::{Call, Context, Engine, EngineBuilder, Error, ManualClock, MemoryStore, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

const LEASE: Duration = Duration::from_secs(30);
const NS: &str = "tests::steps";

type Faulty = Arc<FaultyStore<MemoryStore>>;

fn setup() -> (Faulty, ManualClock, Engine) {
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let clock = ManualClock::default();
    let engine = EngineBuilder::from_arc(store.clone())
        .clock(clock.clone())
        .lease(LEASE)
        .ttl(Duration::from_secs(3600))
        .store_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    (store, clock, engine)
}

/// The key's digest: its record id after the namespace.
fn digest(engine: &Engine, key: &str) -> String {
    let id = engine.record_id(NS, key).unwrap();
    id.digest_hex().to_string()
}

fn call(engine: &Engine, key: &str) -> Call {
    Call::new(NS, key).engine(engine)
}

async fn stored(store: &Faulty, engine: &Engine, key: &str) -> Record {
    let id = engine.record_id(NS, key).unwrap();
    Arc::unwrap_or_clone(store.inner().read(&id).await.unwrap().unwrap())
}

/// Counts how often each of three steps ran.
#[derive(Default)]
struct Effects {
    charge: AtomicUsize,
    create: AtomicUsize,
    mail: AtomicUsize,
}

impl Effects {
    fn counts(&self) -> [usize; 3] {
        [&self.charge, &self.create, &self.mail].map(|n| n.load(Ordering::SeqCst))
    }
}

/// A three-step body; after its first `stop_after` steps it waits on `gate` forever
/// (the test aborts it: a crash at that point).
async fn workflow(
    ctx: Context,
    effects: Arc<Effects>,
    stop_after: usize,
    gate: Arc<Notify>,
) -> Result<String, Error> {
    let pause = |done: usize| {
        let gate = gate.clone();
        async move {
            if done == stop_after {
                gate.notify_one();
                std::future::pending::<()>().await;
            }
        }
    };
    pause(0).await;
    let charge: String = ctx
        .step("charge", async {
            effects.charge.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>("ch_1".to_owned())
        })
        .await?;
    pause(1).await;
    let group: u64 = ctx
        .step("create", async {
            effects.create.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(42)
        })
        .await?;
    pause(2).await;
    ctx.step("mail", async {
        effects.mail.fetch_add(1, Ordering::SeqCst);
        Ok::<_, Error>(())
    })
    .await?;
    pause(3).await;
    Ok(format!("{charge}/{group}"))
}

/// Runs the workflow for `key` until it has finished `stop_after` steps, then aborts
/// it (a crash) and lets the lease lapse.
async fn crash_after(
    engine: &Engine,
    clock: &ManualClock,
    effects: &Arc<Effects>,
    key: &str,
    stop_after: usize,
) {
    let gate = Arc::new(Notify::new());
    let task = {
        let (engine, effects, gate, key) = (
            engine.clone(),
            effects.clone(),
            gate.clone(),
            key.to_owned(),
        );
        tokio::spawn(async move {
            call(&engine, &key)
                .run(|ctx| workflow(ctx, effects, stop_after, gate))
                .await
        })
    };
    gate.notified().await;
    task.abort();
    let _ = task.await;
    clock.advance(LEASE + Duration::from_secs(1));
}

#[tokio::test]
async fn a_crash_between_steps_runs_only_the_unfinished_ones_again() {
    for stop_after in 0..=3 {
        let (store, clock, engine) = setup();
        let effects = Arc::new(Effects::default());
        let key = format!("crash-{stop_after}");
        crash_after(&engine, &clock, &effects, &key, stop_after).await;
        let journaled: Vec<String> = stored(&store, &engine, &key)
            .await
            .steps
            .iter()
            .map(|step| step.name.clone())
            .collect();
        assert_eq!(
            journaled,
            ["charge", "create", "mail"][..stop_after],
            "the journal after a crash past {stop_after} steps"
        );
        let gate = Arc::new(Notify::new());
        let value = call(&engine, &key)
            .run(|ctx| workflow(ctx, effects.clone(), usize::MAX, gate))
            .await
            .unwrap();
        assert_eq!(value, "ch_1/42");
        assert_eq!(
            effects.counts(),
            [1, 1, 1],
            "each step ran once, crash after {stop_after} steps"
        );
        let record = stored(&store, &engine, &key).await;
        assert_eq!((record.state, record.fence), (State::Completed, 2));
        assert!(
            record.steps.is_empty(),
            "the completion empties the journal"
        );
    }
}

#[tokio::test]
async fn a_step_that_ran_but_was_not_journaled_runs_again_with_the_same_step_key() {
    let (store, clock, engine) = setup();
    let keys = Arc::new(std::sync::Mutex::new(Vec::new()));
    store.inject(Operation::Journal, Fault::Transient);
    let body = |keys: Arc<std::sync::Mutex<Vec<String>>>| {
        move |ctx: Context| async move {
            ctx.step("charge", async {
                keys.lock()
                    .unwrap()
                    .push(Context::current().unwrap().token().to_owned());
                Ok::<_, Error>(7u32)
            })
            .await
        }
    };
    let first = call(&engine, "k").run(body(keys.clone())).await;
    assert!(
        matches!(
            first,
            Err(Error::Store {
                operation: "journal",
                ..
            })
        ),
        "{first:?}"
    );
    store.clear(Operation::Journal);
    clock.advance(Duration::from_secs(1));
    let second = call(&engine, "k").run(body(keys.clone())).await.unwrap();
    assert_eq!(second, 7);
    let keys = keys.lock().unwrap().clone();
    let digest = digest(&engine, "k");
    assert_eq!(keys, vec![step_token(&digest, "charge"); 2]);
    assert_ne!(keys[0], digest, "the step's key is not the call's");
}

#[tokio::test]
async fn the_step_token_is_the_steps_own_inside_it_and_the_keys_outside() {
    let (_store, _clock, engine) = setup();
    let seen = call(&engine, "k")
        .run(|ctx| async move {
            let outside = Context::current().unwrap().token().to_owned();
            let a = ctx
                .step("a", async {
                    let inner = Context::current().unwrap();
                    Ok::<_, Error>((
                        inner.token().to_owned(),
                        inner.step_name().map(str::to_owned),
                    ))
                })
                .await?;
            let b = ctx
                .step("b", async {
                    Ok::<_, Error>(Context::current().unwrap().token().to_owned())
                })
                .await?;
            let after = Context::current().unwrap().token().to_owned();
            Ok::<_, Error>((outside, a, b, after, ctx.token().to_owned()))
        })
        .await
        .unwrap();
    let (outside, (a, a_name), b, after, ctx_token) = seen;
    assert_eq!(outside, ctx_token);
    assert_eq!(after, outside);
    assert_eq!(a, step_token(&outside, "a"));
    assert_eq!(a_name.as_deref(), Some("a"));
    assert_eq!(b, step_token(&outside, "b"));
    assert_ne!(a, b);
}

#[tokio::test]
async fn an_at_most_once_step_found_started_is_uncertain_until_reconciled() {
    let (store, clock, engine) = setup();
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let task = {
        let (engine, runs, gate) = (engine.clone(), runs.clone(), gate.clone());
        tokio::spawn(async move {
            call(&engine, "k")
                .run(|ctx| async move {
                    ctx.step("charge", async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        gate.notify_one();
                        std::future::pending::<()>().await;
                        Ok::<_, Error>(1u32)
                    })
                    .at_most_once()
                    .await
                })
                .await
        })
    };
    gate.notified().await;
    task.abort();
    let _ = task.await;
    clock.advance(LEASE + Duration::from_secs(1));
    let steps = stored(&store, &engine, "k").await.steps;
    assert_eq!(
        (steps.len(), steps[0].outcome),
        (1, None),
        "journaled as started"
    );

    let again = |reconcile: Option<Option<u32>>| {
        let runs = runs.clone();
        call(&engine, "k").run(move |ctx| async move {
            let step = ctx
                .step("charge", async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, Error>(2u32)
                })
                .at_most_once();
            match reconcile {
                None => step.await,
                Some(answer) => {
                    step.on_uncertain(move |_key| async move { Ok(answer) })
                        .await
                }
            }
        })
    };
    match again(None).await {
        Err(Error::StepUncertain { step, step_key, .. }) => {
            assert_eq!(step, "charge");
            assert_eq!(step_key, step_token(&digest(&engine, "k"), "charge"));
        }
        other => panic!("expected StepUncertain, got {other:?}"),
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "an uncertain step is not run again"
    );
    // The downstream says it happened, with this value: journaled, not run.
    assert_eq!(again(Some(Some(9))).await.unwrap(), 9);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let record = stored(&store, &engine, "k").await;
    assert_eq!(record.state, State::Completed);
    assert_eq!(record.data.as_deref(), Some(&b"9"[..]));
}

#[tokio::test]
async fn an_uncertain_step_reconciled_as_not_happened_runs() {
    let (store, clock, engine) = setup();
    // An earlier attempt started the step and died: its journal entry, as it left it.
    let first = call(&engine, "k")
        .run(|ctx| async move {
            ctx.step("charge", async {
                Err::<u32, _>(Error::Config("down".into()))
            })
            .at_most_once()
            .await
        })
        .await;
    assert!(matches!(first, Err(Error::Config(_))), "{first:?}");
    assert_eq!(stored(&store, &engine, "k").await.steps[0].outcome, None);
    clock.advance(Duration::from_secs(1));
    let runs = &AtomicUsize::new(0);
    let value = call(&engine, "k")
        .run(|ctx| async move {
            ctx.step("charge", async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(3u32)
            })
            .on_uncertain(|_key| async { Ok(None) })
            .await
        })
        .await
        .unwrap();
    assert_eq!((value, runs.load(Ordering::SeqCst)), (3, 1));
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum PayError {
    Declined(String),
    Down,
    Idem(String),
}

impl From<Error> for PayError {
    fn from(e: Error) -> Self {
        PayError::Idem(e.to_string())
    }
}

#[tokio::test]
async fn a_steps_error_is_journaled_only_when_its_policy_says_so() {
    let (_store, clock, engine) = setup();
    let runs = Arc::new(AtomicUsize::new(0));
    let attempt = |error: PayError| {
        let runs = runs.clone();
        call(&engine, format!("{error:?}").as_str()).run(move |ctx| async move {
            ctx.step("charge", async {
                runs.fetch_add(1, Ordering::SeqCst);
                Err::<u32, _>(error)
            })
            .replay_errors(|e: &PayError| matches!(e, PayError::Declined(_)))
            .await
        })
    };
    for error in [PayError::Declined("card".into()), PayError::Down] {
        runs.store(0, Ordering::SeqCst);
        let expected = format!("{error:?}");
        let journaled = matches!(error, PayError::Declined(_));
        let first = attempt(error).await.unwrap_err();
        assert_eq!(format!("{first:?}"), expected);
        clock.advance(Duration::from_secs(1));
        let again = match expected.as_str() {
            "Down" => attempt(PayError::Down).await,
            _ => attempt(PayError::Declined("card".into())).await,
        };
        assert_eq!(format!("{:?}", again.unwrap_err()), expected);
        assert_eq!(
            runs.load(Ordering::SeqCst),
            if journaled { 1 } else { 2 },
            "{expected}: journaled errors are replayed, others run again"
        );
    }
}

#[tokio::test]
async fn a_repeated_or_nested_step_is_refused_before_it_runs() {
    let (_store, _clock, engine) = setup();
    let runs = &AtomicUsize::new(0);
    let repeated = call(&engine, "repeated")
        .run(|ctx| async move {
            ctx.step("a", async { Ok::<_, Error>(1) }).await?;
            ctx.step("a", async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(2)
            })
            .await
        })
        .await;
    assert!(
        matches!(&repeated, Err(Error::Step { step, reason, .. }) if step == "a" && reason.contains("twice")),
        "{repeated:?}"
    );
    let nested = call(&engine, "nested")
        .run(|ctx| async move {
            let inner = ctx.clone();
            ctx.step("outer", async {
                inner
                    .step("inner", async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Error>(1)
                    })
                    .await
            })
            .await
        })
        .await;
    assert!(
        matches!(&nested, Err(Error::Step { reason, .. }) if reason.contains("nest")),
        "{nested:?}"
    );
    let nul = call(&engine, "nul")
        .run(|ctx| async move {
            ctx.step("a\0b", async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(1)
            })
            .await
        })
        .await;
    assert!(
        matches!(&nul, Err(Error::Step { reason, .. }) if reason.contains("NUL")),
        "{nul:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_stale_attempt_cannot_journal_and_gets_lease_lost() {
    let (store, clock, engine) = setup();
    let gate = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let stale = {
        let (engine, gate, release) = (engine.clone(), gate.clone(), release.clone());
        tokio::spawn(async move {
            call(&engine, "k")
                .max_duration(Duration::from_millis(1)) // no heartbeat keeps it alive
                .run(|ctx| async move {
                    ctx.step("charge", async {
                        gate.notify_one();
                        release.notified().await;
                        Ok::<_, Error>("stale".to_owned())
                    })
                    .await
                })
                .await
        })
    };
    gate.notified().await;
    clock.advance(LEASE + Duration::from_secs(1));
    let fresh = call(&engine, "k")
        .run(|ctx| async move {
            ctx.step("charge", async { Ok::<_, Error>("fresh".to_owned()) })
                .await
        })
        .await;
    assert_eq!(fresh.unwrap(), "fresh");
    release.notify_one();
    let error = stale.await.unwrap().unwrap_err();
    assert!(matches!(error, Error::LeaseLost { .. }), "{error:?}");
    assert!(
        error.lost_value::<String>().is_none(),
        "a step's value is not the body's: a lost lease in a step carries none"
    );
    let record = stored(&store, &engine, "k").await;
    assert_eq!((record.fence, record.outcome), (2, Some(Outcome::Ok)));
    assert_eq!(record.data.as_deref(), Some(&b"\"fresh\""[..]));
}

#[tokio::test]
async fn one_store_call_per_step_and_none_for_a_body_without_steps() {
    let (store, clock, engine) = setup();
    let calls = |store: &Faulty| {
        [
            Operation::Begin,
            Operation::Read,
            Operation::Journal,
            Operation::Complete,
        ]
        .map(|operation| store.calls(operation))
    };
    call(&engine, "plain")
        .run(|_| async { Ok::<_, Error>(1) })
        .await
        .unwrap();
    assert_eq!(calls(&store), [1, 0, 0, 1], "begin, complete");
    let effects = Arc::new(Effects::default());
    call(&engine, "steps")
        .run(|ctx| workflow(ctx, effects.clone(), usize::MAX, Arc::new(Notify::new())))
        .await
        .unwrap();
    assert_eq!(
        calls(&store),
        [2, 0, 3, 2],
        "a first attempt: one journal write per step, no read"
    );
    crash_after(&engine, &clock, &effects, "crashed", 1).await;
    let before = calls(&store);
    call(&engine, "crashed")
        .run(|ctx| workflow(ctx, effects.clone(), usize::MAX, Arc::new(Notify::new())))
        .await
        .unwrap();
    let after = calls(&store);
    let delta: Vec<usize> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(
        delta,
        [1, 1, 2, 1],
        "a takeover reads the journal once and journals the two steps it runs"
    );
}

#[tokio::test]
async fn steps_of_an_unguarded_body_run_without_a_journal_but_keep_their_keys_and_names() {
    let engine = Engine::builder(MemoryStore::new())
        .disabled(true)
        .build()
        .unwrap();
    let runs = &AtomicUsize::new(0);
    let (tokens, repeated) = Call::new(NS, "k")
        .engine(&engine)
        .run(|ctx| async move {
            let token = |n: usize| {
                runs.fetch_add(n, Ordering::SeqCst);
                Ok::<_, Error>(Context::current().unwrap().token().to_owned())
            };
            let a = ctx.step("a", async { token(1) }).await?;
            let b = ctx.step("b", async { token(1) }).await?;
            let repeated = ctx.step("a", async { token(100) }).await;
            let repeated = repeated.err().map(|e| e.to_string());
            Ok::<_, Error>(((ctx.token().to_owned(), a, b), repeated))
        })
        .await
        .unwrap();
    let (outside, a, b) = tokens;
    assert_eq!(
        outside,
        digest(&engine, "k"),
        "a disabled engine keeps the key's token"
    );
    assert_eq!(
        (a, b),
        (step_token(&outside, "a"), step_token(&outside, "b"))
    );
    assert!(
        repeated
            .as_deref()
            .is_some_and(|e| e.contains("step `a`") && e.contains("twice")),
        "{repeated:?}"
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "no journal, but no repeated name either"
    );
    let outside = idem_core::step("free", async { Ok::<_, Error>(5) })
        .await
        .unwrap();
    assert_eq!(outside, 5, "outside any body a step is its future");
}
