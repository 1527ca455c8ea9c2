//! Timing: heartbeats scheduled from the lease they renew, a late heartbeat that cannot
//! revive a released lease, a lease too short for the store timeout, and a begin that
//! answers after its lease lapsed. Store latency is simulated on the engine's manual
//! clock, so every boundary is crossed deterministically.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idem_core::store::{
    async_trait, Attempt, Begin, Completion, Limits, Renewal, Store, StoreError, Written,
};
use idem_core::{Call, Clock, EngineBuilder, Error, ManualClock, MemoryStore, RecordId, Sleep};
use tokio::sync::{oneshot, Mutex, Notify};

const NS: &str = "tests::timing";
const LEASE: Duration = Duration::from_secs(30);

/// Every request takes `latency` on the engine's clock before the store applies it, as
/// a request that spends that long on the network would.
struct Slow {
    inner: Arc<MemoryStore>,
    clock: ManualClock,
    latency: Duration,
}

#[async_trait]
impl Store for Slow {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }
    async fn begin(&self, request: &Begin) -> Result<Written<u64>, StoreError> {
        self.clock.sleep(self.latency).await;
        self.inner.begin(request).await
    }
    async fn complete(&self, a: &Attempt, c: &Completion) -> Result<Written<()>, StoreError> {
        self.clock.sleep(self.latency).await;
        self.inner.complete(a, c).await
    }
    async fn extend(&self, a: &Attempt, r: &Renewal) -> Result<Written<()>, StoreError> {
        self.clock.sleep(self.latency).await;
        self.inner.extend(a, r).await
    }
    async fn release(&self, a: &Attempt) -> Result<Written<()>, StoreError> {
        self.clock.sleep(self.latency).await;
        self.inner.release(a).await
    }
    async fn read(
        &self,
        id: &RecordId,
    ) -> Result<Option<Arc<idem_core::store::Record>>, StoreError> {
        self.inner.read(id).await
    }
    async fn delete(&self, id: &RecordId) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }
}

/// Another caller's clock: `skew` ahead of the shared manual clock.
struct Skewed {
    base: ManualClock,
    skew: Duration,
}

impl Clock for Skewed {
    fn now_ms(&self) -> u64 {
        self.base.now_ms() + self.skew.as_millis() as u64
    }
    fn sleep(&self, duration: Duration) -> Sleep {
        self.base.sleep(duration)
    }
}

/// Lets spawned tasks run up to their next wait.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// Moves the clock one second at a time, letting the tasks react after each step.
async fn advance(clock: &ManualClock, seconds: u64) {
    for _ in 0..seconds {
        clock.advance(Duration::from_secs(1));
        settle().await;
    }
}

/// Requests that take 5 s, a second caller 14 s ahead: inside the margin
/// (`lease - lease/3 - latency` = 15 s). The first heartbeat is due 10 s after the
/// lease's start, so it lands at 15 s, before the second caller's clock reads the old
/// lease's end. (Scheduled from the body's start, 5 s later, it landed at 20 s and the
/// second caller took over at 17 s while the first still ran.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_begin_does_not_delay_the_first_heartbeat_past_the_margin() {
    let clock = ManualClock::default();
    let shared = Arc::new(MemoryStore::new());
    let first = EngineBuilder::from_arc(Arc::new(Slow {
        inner: shared.clone(),
        clock: clock.clone(),
        latency: Duration::from_secs(5),
    }))
    .clock(clock.clone())
    .lease(LEASE)
    .build()
    .unwrap();
    let second = EngineBuilder::from_arc(shared.clone())
        .clock(Skewed {
            base: clock.clone(),
            skew: Duration::from_secs(14),
        })
        .lease(LEASE)
        .build()
        .unwrap();

    let finish = Arc::new(Notify::new());
    let holder = tokio::spawn({
        let (first, finish) = (first.clone(), finish.clone());
        async move {
            Call::new(NS, "slow")
                .engine(&first)
                .run(|ctx| async move {
                    finish.notified().await;
                    Ok::<_, Error>(ctx.lease_lost())
                })
                .await
        }
    });
    settle().await;
    advance(&clock, 17).await;

    let second_ran = AtomicBool::new(false);
    let duplicate = Call::new(NS, "slow")
        .engine(&second)
        .run(|_| async {
            second_ran.store(true, Ordering::SeqCst);
            Ok::<_, Error>(false)
        })
        .await;
    assert!(
        !second_ran.load(Ordering::SeqCst),
        "the second caller ran its body while the first held the key"
    );
    assert!(
        matches!(duplicate, Err(Error::InProgress { .. })),
        "{duplicate:?}"
    );

    finish.notify_one();
    // Completion takes 5 s of store latency too.
    let lease_lost = tokio::spawn({
        let clock = clock.clone();
        async move { advance(&clock, 6).await }
    });
    assert!(
        !holder.await.unwrap().unwrap(),
        "the first lease was never lost"
    );
    lease_lost.await.unwrap();
}

