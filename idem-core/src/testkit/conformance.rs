//! `store_conformance!`: every test a store must pass, from one macro call.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{batch_race, race, runtime, storm, FaultyStore, StormConfig};
use crate::store::Store;
use crate::EngineBuilder;

/// Expands to the whole conformance suite for a store: see the
/// [module docs](crate::testkit).
///
/// - `factory`: a closure returning a future of the store (`|| async { ... }`), called
///   once per test.
/// - `atomic`: whether the store's conditional writes are atomic under concurrency.
///   With `false` (an emulator), the tests that race writers (the concurrent begins,
///   the engine race and the storm) go into a module `not_atomic` and are emitted as
///   ignored, since libtest has no runtime skip; a test command that runs ignored tests
///   leaves them out with `--skip not_atomic::`.
/// - `sizes` (optional): a [`Sizes`] expression, for a store whose server is slower
///   than memory.
/// - `ignore = "reason"` (optional, last): every test is emitted as
///   `#[ignore = "reason"]`, for a store that needs a server a plain `cargo test` does
///   not start.
///
/// ```
/// // A slower store: a smaller storm.
/// idem_core::store_conformance!(
///     factory = || async { idem_core::MemoryStore::new() },
///     atomic = true,
///     sizes = idem_core::testkit::Sizes { storm_events: 300, ..Default::default() },
/// );
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! store_conformance {
    (factory = $factory:expr, atomic = $atomic:tt $(, ignore = $reason:literal)? $(,)?) => {
        $crate::store_conformance!(
            factory = $factory,
            atomic = $atomic,
            sizes = $crate::testkit::Sizes::default()
            $(, ignore = $reason)?
        );
    };
    (factory = $factory:expr, atomic = true, sizes = $sizes:expr $(, ignore = $reason:literal)? $(,)?) => {
        $crate::store_conformance!(@cases $factory, { $(#[ignore = $reason])? });
        $crate::store_conformance!(@racing $factory, $sizes, { $(#[ignore = $reason])? });
    };
    (factory = $factory:expr, atomic = false, sizes = $sizes:expr $(, ignore = $reason:literal)? $(,)?) => {
        $crate::store_conformance!(@cases $factory, { $(#[ignore = $reason])? });
        /// Tests that race writers: this store's conditional writes are not atomic.
        mod not_atomic {
            #[allow(unused_imports)]
            use super::*;
            $crate::store_conformance!(@racing $factory, $sizes, {
                #[ignore = "this store's conditional writes are not atomic under concurrency, so races are judged on another backend"]
            });
        }
    };
    (@racing $factory:expr, $sizes:expr, { $($ignore:tt)* }) => {
        #[test]
        $($ignore)*
        fn concurrent_begins_have_one_winner() {
            $crate::testkit::run_case($factory, $crate::testkit::cases::concurrent_begins_have_one_winner);
        }
        #[test]
        $($ignore)*
        fn engine_race_runs_the_body_once() {
            $crate::testkit::run_race($factory, $sizes, false);
        }
        #[test]
        $($ignore)*
        fn engine_race_with_wait_gives_every_caller_the_value() {
            $crate::testkit::run_race($factory, $sizes, true);
        }
        #[test]
        $($ignore)*
        fn batch_racing_single_calls_runs_each_body_once() {
            $crate::testkit::run_batch_race($factory);
        }
        #[test]
        $($ignore)*
        fn guarantee_holds_in_a_duplicate_storm() {
            $crate::testkit::run_storm($factory, $sizes);
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
            extend_after_release_refused,
            complete_records_each_outcome,
            complete_keeps_bytes_as_bytes,
            delete_removes_record_and_resets_fence,
            begin_batch_answers_as_begin_alone,
            complete_batch_answers_as_complete_alone,
            journal_writes_steps_by_name,
            stale_journal_refused,
            journal_survives_takeover,
            complete_empties_the_journal,
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

/// The sizes of the conformance suite's engine tests, for [`store_conformance!`]
/// (`sizes = Sizes { .. }`).
///
/// [`store_conformance!`]: crate::store_conformance
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// How many tasks call one key at once in the engine race. 64.
    pub race_tasks: usize,
    /// How many distinct events the duplicate storm delivers. 1,000.
    pub storm_events: usize,
    /// How many deliveries of the storm run at once. 32.
    pub storm_concurrency: usize,
    /// The storm's seed.
    pub storm_seed: u64,
}

impl Default for Sizes {
    fn default() -> Self {
        Sizes {
            race_tasks: 64,
            storm_events: 1000,
            storm_concurrency: 32,
            storm_seed: 20261127,
        }
    }
}

/// The engine race on a store made by `factory`: [`race`] with `sizes.race_tasks`
/// tasks. Without `wait`, the body runs once, one caller gets its value and every other
/// is told the key is in progress; with `wait`, every caller gets the value. A later
/// call replays it.
pub fn run_race<F, Fut, S>(factory: F, sizes: Sizes, wait: bool)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    runtime().block_on(async move {
        let store = Arc::new(FaultyStore::new(factory().await));
        let engine = EngineBuilder::from_arc(store.clone()).build().unwrap();
        let namespace = format!("race::{}", uuid::Uuid::new_v4().simple());
        let tasks = sizes.race_tasks;
        let wait = wait.then_some(Duration::from_secs(60));
        let race = race(&engine, &store, &namespace, tasks, wait).await;
        assert_eq!(race.runs, 1, "the body ran once: {:?}", race.results);
        if wait.is_some() {
            assert_eq!(race.values(), tasks, "{:?}", race.results);
        } else {
            assert_eq!(
                (race.values(), race.in_progress()),
                (1, tasks - 1),
                "one value, every other caller told in progress: {:?}",
                race.results
            );
        }
        let later = crate::Call::new(namespace, "one-key")
            .engine(&engine)
            .run(|_| async { Ok::<u64, crate::Error>(0) })
            .await;
        assert_eq!(
            later.unwrap(),
            super::RACE_VALUE,
            "a later call replays the value"
        );
    });
}

/// Batches racing single calls on the same keys ([`batch_race`], 4 batches of 16 keys
/// and 2 calls of each key), on a store made by `factory` and used as it is (its own
/// batch forms): every key's body runs exactly once, every outcome is ran, replayed or
/// in progress elsewhere, and a later batch replays every key.
pub fn run_batch_race<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    runtime().block_on(async move {
        let engine = crate::Engine::new(factory().await);
        let namespace = format!("batch-race::{}", uuid::Uuid::new_v4().simple());
        let keys = 16;
        let race = batch_race(&engine, &namespace, keys, 4, 2).await;
        assert_eq!(race.runs, vec![1; keys], "each body ran once: {race:?}");
        assert_eq!(race.ran.0 + race.ran.1, keys, "{race:?}");
        assert!(race.unexpected.is_empty(), "{race:?}");
        let later = (0..keys).fold(crate::Batch::new(namespace).engine(&engine), |batch, key| {
            batch.item(&format!("key-{key}"), key)
        });
        let outcomes = later
            .run(|_, _| async { Ok::<u64, crate::Error>(0) })
            .await;
        for (key, outcome) in outcomes.iter().enumerate() {
            assert!(
                matches!(outcome, crate::BatchOutcome::Replayed(report) if report.value == key as u64),
                "key {key}: {outcome:?}"
            );
        }
    });
}

/// The duplicate [`storm`] on a store made by `factory`, sized by `sizes`: every
/// invariant holds on every key, every event is served, and the storm really stormed
/// (crashes, failures, duplicates that ran again, callers told in progress, store
/// faults all happened).
pub fn run_storm<F, Fut, S>(factory: F, sizes: Sizes)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    runtime().block_on(async move {
        let store = Arc::new(FaultyStore::new(factory().await));
        let events = sizes.storm_events;
        let report = storm(
            store,
            StormConfig {
                events,
                concurrency: sizes.storm_concurrency,
                seed: sizes.storm_seed,
                ..StormConfig::default()
            },
        )
        .await;
        println!("{report}");
        assert!(report.violations.is_empty(), "{report}");
        assert_eq!(
            report.counts["events served (some Ok)"], events,
            "every event was served: {report}"
        );
        // The storm stormed. The floors sit well below what the default rates give
        // (about 1 in 20 runs crashes, 1 in 20 fails, 3 in 10 events are duplicated).
        for (count, at_least) in [
            ("bodies aborted (crash)", events / 100),
            ("bodies failed (released)", events / 100),
            ("extra body runs", events / 50),
        ] {
            assert!(report.counts[count] >= at_least.max(1), "{count}: {report}");
        }
        for (error, at_least) in [("in_progress", events / 50), ("store", events / 500)] {
            let seen = report.errors.get(error).copied().unwrap_or(0);
            assert!(seen >= at_least.max(1), "error {error}: {report}");
        }
    });
}
