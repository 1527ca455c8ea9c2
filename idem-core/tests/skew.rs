//! Clock skew between callers. The lease excludes a second holder only while the
//! callers' clocks differ by less than `lease - heartbeat interval - one request's
//! latency`: 30 s - 10 s - (here, no latency) = 20 s with the defaults. These tests
//! stand on both sides of that margin.

use std::sync::Arc;
use std::time::Duration;

use idem_core::{Call, Engine, EngineBuilder, Error, ManualClock, MemoryStore};
use tokio::sync::Notify;

const T0: u64 = 1_704_067_200_000;
const LEASE: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_millis(100);

fn engine(store: &Arc<MemoryStore>, clock: &ManualClock) -> Engine {
    EngineBuilder::from_arc(store.clone())
        .clock(clock.clone())
        .lease(LEASE)
        .build()
        .unwrap()
}

/// A holds the key with a long body (heartbeats every 10 s on its clock) for a minute;
/// B, whose clock runs `skew` ahead, tries to take the key every 100 ms. Returns when,
/// on A's clock, B got it, if it did.
async fn second_holder_with_skew(skew: Duration) -> Option<Duration> {
    let store = Arc::new(MemoryStore::new());
    let a_clock = ManualClock::new(T0);
    let b_clock = ManualClock::new(T0 + skew.as_millis() as u64);
    let (a, b) = (engine(&store, &a_clock), engine(&store, &b_clock));
    let done = Arc::new(Notify::new());
    let holder = {
        let (a, done) = (a.clone(), done.clone());
        tokio::spawn(async move {
            Call::new("skew", "k")
                .engine(&a)
                .max_duration(Duration::from_secs(3600))
                .run(|_| async move {
                    done.notified().await;
                    Ok::<_, Error>(1u8)
                })
                .await
        })
    };
    tokio::task::yield_now().await;
    let mut stolen = None;
    for step in 1..=600u32 {
        a_clock.advance(STEP);
        b_clock.advance(STEP);
        // Let A's heartbeat, if one is due, reach the store.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        let attempt = Call::new("skew", "k")
            .engine(&b)
            .run(|_| async { Ok::<_, Error>(2u8) })
            .await;
        if attempt.is_ok() {
            stolen = Some(STEP * step);
            break;
        }
    }
    done.notify_one();
    let _ = holder.await;
    stolen
}

#[tokio::test]
async fn within_the_margin_the_lease_holds() {
    for skew in [
        Duration::ZERO,
        Duration::from_secs(10),
        Duration::from_secs(19),
    ] {
        assert_eq!(second_holder_with_skew(skew).await, None, "skew {skew:?}");
    }
}

#[tokio::test]
async fn past_the_margin_a_second_caller_takes_the_key() {
    // Documented, not hoped for: a clock 21 s ahead sees A's lease end before A renews.
    let stolen = second_holder_with_skew(Duration::from_secs(21)).await;
    assert!(
        stolen.is_some(),
        "a skew past the margin lets a second holder in"
    );
}
