//! The store conformance kit (feature `testkit`): one suite, run against every store.
//!
//! ```
//! // In a store crate's tests/conformance.rs (here with the in-memory store):
//! idem_core::store_conformance!(
//!     factory = || async { idem_core::MemoryStore::new() },
//!     atomic = true,
//! );
//! # fn main() {}
//! ```
//!
//! [`store_conformance!`](crate::store_conformance) expands to one `#[test]` per case
//! of [`cases`], plus a property test ([`run_model`]) that drives random sequences of
//! begin, complete, extend, release, clock moves and crashes against the store and
//! against a small reference [`Model`] of the contract, and compares every answer.
//! The factory is called once per case (once per sequence in the property test); it may
//! return a fresh store, or a store on a shared table, since every case uses ids of its
//! own. A store whose conditional writes are not atomic under concurrency (an emulator)
//! declares `atomic = false`: the cases that race writers are then emitted with
//! `#[ignore = "..."]`, since libtest has no runtime skip.

mod faults;
mod storm;

pub use faults::{Chaos, Fault, FaultyStore, Operation};
pub use storm::{storm, Downstream, StormConfig, StormReport};

use std::future::Future;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::record::{ceil_secs, Outcome, Record, State, CODEC_JSON, FORMAT};
use crate::store::{Attempt, Begin, Completion, Lease, Store, Written};

