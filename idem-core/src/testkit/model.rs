//! A reference model of the store contract, and the property test that compares a
//! store's every answer with it over random sequences of operations.

use std::future::Future;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::{
    attempt, begin_at, completion_at, fresh_id, renewal_at, runtime, LEASE_MS, T0, TTL_MS,
};
use crate::protocol;
use crate::store::{
    Attempt, Begin, Codec, Completion, Outcome, Record, Renewal, StepRecord, Store, Written,
};

/// A reference model of the store contract: one key's record, changed by the
/// transitions of [`protocol`], the functions the in-memory store applies.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// The record the store should hold.
    pub record: Option<Arc<Record>>,
}

impl Model {
    /// begin ([`protocol::begin`]). The record it writes shows the begin to the
    /// engine's reconciliation ([`Record::shows_begin_by`]).
    pub fn begin(&mut self, request: &Begin) -> Written<u64> {
        let written = protocol::begin(self.record.as_ref(), request);
        if let Written::Applied(fence) = written {
            let record = protocol::begun(self.record.as_deref(), request, fence);
            assert!(record.shows_begin_by(request.owner));
            self.record = Some(Arc::new(record));
        }
        written
    }

    /// complete ([`protocol::complete`]); the record it writes shows the completion
    /// ([`Record::shows_completion_by`]).
    pub fn complete(&mut self, attempt: &Attempt, completion: &Completion) -> Written<()> {
        let written = protocol::complete(self.record.as_mut(), attempt, completion);
        self.shows(&written, |r| r.shows_completion_by(attempt));
        written
    }

    /// extend ([`protocol::extend`]); the record it writes shows the renewal
    /// ([`Record::shows_renewal_by`]).
    pub fn extend(&mut self, attempt: &Attempt, renewal: &Renewal) -> Written<()> {
        let written = protocol::extend(self.record.as_mut(), attempt, renewal);
        self.shows(&written, |r| r.shows_renewal_by(attempt, renewal));
        written
    }

    /// journal ([`protocol::journal`]); the record it writes shows the step
    /// ([`Record::shows_journal_by`]).
    pub fn journal(&mut self, attempt: &Attempt, step: &StepRecord) -> Written<()> {
        let written = protocol::journal(self.record.as_mut(), attempt, step);
        self.shows(&written, |r| r.shows_journal_by(attempt, step));
        written
    }

    /// release ([`protocol::release`]); the record it writes shows the release
    /// ([`Record::shows_release_by`]).
    pub fn release(&mut self, attempt: &Attempt) -> Written<()> {
        let written = protocol::release(self.record.as_mut(), attempt);
        self.shows(&written, |r| r.shows_release_by(attempt));
        written
    }

    /// After an applied write, the engine's predicate for "my write was applied" must
    /// recognise the record it left: otherwise a write whose response was lost would be
    /// taken for a refusal.
    fn shows(&self, written: &Written<()>, predicate: impl Fn(&Record) -> bool) {
        if let Written::Applied(()) = written {
            let record = self
                .record
                .as_ref()
                .expect("an applied write leaves a record");
            assert!(
                predicate(record),
                "the engine would not recognise its own write in {record:?}"
            );
        }
    }
}