/// A begin that answers only after the lease it took has lapsed: the body does not
/// start (another caller may hold the key by then); the key is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_never_starts_on_a_lease_that_lapsed_before_begin_answered() {
    let clock = ManualClock::default();
    let shared = Arc::new(MemoryStore::new());
    let slow = Arc::new(Slow {
        inner: shared.clone(),
        clock: clock.clone(),
        latency: LEASE + Duration::from_secs(1),
    });
    let engine = EngineBuilder::from_arc(slow)
        .clock(clock.clone())
        .lease(LEASE)
        .build()
        .unwrap();
    let ran = Arc::new(AtomicBool::new(false));
    let call = tokio::spawn({
        let (engine, ran) = (engine.clone(), ran.clone());
        async move {
            Call::new(NS, "lapsed")
                .engine(&engine)
                .run(|_| async move {
                    ran.store(true, Ordering::SeqCst);
                    Ok::<_, Error>(())
                })
                .await
        }
    });
    settle().await;
    // Begin answers at 31 s; the release after it takes 31 s more.
    advance(&clock, 62).await;
    let result = call.await.unwrap();
    assert!(
        !ran.load(Ordering::SeqCst),
        "the body ran on a lapsed lease"
    );
    match &result {
        Err(Error::Store { source, .. }) => {
            assert!(source.is_transient(), "{source}");
            assert!(source.to_string().contains("lapsed"), "{source}");
        }
        other => panic!("expected a transient store error, got {other:?}"),
    }
    let id = engine.record_id(NS, "lapsed").unwrap();
    let record = shared.read(&id).await.unwrap().expect("the record stays");
    assert_eq!(record.lease_until_ms, 0, "the key was released");
}

/// An extend whose request the engine gave up on (store timeout) and that reaches the
/// store only after the release.
struct LateExtend {
    inner: Arc<MemoryStore>,
    /// Set when a heartbeat was sent.
    sent: Arc<Notify>,
    /// The heartbeat, held back until the test lets it land.
    held_back: Mutex<Option<(Attempt, Renewal)>>,
}

#[async_trait]
impl Store for LateExtend {
    fn limits(&self) -> Limits {
        self.inner.limits()
    }
    async fn begin(&self, request: &Begin) -> Result<Written<u64>, StoreError> {
        self.inner.begin(request).await
    }
    async fn complete(&self, a: &Attempt, c: &Completion) -> Result<Written<()>, StoreError> {
        self.inner.complete(a, c).await
    }
    async fn extend(&self, a: &Attempt, r: &Renewal) -> Result<Written<()>, StoreError> {
        *self.held_back.lock().await = Some((a.clone(), *r));
        self.sent.notify_one();
        // The answer never comes back: the engine's timeout gives up on it.
        std::future::pending().await
    }
    async fn release(&self, a: &Attempt) -> Result<Written<()>, StoreError> {
        self.inner.release(a).await
    }
    async fn read(
        &self,
        id: &RecordId,
    ) -> Result<Option<Arc<idem_core::store::Record>>, StoreError> {
        self.inner.read(id).await
    }
    async fn delete(&self, id: &RecordId) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }
}

#[derive(Debug)]
enum Failed {
    Body,
    Idem(#[allow(dead_code)] Error),
}

impl From<Error> for Failed {
    fn from(error: Error) -> Self {
        Failed::Idem(error)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_that_lands_after_the_release_does_not_revive_the_lease() {
    let clock = ManualClock::default();
    let shared = Arc::new(MemoryStore::new());
    let sent = Arc::new(Notify::new());
    let store = Arc::new(LateExtend {
        inner: shared.clone(),
        sent: sent.clone(),
        held_back: Mutex::new(None),
    });
    let engine = EngineBuilder::from_arc(store.clone())
        .clock(clock.clone())
        .lease(LEASE)
        .store_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let (beat_sent, body_may_fail) = oneshot::channel::<()>();
    let call = tokio::spawn({
        let engine = engine.clone();
        async move {
            Call::new(NS, "late-beat")
                .engine(&engine)
                .run(|_| async move {
                    body_may_fail.await.unwrap();
                    Err::<(), _>(Failed::Body)
                })
                .await
        }
    });
    settle().await;
    clock.advance(LEASE / 3);
    sent.notified().await;
    beat_sent.send(()).unwrap();
    // The body fails; the engine waits for the heartbeat until its timeout, then
    // releases.
    assert!(matches!(call.await.unwrap(), Err(Failed::Body)));
    let id = engine.record_id(NS, "late-beat").unwrap();
    assert_eq!(shared.read(&id).await.unwrap().unwrap().lease_until_ms, 0);

    // Now the heartbeat reaches the store.
    let (attempt, renewal) = store.held_back.lock().await.take().expect("a heartbeat");
    let landed = shared.extend(&attempt, &renewal).await.unwrap();
    assert!(matches!(landed, Written::Refused(_)), "{landed:?}");
    assert_eq!(shared.read(&id).await.unwrap().unwrap().lease_until_ms, 0);

    // A retry runs the body at once instead of being told the key is in progress.
    let retry = Call::new(NS, "late-beat")
        .engine(&engine)
        .run(|_| async { Ok::<_, Error>(7) })
        .await;
    assert_eq!(retry.unwrap(), 7);
}

#[tokio::test]
async fn a_lease_too_short_for_the_store_timeout_is_refused_when_built_and_when_called() {
    let too_short = EngineBuilder::from_arc(Arc::new(MemoryStore::new()))
        .lease(Duration::from_secs(6))
        .store_timeout(Duration::from_secs(5))
        .build();
    match too_short {
        Err(Error::Config(message)) => assert!(message.contains("store timeout"), "{message}"),
        other => panic!("expected a config error, got {other:?}"),
    }
    let engine = EngineBuilder::from_arc(Arc::new(MemoryStore::new()))
        .store_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let ran = AtomicBool::new(false);
    let call = Call::new(NS, "short")
        .engine(&engine)
        .lease(Duration::from_secs(7))
        .run(|_| async {
            ran.store(true, Ordering::SeqCst);
            Ok::<_, Error>(())
        })
        .await;
    assert!(matches!(call, Err(Error::Config(_))), "{call:?}");
    assert!(!ran.load(Ordering::SeqCst));
    // 7.6 s is longer than 1.5 x 5 s: accepted.
    Call::new(NS, "long-enough")
        .engine(&engine)
        .lease(Duration::from_millis(7600))
        .run(|_| async { Ok::<_, Error>(()) })
        .await
        .unwrap();
}
