//! idem beside a hand-written floor, for a store's benchmark: the two run alternated in
//! rounds on one single-threaded runtime, and are compared on p50 and on client CPU per
//! call (the thread's on-CPU time from `/proc/thread-self/schedstat`, Linux only: with
//! one thread, that is all the client's work, its connection's I/O included).

use std::future::Future;
use std::time::{Duration, Instant};

/// The calling thread's time on a CPU so far, in nanoseconds (Linux).
pub fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("/proc/thread-self/schedstat (Linux)")
}

/// One side's samples: per-call latencies and per-round CPU per call.
#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    cpu_per_call_ns: Vec<u64>,
}

impl Samples {
    fn p50(&mut self) -> Duration {
        self.latencies.sort();
        self.latencies[self.latencies.len() / 2]
    }

    fn cpu(&self) -> u64 {
        let mut sorted = self.cpu_per_call_ns.clone();
        sorted.sort();
        sorted[sorted.len() / 2]
    }
}

/// The quartiles (25th, 50th, 75th percentile) of `values`.
fn quartiles(mut values: Vec<f64>) -> [f64; 3] {
    values.sort_by(f64::total_cmp);
    [1, 2, 3].map(|q| values[(values.len() - 1) * q / 4])
}

/// Runs `idem` and `floor` alternated, `rounds` rounds of `calls` calls each (which side
/// goes first alternates too), and prints both p50s, both medians of CPU per call, and
/// their ratios under `label`; then the quartiles of the CPU ratio taken round by round
/// (each idem round over the floor round run beside it, so drift in the machine's speed
/// cancels), which show how far one run's figure can be trusted. Every call gets its
/// own number, counting up from `first`:
/// a benchmark of first calls makes its key from it, one of duplicates ignores it.
pub fn compare<I, IFut, F, FFut>(
    runtime: &tokio::runtime::Runtime,
    label: &str,
    rounds: usize,
    calls: usize,
    first: u64,
    mut idem: I,
    mut floor: F,
) where
    I: FnMut(u64) -> IFut,
    IFut: Future,
    F: FnMut(u64) -> FFut,
    FFut: Future,
{
    let (mut idem_samples, mut floor_samples) = (Samples::default(), Samples::default());
    let mut next = first;
    for round in 0..rounds {
        for idem_side in [round % 2 == 0, round % 2 == 1] {
            let samples = if idem_side {
                &mut idem_samples
            } else {
                &mut floor_samples
            };
            runtime.block_on(async {
                let cpu = thread_cpu_ns();
                for _ in 0..calls {
                    next += 1;
                    let started = Instant::now();
                    if idem_side {
                        idem(next).await;
                    } else {
                        floor(next).await;
                    }
                    samples.latencies.push(started.elapsed());
                }
                samples
                    .cpu_per_call_ns
                    .push((thread_cpu_ns() - cpu) / calls as u64);
            });
        }
    }
    let (idem_p50, floor_p50) = (idem_samples.p50(), floor_samples.p50());
    let (idem_cpu, floor_cpu) = (idem_samples.cpu(), floor_samples.cpu());
    println!(
        "{label}: p50 idem {idem_p50:?}, floor {floor_p50:?} ({:.2}x); client CPU per call idem {:.1} us, floor {:.1} us ({:.2}x); {rounds} alternated rounds of {calls}",
        idem_p50.as_secs_f64() / floor_p50.as_secs_f64(),
        idem_cpu as f64 / 1000.0,
        floor_cpu as f64 / 1000.0,
        idem_cpu as f64 / floor_cpu as f64,
    );
    let paired = idem_samples
        .cpu_per_call_ns
        .iter()
        .zip(&floor_samples.cpu_per_call_ns)
        .map(|(idem, floor)| *idem as f64 / *floor as f64)
        .collect();
    let [low, median, high] = quartiles(paired);
    println!(
        "{label}: client CPU idem / floor round by round: median {median:.3}x, quartiles {low:.3}x to {high:.3}x"
    );
}

/// [`compare`] for first calls (numbered from `first`), then for duplicates (every call
/// numbered 1, which the benchmark called once before on both sides).
pub fn compare_first_and_duplicate<I, IFut, F, FFut>(
    runtime: &tokio::runtime::Runtime,
    rounds: usize,
    calls: usize,
    first: u64,
    idem: I,
    floor: F,
) where
    I: Fn(u64) -> IFut,
    IFut: Future,
    F: Fn(u64) -> FFut,
    FFut: Future,
{
    compare(runtime, "first call", rounds, calls, first, &idem, &floor);
    compare(
        runtime,
        "duplicate",
        rounds,
        calls,
        first,
        |_| idem(1),
        |_| floor(1),
    );
}

/// A benchmark's callgrind mode (`scripts/callgrind-floor`): with `IDEM_BENCH_SIDE` set
/// to `idem-first`, `idem-duplicate`, `floor-first` or `floor-duplicate`, runs
/// `IDEM_BENCH_CALLS` calls (100 by default) of that side only, after one call numbered
/// 1 on each side, and answers `true`; without it, does nothing and answers `false`.
/// First calls are numbered from `first + 2`; duplicates are all numbered 1.
pub fn callgrind_side<I, IFut, F, FFut>(
    runtime: &tokio::runtime::Runtime,
    first: u64,
    idem: I,
    floor: F,
) -> bool
where
    I: Fn(u64) -> IFut,
    IFut: Future,
    F: Fn(u64) -> FFut,
    FFut: Future,
{
    let Ok(side) = std::env::var("IDEM_BENCH_SIDE") else {
        return false;
    };
    let calls: u64 = std::env::var("IDEM_BENCH_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    runtime.block_on(async {
        idem(1).await;
        floor(1).await;
        for n in 2..calls + 2 {
            match side.as_str() {
                "idem-first" => drop(std::hint::black_box(idem(first + n).await)),
                "idem-duplicate" => drop(std::hint::black_box(idem(1).await)),
                "floor-first" => drop(std::hint::black_box(floor(first + n).await)),
                "floor-duplicate" => drop(std::hint::black_box(floor(1).await)),
                other => panic!("unknown IDEM_BENCH_SIDE {other}"),
            }
        }
    });
    true
}

