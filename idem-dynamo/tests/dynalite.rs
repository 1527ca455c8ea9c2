//! On dynalite, what is specific to a server that sends no old item on a refusal:
//! takeover after a lease lapses, a stale owner's completion refused, and the cost of the
//! fallback read. (The race and the storm are in the conformance suite.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{store, unique_table, Server};
use idem_core::store::State;
use idem_core::{Call, EngineBuilder, Error, ManualClock, Store};
use idem_dynamo::testkit::RequestCounter;
use tokio::sync::Notify;

#[tokio::test]
#[ignore = "needs the local DynamoDB servers that scripts/test starts"]
async fn takeover_after_the_lease_lapses_and_the_stale_completion_is_refused() {
    let store = Arc::new(store(Server::Dynalite, &unique_table("takeover"), None).await);
    let clock = ManualClock::default();
    let engine = EngineBuilder::from_arc(store.clone())
        .clock(clock.clone())
        .lease(Duration::from_secs(30))
        .build()
        .unwrap();
    let (started, gate) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let stale = {
        let (engine, started, gate) = (engine.clone(), started.clone(), gate.clone());
        tokio::spawn(async move {
            Call::new("takeover", "k")
                .engine(&engine)
                .max_duration(Duration::from_millis(1)) // no heartbeat keeps it alive
                .run(|ctx| async move {
                    assert_eq!(ctx.fence(), 1);
                    started.notify_one();
                    gate.notified().await;
                    Ok::<_, Error>("stale".to_owned())
                })
                .await
        })
    };
    started.notified().await;
    let busy = Call::new("takeover", "k")
        .engine(&engine)
        .run(|_| async { Ok::<_, Error>(String::new()) })
        .await;
    assert!(matches!(busy, Err(Error::InProgress { .. })), "{busy:?}");
    clock.advance(Duration::from_secs(30));
    let fresh = Call::new("takeover", "k")
        .engine(&engine)
        .run(|ctx| async move { Ok::<_, Error>(format!("fresh at fence {}", ctx.fence())) })
        .await;
    assert_eq!(fresh.unwrap(), "fresh at fence 2");
    gate.notify_one();
    let error = stale.await.unwrap().unwrap_err();
    assert!(matches!(error, Error::LeaseLost { .. }), "{error:?}");
    assert_eq!(error.lost_value::<String>().unwrap().unwrap(), "stale");
    let id = engine.record_id("takeover", "k").unwrap();
    let record = store.read(&id).await.unwrap().unwrap();
    assert_eq!((record.state, record.fence), (State::Completed, 2));
    assert_eq!(record.data.as_deref(), Some(&b"\"fresh at fence 2\""[..]));
}

#[tokio::test]
#[ignore = "needs the local DynamoDB servers that scripts/test starts"]
async fn without_the_old_item_a_duplicate_costs_the_fallback_read() {
    let counter = RequestCounter::new();
    let store = store(Server::Dynalite, &unique_table("counts"), Some(&counter)).await;
    let engine = EngineBuilder::from_arc(Arc::new(store)).build().unwrap();
    counter.reset();
    Call::new("counts", "a")
        .engine(&engine)
        .run(|_| async { Ok::<_, Error>(1u8) })
        .await
        .unwrap();
    assert_eq!(counter.counts(), [("UpdateItem".to_owned(), 2)].into());
    counter.reset();
    assert_eq!(
        Call::new("counts", "a")
            .engine(&engine)
            .run(|_| async { Ok::<_, Error>(2u8) })
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        counter.counts(),
        [("GetItem".to_owned(), 1), ("UpdateItem".to_owned(), 1)].into(),
        "dynalite ignores ALL_OLD: the refused begin is followed by one consistent read"
    );
}