/// Expands to the conformance suite for a store: see the [module docs](crate::testkit).
///
/// `factory` is a closure returning a future of the store (`|| async { ... }`), called
/// once per case. `atomic` says whether the store's conditional writes are atomic under
/// concurrency; with `false`, the racing cases are emitted as ignored.
///
/// `ignore = "reason"` (optional, last) emits every case as `#[ignore = "reason"]`,
/// for stores that need a server a plain `cargo test` does not start. With
/// `atomic = false`, the racing cases go in a module `not_atomic`, so a test command
/// that runs ignored tests can leave them out with `--skip not_atomic::`.
#[macro_export]
macro_rules! store_conformance {
    (factory = $factory:expr, atomic = true $(, ignore = $reason:literal)? $(,)?) => {
        $crate::store_conformance!(@cases $factory, { $(#[ignore = $reason])? });
        #[test]
        $(#[ignore = $reason])?
        fn concurrent_begins_have_one_winner() {
            $crate::testkit::run_case($factory, $crate::testkit::cases::concurrent_begins_have_one_winner);
        }
    };
    (factory = $factory:expr, atomic = false $(, ignore = $reason:literal)? $(,)?) => {
        $crate::store_conformance!(@cases $factory, { $(#[ignore = $reason])? });
        /// Cases that race writers: this store's conditional writes are not atomic.
        mod not_atomic {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            #[ignore = "this store's conditional writes are not atomic under concurrency, so races are judged on another backend"]
            fn concurrent_begins_have_one_winner() {
                $crate::testkit::run_case($factory, $crate::testkit::cases::concurrent_begins_have_one_winner);
            }
        }
    };
    (@cases $factory:expr, { $($ignore:tt)* }) => {
        $crate::store_conformance!(@each $factory, { $($ignore)* },
            begin_on_empty_acquires_fence_1,
            begin_writes_every_field,
            read_of_absent_is_none,
            begin_refused_while_lease_live,
            begin_takes_over_at_lease_end_with_higher_fence,
            completed_record_refuses_begin,
            begin_takes_over_after_record_expiry,
            fingerprint_returned_in_both_states,
            stale_owner_complete_refused,
            stale_owner_extend_refused,
            stale_owner_release_refused,
            stale_fence_refused,
            complete_after_lapse_without_takeover_accepted,
            writes_on_absent_record_refused_with_none,
            release_frees_at_once_and_reacquire_gets_higher_fence,
            extend_renews_lease,
            complete_records_each_outcome,
            delete_removes_record_and_resets_fence,
        );
        #[test]
        $($ignore)*
        fn model_sequences() {
            $crate::testkit::run_model($factory);
        }
    };
    (@each $factory:expr, $ignore:tt, $($case:ident),* $(,)?) => {
        $( $crate::store_conformance!(@one $factory, $ignore, $case); )*
    };
    (@one $factory:expr, { $($ignore:tt)* }, $case:ident) => {
        #[test]
        $($ignore)*
        fn $case() {
            $crate::testkit::run_case($factory, $crate::testkit::cases::$case);
        }
    };
}

/// A runtime for one case: multi-threaded, so racing tasks really run in parallel.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Runs one case against a store made by `factory`.
pub fn run_case<F, Fut, S, C, CFut>(factory: F, case: C)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
    C: FnOnce(Arc<dyn Store>) -> CFut,
    CFut: Future<Output = ()>,
{
    runtime().block_on(async move {
        let store: Arc<dyn Store> = Arc::new(factory().await);
        case(store).await;
    });
}

/// The epoch milliseconds every case starts at.
pub const T0: u64 = 1_704_067_200_000;
/// The lease the cases use, in milliseconds.
pub const LEASE_MS: u64 = 30_000;
/// The TTL the cases use, in milliseconds.
pub const TTL_MS: u64 = 3_600_000;

/// A record id no other case or run uses.
pub fn fresh_id(case: &str) -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("conformance::{case}#{a}{b}")
}

/// A begin at `now` with the kit's lease and TTL, as the engine would compute it.
pub fn begin_at(id: &str, owner: &str, now: u64, fingerprint: Option<&str>) -> Begin {
    let lease_until_ms = now + LEASE_MS;
    Begin {
        id: id.to_owned(),
        owner: owner.to_owned(),
        now_ms: now,
        lease_until_ms,
        expires_at_s: ceil_secs(lease_until_ms + TTL_MS),
        fingerprint: fingerprint.map(str::to_owned),
    }
}

/// The attempt `owner` holds with `fence`.
pub fn attempt(id: &str, owner: &str, fence: u64) -> Attempt {
    Attempt {
        id: id.to_owned(),
        owner: owner.to_owned(),
        fence,
    }
}

/// A completion at `now` with the kit's TTL.
pub fn completion_at(now: u64, outcome: Outcome, data: Option<&str>) -> Completion {
    Completion {
        expires_at_s: ceil_secs(now + TTL_MS),
        outcome,
        data: data.map(str::to_owned),
    }
}

/// A lease renewed at `now` with the kit's lease and TTL.
pub fn lease_at(now: u64) -> Lease {
    let lease_until_ms = now + LEASE_MS;
    Lease {
        lease_until_ms,
        expires_at_s: ceil_secs(lease_until_ms + TTL_MS),
    }
}

/// The conformance cases, one per rule of the store contract.
pub mod cases {
    use super::*;

    async fn acquire(store: &Arc<dyn Store>, request: &Begin) -> u64 {
        match store.begin(request).await.expect("begin") {
            Written::Applied(fence) => fence,
            Written::Refused(record) => panic!(
                "begin at {} should have been applied, was refused with {record:?}",
                request.now_ms
            ),
        }
    }

    async fn refused_begin(store: &Arc<dyn Store>, request: &Begin) -> Record {
        match store.begin(request).await.expect("begin") {
            Written::Applied(fence) => panic!(
                "begin at {} should have been refused, was applied with fence {fence}",
                request.now_ms
            ),
            Written::Refused(Some(record)) => record,
            Written::Refused(None) => panic!("a refused begin must return the current record"),
        }
    }

    async fn read(store: &Arc<dyn Store>, id: &str) -> Record {
        store
            .read(id)
            .await
            .expect("read")
            .unwrap_or_else(|| panic!("record {id} should exist"))
    }

    /// begin on an empty key is applied with fence 1.
    pub async fn begin_on_empty_acquires_fence_1(store: Arc<dyn Store>) {
        let id = fresh_id("empty");
        assert_eq!(acquire(&store, &begin_at(&id, "a", T0, None)).await, 1);
    }

    /// begin writes state, owner, fence, lease, expiry, fingerprint, format and codec.
    pub async fn begin_writes_every_field(store: Arc<dyn Store>) {
        let id = fresh_id("fields");
        let request = begin_at(&id, "owner-a", T0, Some("fp-1"));
        acquire(&store, &request).await;
        assert_eq!(
            read(&store, &id).await,
            Record {
                id: id.clone(),
                state: State::InProgress,
                owner: "owner-a".into(),
                fence: 1,
                lease_until_ms: request.lease_until_ms,
                expires_at_s: request.expires_at_s,
                fingerprint: Some("fp-1".into()),
                outcome: None,
                data: None,
                format: FORMAT,
                codec: CODEC_JSON.into(),
            }
        );
    }

    /// read of a key never written is `None`.
    pub async fn read_of_absent_is_none(store: Arc<dyn Store>) {
        assert_eq!(store.read(&fresh_id("absent")).await.expect("read"), None);
    }

    /// begin is refused while another attempt's lease is live, up to its last millisecond,
    /// and the refusal carries the holder's record.
    pub async fn begin_refused_while_lease_live(store: Arc<dyn Store>) {
        let id = fresh_id("live");
        let first = begin_at(&id, "a", T0, None);
        acquire(&store, &first).await;
        for now in [T0, T0 + 1, first.lease_until_ms - 1] {
            let record = refused_begin(&store, &begin_at(&id, "b", now, None)).await;
            assert_eq!(record.owner, "a");
            assert_eq!(record.state, State::InProgress);
            assert_eq!(record.fence, 1);
        }
    }

    /// At the lease's end the key is free: begin takes it over with fence + 1, its own
    /// owner, and its own fingerprint (none removes the old one).
    pub async fn begin_takes_over_at_lease_end_with_higher_fence(store: Arc<dyn Store>) {
        let id = fresh_id("takeover");
        let first = begin_at(&id, "a", T0, Some("fp"));
        acquire(&store, &first).await;
        let second = begin_at(&id, "b", first.lease_until_ms, None);
        assert_eq!(acquire(&store, &second).await, 2);
        let record = read(&store, &id).await;
        assert_eq!(record.owner, "b");
        assert_eq!(record.fence, 2);
        assert_eq!(record.lease_until_ms, second.lease_until_ms);
        assert_eq!(record.expires_at_s, second.expires_at_s);
        assert_eq!(
            record.fingerprint, None,
            "begin without a fingerprint removes it"
        );
    }

    /// A completed record refuses begin until it expires, carrying outcome and data.
    pub async fn completed_record_refuses_begin(store: Arc<dyn Store>) {
        let id = fresh_id("completed");
        let fence = acquire(&store, &begin_at(&id, "a", T0, None)).await;
        let done = completion_at(T0 + 10, Outcome::Ok, Some("{\"group\":7}"));
        assert_eq!(
            store
                .complete(&attempt(&id, "a", fence), &done)
                .await
                .expect("complete"),
            Written::Applied(())
        );
        let record = refused_begin(&store, &begin_at(&id, "b", T0 + LEASE_MS * 10, None)).await;
        assert_eq!(record.state, State::Completed);
        assert_eq!(record.outcome, Some(Outcome::Ok));
        assert_eq!(record.data.as_deref(), Some("{\"group\":7}"));
        assert_eq!(record.owner, "a", "completion keeps the owner");
        assert_eq!(record.fence, fence);
        assert_eq!(record.expires_at_s, done.expires_at_s);
    }

    /// A completed record is free from its expiry on; begin clears outcome and data.
    pub async fn begin_takes_over_after_record_expiry(store: Arc<dyn Store>) {
        let id = fresh_id("expiry");
        let fence = acquire(&store, &begin_at(&id, "a", T0, None)).await;
        let done = completion_at(T0, Outcome::Ok, Some("1"));
        store
            .complete(&attempt(&id, "a", fence), &done)
            .await
            .expect("complete");
        let expiry_ms = done.expires_at_s * 1000;
        refused_begin(&store, &begin_at(&id, "b", expiry_ms - 1, None)).await;
        let again = begin_at(&id, "b", expiry_ms, Some("fp"));
        // A store may have deleted the expired record (TTL), which resets the fence.
        assert!(acquire(&store, &again).await >= 1);
        let record = read(&store, &id).await;
        assert_eq!(record.state, State::InProgress);
        assert_eq!(record.owner, "b");
        assert_eq!(record.outcome, None, "begin removes the old outcome");
        assert_eq!(record.data, None, "begin removes the old data");
        assert_eq!(record.fingerprint.as_deref(), Some("fp"));
    }

    /// The fingerprint comes back on refusals in both states, for the engine to compare.
    pub async fn fingerprint_returned_in_both_states(store: Arc<dyn Store>) {
        let id = fresh_id("fingerprint");
        let fence = acquire(&store, &begin_at(&id, "a", T0, Some("fp-a"))).await;
        let record = refused_begin(&store, &begin_at(&id, "b", T0 + 1, Some("fp-b"))).await;
        assert_eq!(record.fingerprint.as_deref(), Some("fp-a"));
        store
            .complete(
                &attempt(&id, "a", fence),
                &completion_at(T0 + 2, Outcome::Ok, Some("1")),
            )
            .await
            .expect("complete");
        let record = refused_begin(&store, &begin_at(&id, "b", T0 + 3, Some("fp-b"))).await;
        assert_eq!(record.state, State::Completed);
        assert_eq!(record.fingerprint.as_deref(), Some("fp-a"));
    }

    /// A lapsed lease taken over by `b`: returns the id and `b`'s record.
    async fn taken_over(store: &Arc<dyn Store>, case: &str) -> (String, Record) {
        let id = fresh_id(case);
        let first = begin_at(&id, "a", T0, None);
        acquire(store, &first).await;
        acquire(store, &begin_at(&id, "b", first.lease_until_ms + 5, None)).await;
        let record = read(store, &id).await;
        (id, record)
    }

    fn assert_refused_with(written: Written<()>, current: &Record) {
        assert_eq!(written, Written::Refused(Some(current.clone())));
    }

    /// complete by the attempt that lost its lease is refused and changes nothing.
    pub async fn stale_owner_complete_refused(store: Arc<dyn Store>) {
        let (id, current) = taken_over(&store, "stale-complete").await;
        let now = current.lease_until_ms - 1;
        let written = store
            .complete(
                &attempt(&id, "a", 1),
                &completion_at(now, Outcome::Ok, Some("1")),
            )
            .await
            .expect("complete");
        assert_refused_with(written, &current);
        assert_eq!(read(&store, &id).await, current);
    }

    /// extend by the attempt that lost its lease is refused and changes nothing.
    pub async fn stale_owner_extend_refused(store: Arc<dyn Store>) {
        let (id, current) = taken_over(&store, "stale-extend").await;
        let written = store
            .extend(&attempt(&id, "a", 1), &lease_at(current.lease_until_ms - 1))
            .await
            .expect("extend");
        assert_refused_with(written, &current);
        assert_eq!(read(&store, &id).await, current);
    }

    /// release by the attempt that lost its lease is refused and changes nothing.
    pub async fn stale_owner_release_refused(store: Arc<dyn Store>) {
        let (id, current) = taken_over(&store, "stale-release").await;
        let written = store.release(&attempt(&id, "a", 1)).await.expect("release");
        assert_refused_with(written, &current);
        assert_eq!(read(&store, &id).await, current);
    }

    /// The right owner with the wrong fence is refused too.
    pub async fn stale_fence_refused(store: Arc<dyn Store>) {
        let id = fresh_id("stale-fence");
        let fence = acquire(&store, &begin_at(&id, "a", T0, None)).await;
        let current = read(&store, &id).await;
        let wrong = attempt(&id, "a", fence + 1);
        let done = completion_at(T0 + 1, Outcome::Ok, Some("1"));
        assert_refused_with(
            store.complete(&wrong, &done).await.expect("complete"),
            &current,
        );
        assert_refused_with(
            store
                .extend(&wrong, &lease_at(T0 + 1))
                .await
                .expect("extend"),
            &current,
        );
        assert_refused_with(store.release(&wrong).await.expect("release"), &current);
        assert_eq!(read(&store, &id).await, current);
    }

    /// A lapsed lease that nobody took over still lets its attempt complete.
    pub async fn complete_after_lapse_without_takeover_accepted(store: Arc<dyn Store>) {
        let id = fresh_id("lapsed");
        let first = begin_at(&id, "a", T0, None);
        let fence = acquire(&store, &first).await;
        let late = first.lease_until_ms + LEASE_MS * 3;
        let done = completion_at(late, Outcome::Ok, Some("\"late\""));
        assert_eq!(
            store
                .complete(&attempt(&id, "a", fence), &done)
                .await
                .expect("complete"),
            Written::Applied(())
        );
        let record = read(&store, &id).await;
        assert_eq!(record.state, State::Completed);
        assert_eq!(
            record.expires_at_s, done.expires_at_s,
            "ttl counts from completion"
        );
    }

    /// complete, extend and release on a key that has no record are refused with `None`.
    pub async fn writes_on_absent_record_refused_with_none(store: Arc<dyn Store>) {
        let id = fresh_id("absent-writes");
        let nobody = attempt(&id, "a", 1);
        let done = completion_at(T0, Outcome::Ok, Some("1"));
        assert_eq!(
            store.complete(&nobody, &done).await.expect("complete"),
            Written::Refused(None)
        );
        assert_eq!(
            store.extend(&nobody, &lease_at(T0)).await.expect("extend"),
            Written::Refused(None)
        );
        assert_eq!(
            store.release(&nobody).await.expect("release"),
            Written::Refused(None)
        );
        assert_eq!(
            store.read(&id).await.expect("read"),
            None,
            "no write may create a record"
        );
    }

    /// release frees the key at once (lease 0), keeps the record, and the next begin gets
    /// a higher fence without any clock move.
    pub async fn release_frees_at_once_and_reacquire_gets_higher_fence(store: Arc<dyn Store>) {
        let id = fresh_id("release");
        let fence = acquire(&store, &begin_at(&id, "a", T0, None)).await;
        assert_eq!(
            store
                .release(&attempt(&id, "a", fence))
                .await
                .expect("release"),
            Written::Applied(())
        );
        let record = read(&store, &id).await;
        assert_eq!(record.lease_until_ms, 0);
        assert_eq!(record.state, State::InProgress);
        assert_eq!(
            acquire(&store, &begin_at(&id, "b", T0 + 1, None)).await,
            fence + 1
        );
    }

    /// extend moves the lease and the expiry; the old lease end no longer frees the key.
    pub async fn extend_renews_lease(store: Arc<dyn Store>) {
        let id = fresh_id("extend");
        let first = begin_at(&id, "a", T0, None);
        let fence = acquire(&store, &first).await;
        let renewed = lease_at(T0 + LEASE_MS / 3);
        assert_eq!(
            store
                .extend(&attempt(&id, "a", fence), &renewed)
                .await
                .expect("extend"),
            Written::Applied(())
        );
        let record = read(&store, &id).await;
        assert_eq!(record.lease_until_ms, renewed.lease_until_ms);
        assert_eq!(record.expires_at_s, renewed.expires_at_s);
        refused_begin(&store, &begin_at(&id, "b", first.lease_until_ms, None)).await;
        assert_eq!(
            acquire(&store, &begin_at(&id, "b", renewed.lease_until_ms, None)).await,
            fence + 1
        );
    }

    /// Each outcome is recorded with its data (none for not-stored).
    pub async fn complete_records_each_outcome(store: Arc<dyn Store>) {
        for (outcome, data) in [
            (Outcome::Ok, Some("{\"v\":\"é \\\" ok\"}")),
            (Outcome::Err, Some("{\"code\":\"E42\"}")),
            (Outcome::NotStored, None),
        ] {
            let id = fresh_id("outcomes");
            let fence = acquire(&store, &begin_at(&id, "a", T0, None)).await;
            store
                .complete(
                    &attempt(&id, "a", fence),
                    &completion_at(T0 + 1, outcome, data),
                )
                .await
                .expect("complete");
            let record = read(&store, &id).await;
            assert_eq!(record.outcome, Some(outcome));
            assert_eq!(record.data.as_deref(), data);
        }
    }

    /// delete removes the record; the next begin starts at fence 1 again.
    pub async fn delete_removes_record_and_resets_fence(store: Arc<dyn Store>) {
        let id = fresh_id("delete");
        acquire(&store, &begin_at(&id, "a", T0, None)).await;
        store.delete(&id).await.expect("delete");
        assert_eq!(store.read(&id).await.expect("read"), None);
        assert_eq!(acquire(&store, &begin_at(&id, "b", T0 + 1, None)).await, 1);
    }

    /// Many concurrent begins on one key: exactly one is applied, and every refusal
    /// carries the winner's record.
    pub async fn concurrent_begins_have_one_winner(store: Arc<dyn Store>) {
        const TASKS: usize = 32;
        let id = fresh_id("race");
        let start = Arc::new(tokio::sync::Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|i| {
                let (store, id, start) = (store.clone(), id.clone(), start.clone());
                tokio::spawn(async move {
                    let owner = format!("racer-{i}");
                    start.wait().await;
                    let written = store
                        .begin(&begin_at(&id, &owner, T0, None))
                        .await
                        .expect("begin");
                    (owner, written)
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut refusals = Vec::new();
        for task in tasks {
            match task.await.expect("task") {
                (owner, Written::Applied(fence)) => winners.push((owner, fence)),
                (_, Written::Refused(record)) => refusals.push(record),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one begin wins: {winners:?}");
        let (winner, fence) = &winners[0];
        assert_eq!(*fence, 1);
        for record in refusals {
            let record = record.expect("a refusal carries the current record");
            assert_eq!(&record.owner, winner);
        }
    }
}

/// A reference model of the store contract: one key's record, transitions written
/// plainly from the contract's table.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// The record the store should hold.
    pub record: Option<Record>,
}

impl Model {
    /// begin, as the contract says.
    pub fn begin(&mut self, request: &Begin) -> Written<u64> {
        let fence = match &self.record {
            Some(record) if record.is_live(request.now_ms) => {
                return Written::Refused(Some(record.clone()))
            }
            Some(record) => record.fence + 1,
            None => 1,
        };
        self.record = Some(request.record(fence));
        Written::Applied(fence)
    }

    /// complete, extend or release: `write` applied iff `attempt` holds the record.
    pub fn held(&mut self, attempt: &Attempt, write: impl FnOnce(&mut Record)) -> Written<()> {
        match &mut self.record {
            Some(record)
                if record.state == State::InProgress
                    && record.owner == attempt.owner
                    && record.fence == attempt.fence =>
            {
                write(record);
                Written::Applied(())
            }
            other => Written::Refused(other.clone()),
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
                let expected = model.held(&at, |r| {
                    r.state = State::Completed;
                    r.outcome = Some(done.outcome);
                    r.data = done.data.clone();
                    r.expires_at_s = done.expires_at_s;
                });
                assert_eq!(
                    store.complete(&at, &done).await.expect("complete"),
                    expected,
                    "{context}"
                );
            }
            Op::Extend { caller } => {
                let c = &callers[*caller];
                let at = attempt(&id, &c.owner, c.fence);
                let lease = lease_at(now);
                let expected = model.held(&at, |r| {
                    r.lease_until_ms = lease.lease_until_ms;
                    r.expires_at_s = lease.expires_at_s;
                });
                assert_eq!(
                    store.extend(&at, &lease).await.expect("extend"),
                    expected,
                    "{context}"
                );
            }
            Op::Release { caller } => {
                let c = &callers[*caller];
                let at = attempt(&id, &c.owner, c.fence);
                let expected = model.held(&at, |r| r.lease_until_ms = 0);
                assert_eq!(
                    store.release(&at).await.expect("release"),
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

/// What [`race`] saw.
#[derive(Debug)]
pub struct Race {
    /// How many times the body ran.
    pub runs: usize,
    /// What each call returned.
    pub results: Vec<Result<u64, crate::Error>>,
}

impl Race {
    /// How many calls returned [`RACE_VALUE`].
    pub fn values(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r, Ok(RACE_VALUE)))
            .count()
    }

    /// How many calls were told [`Error::InProgress`](crate::Error::InProgress).
    pub fn in_progress(&self) -> usize {
        self.results
            .iter()
            .filter(|r| matches!(r, Err(crate::Error::InProgress { .. })))
            .count()
    }
}

/// The value the body of a [`race`] returns.
pub const RACE_VALUE: u64 = 4242;

/// `tasks` real tasks call one key at once through `engine` (whose store is `store`).
/// The body that runs holds until the store has refused begins from all `tasks - 1`
/// other attempts, so the calls really overlap, then returns [`RACE_VALUE`]. Needs a
/// multi-threaded runtime.
pub async fn race<S: Store>(
    engine: &crate::Engine,
    store: &Arc<FaultyStore<S>>,
    namespace: &str,
    tasks: usize,
    wait: Option<std::time::Duration>,
) -> Race {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let runs = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(tokio::sync::Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (engine, store, runs, start) =
                (engine.clone(), store.clone(), runs.clone(), start.clone());
            let namespace = namespace.to_owned();
            tokio::spawn(async move {
                start.wait().await;
                let mut call = crate::Call::new(namespace, "one-key").engine(&engine);
                if let Some(wait) = wait {
                    call = call.wait(wait);
                }
                call.run(|_| async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    store.refused_attempts_reach(tasks - 1).await;
                    Ok::<_, crate::Error>(RACE_VALUE)
                })
                .await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks);
    for handle in handles {
        results.push(handle.await.expect("no racing task panics"));
    }
    Race {
        runs: runs.load(Ordering::SeqCst),
        results,
    }
}
