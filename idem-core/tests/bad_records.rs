//! Whatever a store holds for a key (any state, outcome, format, codec and bytes), a
//! call never panics, never loses the record, and never runs the body over a live one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use idem_core::store::{Codec, Outcome, Record, State};
use idem_core::{Call, Clock, Encoded, EngineBuilder, Error, ManualClock, MemoryStore, Store};
use proptest::prelude::*;

const NS: &str = "bad::records";

fn record() -> impl Strategy<Value = (Record, bool)> {
    (
        prop_oneof![Just(State::InProgress), Just(State::Completed)],
        prop::option::of(prop_oneof![
            Just(Outcome::Ok),
            Just(Outcome::Err),
            Just(Outcome::NotStored)
        ]),
        prop::option::of(prop_oneof![
            prop::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from),
            Just(Bytes::from_static(b"\"value\"")),
            Just(Bytes::from_static(b"{\"Declined\":null}")),
        ]),
        0u32..4,
        prop_oneof![Just("json".to_owned()), Just("bytes".to_owned()), ".{0,6}"]
            .prop_map(|name| Codec::from_stored(&name)),
        prop::option::of(prop_oneof![Just("fp".to_owned()), ".{0,4}"]),
        any::<bool>(),
    )
        .prop_map(|(state, outcome, data, format, codec, fingerprint, live)| {
            let id =
                idem_core::key::id_from_digest(NS, &idem_core::key::digest(NS, br#""k""#, None))
                    .expect("a record id");
            let now = ManualClock::default().now_ms();
            let (lease_until_ms, expires_at_s) = if live {
                (now + 30_000, now / 1000 + 3600)
            } else {
                (now - 1, now / 1000)
            };
            let record = Record {
                id,
                state,
                owner: idem_core::store::Owner::from_u128(7),
                fence: 3,
                lease_until_ms,
                expires_at_s,
                fingerprint,
                outcome,
                data,
                format,
                codec,
                steps: idem_core::store::Steps::new(),
            };
            (record, live)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_stored_record_gives_a_documented_answer((stored, live) in record()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let store = Arc::new(MemoryStore::new());
            store.put_raw(stored.clone());
            let engine = EngineBuilder::from_arc(store.clone()).clock(ManualClock::default()).build().unwrap();
            let runs = AtomicUsize::new(0);
            let result = Call::new(NS, "k")
                .engine(&engine)
                .fingerprint("fp")
                .run(|_| async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<String, Error>("fresh".into())
                })
                .await;
            let ran = runs.load(Ordering::SeqCst) == 1;
            let after = store.read(&stored.id).await.unwrap().expect("the record is never lost");
            if live {
                prop_assert!(!ran, "the body ran over a live record: {:?}", stored);
                prop_assert_eq!(&*after, &stored, "a live record is never changed by a duplicate");
                match (&result, stored.state) {
                    (Err(Error::InProgress { .. } | Error::PayloadMismatch { .. }), State::InProgress) => {}
                    (Ok(_) | Err(Error::Decode { .. } | Error::ResultNotStored { .. } | Error::RecordedError { .. } | Error::PayloadMismatch { .. }), State::Completed) => {}
                    (other, state) => prop_assert!(false, "undocumented answer {:?} for a live {:?} record", other, state),
                }
                if let Ok(value) = &result {
                    let recorded = Encoded { codec: stored.codec.clone(), data: stored.data.clone().unwrap() };
                    let decoded = recorded.decode::<String>();
                    prop_assert_eq!(decoded.as_ref(), Ok(value), "a replay is what the record holds");
                }
            } else {
                prop_assert!(ran, "a free record is taken over");
                prop_assert_eq!(result.unwrap(), "fresh");
                prop_assert_eq!(after.fence, stored.fence + 1);
            }
            Ok(())
        })?;
    }
}