/// Times `iterations` first calls for criterion's `iter_custom`, in batches of 10,000,
/// each batch on a fresh target made by `fresh` (and dropped) outside the timing: a
/// benchmark of first calls then never pays for growing one store to millions of
/// records. Call `n` gets the target and its number.
pub async fn batched<T, R>(
    iterations: u64,
    fresh: impl Fn() -> T,
    call: impl AsyncFn(&T, u64) -> R,
) -> Duration {
    let mut elapsed = Duration::ZERO;
    let mut done = 0;
    while done < iterations {
        let batch = (iterations - done).min(10_000);
        let target = fresh();
        let started = Instant::now();
        for n in done..done + batch {
            std::hint::black_box(call(&target, n).await);
        }
        elapsed += started.elapsed();
        done += batch;
    }
    elapsed
}

/// One batch of `items` new keys numbered from `first`, each body returning its number,
/// through `engine` in `namespace`. Panics unless every item ran.
pub async fn batch_of(engine: &crate::Engine, namespace: &str, first: u64, items: usize) {
    let batch = (first..first + items as u64).fold(
        crate::Batch::new(namespace)
            .engine(engine)
            .concurrency(items),
        |batch, n| batch.item(&n, n),
    );
    let outcomes = batch
        .run(|_, n| async move { Ok::<_, crate::Error>(n) })
        .await;
    for outcome in outcomes {
        assert!(
            matches!(outcome, crate::BatchOutcome::Ran(_)),
            "{outcome:?}"
        );
    }
}

/// The same work as [`batch_of`] done by the per-item loop: one call per key, all sent
/// at once.
pub async fn calls_of(engine: &crate::Engine, namespace: &str, first: u64, items: usize) {
    futures_util::future::join_all((first..first + items as u64).map(|n| {
        crate::Call::new(namespace, &n)
            .engine(engine)
            .run(move |_| async move { Ok::<_, crate::Error>(n) })
    }))
    .await
    .into_iter()
    .for_each(|ran| assert!(ran.is_ok(), "{ran:?}"));
}

/// The store calls one batch of `items` new keys costs, on stores made by `store`
/// counted by [`CountingStore`](super::CountingStore): through the store's own batch
/// forms, through the trait's looping defaults ([`LoopingStore`](super::LoopingStore)),
/// and as single calls ([`calls_of`]). For a store whose batch forms are native, a
/// store call is one round trip.
pub async fn batch_round_trips<S: crate::Store>(
    store: impl Fn() -> S,
    namespace: &str,
    items: usize,
) -> [usize; 3] {
    use super::{CountingStore, LoopingStore};
    use std::sync::atomic::Ordering;

    let first = fastrand::u64(1 << 40..1 << 50);
    let native = CountingStore::new(store());
    let native_calls = native.counter();
    batch_of(&crate::Engine::new(native), namespace, first, items).await;
    let looping = CountingStore::new(store());
    let looping_calls = looping.counter();
    let looping = crate::Engine::new(LoopingStore(looping));
    batch_of(&looping, namespace, first + items as u64, items).await;
    let singles = CountingStore::new(store());
    let single_calls = singles.counter();
    let singles = crate::Engine::new(singles);
    calls_of(&singles, namespace, first + 2 * items as u64, items).await;
    [native_calls, looping_calls, single_calls].map(|calls| calls.load(Ordering::SeqCst))
}

/// The criterion figures of a store's batch benchmark, in the group `batch/<store>`:
/// items per second for batches of 10 and 100 new keys through `engine` (a
/// [`Batch`](crate::Batch) with [`batch_of`], and the per-item loop with [`calls_of`])
/// and through `floor` (a value whose `batch(first, items)` does the same by hand),
/// each side alternated per size. It expands in the benchmark, which depends on
/// criterion (`runtime` is a `&tokio::runtime::Runtime`, `engine` an `&Engine`).
#[macro_export]
macro_rules! batch_throughput {
    ($criterion:expr, $store:literal, $runtime:expr, $engine:expr, $floor:expr) => {{
        let next = ::std::sync::atomic::AtomicU64::new(0);
        let mut group = $criterion.benchmark_group(concat!("batch/", $store));
        group.measurement_time(::std::time::Duration::from_secs(3));
        group.warm_up_time(::std::time::Duration::from_secs(1));
        group.sample_size(20);
        for items in [10usize, 100] {
            group.throughput(::criterion::Throughput::Elements(items as u64));
            let first = || next.fetch_add(items as u64, ::std::sync::atomic::Ordering::Relaxed);
            group.bench_function(format!("{items}/batch"), |b| {
                b.to_async($runtime).iter(|| {
                    $crate::testkit::floor::batch_of($engine, "bench::batch", first(), items)
                })
            });
            group.bench_function(format!("{items}/calls"), |b| {
                b.to_async($runtime).iter(|| {
                    $crate::testkit::floor::calls_of($engine, "bench::batch", first(), items)
                })
            });
            group.bench_function(format!("{items}/floor"), |b| {
                b.to_async($runtime).iter(|| $floor.batch(first(), items))
            });
        }
        group.finish();
    }};
}