/// One step of a property-test sequence.
#[derive(Debug, Clone)]
pub enum Op {
    /// Caller begins, with fingerprint `fp-N` or none.
    Begin {
        /// Which caller (0..3).
        caller: usize,
        /// The fingerprint's number, if any.
        fingerprint: Option<u8>,
    },
    /// Caller completes with an outcome (0 ok, 1 err, 2 not stored).
    Complete {
        /// Which caller.
        caller: usize,
        /// Which outcome.
        outcome: u8,
    },
    /// Caller renews its lease.
    Extend {
        /// Which caller.
        caller: usize,
    },
    /// Caller releases.
    Release {
        /// Which caller.
        caller: usize,
    },
    /// Caller journals step `s{step}` (0..3): started (`kind` 0), a JSON value (1), a
    /// recorded error (2), raw bytes (3).
    Journal {
        /// Which caller.
        caller: usize,
        /// Which step.
        step: u8,
        /// What the entry holds.
        kind: u8,
    },
    /// The clock moves forward.
    Advance {
        /// By how many milliseconds.
        ms: u64,
    },
    /// Caller crashes: its next begin comes from a new attempt with a new owner.
    Crash {
        /// Which caller.
        caller: usize,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let caller = 0..3usize;
    prop_oneof![
        3 => (caller.clone(), proptest::option::of(0..2u8))
            .prop_map(|(caller, fingerprint)| Op::Begin { caller, fingerprint }),
        2 => (caller.clone(), 0..3u8).prop_map(|(caller, outcome)| Op::Complete { caller, outcome }),
        1 => caller.clone().prop_map(|caller| Op::Extend { caller }),
        1 => caller.clone().prop_map(|caller| Op::Release { caller }),
        2 => (caller.clone(), 0..3u8, 0..4u8)
            .prop_map(|(caller, step, kind)| Op::Journal { caller, step, kind }),
        2 => prop_oneof![
            1..2_000u64,
            Just(LEASE_MS),
            Just(LEASE_MS + TTL_MS),
            0..(2 * (LEASE_MS + TTL_MS)),
        ]
        .prop_map(|ms| Op::Advance { ms }),
        1 => caller.prop_map(|caller| Op::Crash { caller }),
    ]
}

/// A caller in a sequence: its current owner id and the fence of its last begin.
#[derive(Debug, Clone)]
struct Caller {
    owner: String,
    generation: u32,
    fence: u64,
}

/// A journal entry for the model's sequences: step `s{step}`, started (`kind` 0), a
/// JSON value (1), a recorded error (2) or raw bytes that are not UTF-8 (3).
fn step_entry(step: u8, kind: u8, now: u64) -> StepRecord {
    let name = format!("s{step}");
    match kind {
        0 => StepRecord::started(name),
        1 => StepRecord {
            name,
            outcome: Some(Outcome::Ok),
            data: Some(format!("{{\"at\":{now}}}").into_bytes().into()),
            codec: Codec::Json,
        },
        2 => StepRecord {
            name,
            outcome: Some(Outcome::Err),
            data: Some(b"{\"declined\":true}".to_vec().into()),
            codec: Codec::Json,
        },
        _ => StepRecord {
            name,
            outcome: Some(Outcome::Ok),
            data: Some(vec![0xff, 0, step, (now % 251) as u8].into()),
            codec: Codec::Bytes,
        },
    }
}

/// Runs one sequence against `store` and the [`Model`], panicking at the first answer
/// that differs.
pub async fn check_sequence(store: &Arc<dyn Store>, ops: &[Op]) {
    let id = fresh_id("model");
    let mut model = Model::default();
    let mut now = T0;
    let mut callers: Vec<Caller> = (0..3)
        .map(|i| Caller {
            owner: format!("caller-{i}-0"),
            generation: 0,
            fence: 0,
        })
        .collect();
    for (step, op) in ops.iter().enumerate() {
        // A store may delete an expired record at any time (TTL); follow it.
        if model.record.as_ref().is_some_and(|r| r.is_expired(now))
            && store.read(&id).await.expect("read").is_none()
        {
            model.record = None;
        }
        let context = format!("step {step} ({op:?}) at {now}");
        match op {
            Op::Begin {
                caller,
                fingerprint,
            } => {
                let fp = fingerprint.map(|n| format!("fp-{n}"));
                let request = begin_at(&id, &callers[*caller].owner, now, fp.as_deref());
                let expected = model.begin(&request);
                let got = store.begin(&request).await.expect("begin");
                assert_eq!(got, expected, "{context}");
                if let Written::Applied(fence) = got {
                    callers[*caller].fence = fence;
                }
            }
            Op::Complete { caller, outcome } => {
                let (outcome, data) = match outcome {
                    0 => (Outcome::Ok, Some(format!("\"value at {now}\""))),
                    1 => (Outcome::Err, Some("{\"error\":1}".to_owned())),
                    _ => (Outcome::NotStored, None),
                };
                let c = &callers[*caller];
                let at = attempt(&id, &c.owner, c.fence);
                let done = completion_at(now, outcome, data.as_deref());
                let expected = model.complete(&at, &done);
                assert_eq!(
                    store.complete(&at, &done).await.expect("complete"),
                    expected,
                    "{context}"
                );
            }
            Op::Extend { caller } => {
                let c = &callers[*caller];
                let at = attempt(&id, &c.owner, c.fence);
                let renewal = renewal_at(now);
                let expected = model.extend(&at, &renewal);
                assert_eq!(
                    store.extend(&at, &renewal).await.expect("extend"),
                    expected,
                    "{context}"
                );
            }
            Op::Release { caller } => {
                let c = &callers[*caller];
                let at = attempt(&id, &c.owner, c.fence);
                let expected = model.release(&at);
                assert_eq!(
                    store.release(&at).await.expect("release"),
                    expected,
                    "{context}"
                );
            }
            Op::Journal { caller, step, kind } => {
                let c = &callers[*caller];
                let at = attempt(&id, &c.owner, c.fence);
                let entry = step_entry(*step, *kind, now);
                let expected = model.journal(&at, &entry);
                assert_eq!(
                    store.journal(&at, &entry).await.expect("journal"),
                    expected,
                    "{context}"
                );
            }
            Op::Advance { ms } => now += ms,
            Op::Crash { caller } => {
                let c = &mut callers[*caller];
                c.generation += 1;
                c.owner = format!("caller-{caller}-{}", c.generation);
                c.fence = 0;
            }
        }
        assert_eq!(
            store.read(&id).await.expect("read"),
            model.record,
            "{context}: the stored record differs from the model's"
        );
    }
}

/// The property test: random sequences (64 by default; `PROPTEST_CASES` overrides)
/// against a fresh store from `factory` each, compared with the [`Model`].
pub fn run_model<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    let runtime = runtime();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op_strategy(), 1..40), |ops| {
        runtime.block_on(async {
            let store: Arc<dyn Store> = Arc::new(factory().await);
            check_sequence(&store, &ops).await;
        });
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
}
