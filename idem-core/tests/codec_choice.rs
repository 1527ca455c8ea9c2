//! Which codec a value is recorded with, and that every codec replays what was recorded:
//! a value that serializes as one byte string is recorded as its raw bytes, anything
//! else as JSON; records written as JSON before the bytes codec existed still replay.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use idem_core::store::{Codec, Record};
use idem_core::{Call, Engine, EngineBuilder, Error, ManualClock, MemoryStore, Store};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const NS: &str = "codec::choice";

fn engine() -> (Engine, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let engine = EngineBuilder::from_arc(store.clone())
        .clock(ManualClock::default())
        .build()
        .unwrap();
    (engine, store)
}

async fn stored(engine: &Engine, store: &MemoryStore, key: &str) -> Arc<Record> {
    let id = engine.record_id(NS, key).unwrap();
    store.read(&id).await.unwrap().expect("recorded")
}

/// Runs `value` under `key` twice: the first records, the second replays. Gives the
/// record and the replayed value.
async fn recorded<T>(key: &str, value: T) -> (Arc<Record>, T)
where
    T: Serialize + DeserializeOwned + Clone + Send + 'static,
{
    let (engine, store) = engine();
    let runs = AtomicUsize::new(0);
    for _ in 0..2 {
        let value = value.clone();
        let report = Call::new(NS, key)
            .engine(&engine)
            .run_reported(|_| async {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Error>(value)
            })
            .await
            .unwrap();
        if runs.load(Ordering::SeqCst) == 1 && report.is_replay() {
            return (stored(&engine, &store, key).await, report.value);
        }
    }
    panic!("the second call did not replay");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Wrapped(Bytes);

#[tokio::test]
async fn byte_strings_are_recorded_raw_and_everything_else_as_json() {
    let raw: Vec<u8> = (0..=255).collect();
    let (record, back) = recorded("bytes", Bytes::from(raw.clone())).await;
    assert_eq!(
        (&record.codec, record.data.as_deref()),
        (&Codec::Bytes, Some(&raw[..]))
    );
    assert_eq!(back, raw);

    let (record, back) = recorded("vec", raw.clone()).await;
    assert_eq!(
        (&record.codec, record.data.as_deref()),
        (&Codec::Bytes, Some(&raw[..]))
    );
    assert_eq!(back, raw);

    let (record, back) = recorded("newtype", Wrapped(Bytes::from_static(b"\x00\xff"))).await;
    assert_eq!(record.codec, Codec::Bytes);
    assert_eq!(back, Wrapped(Bytes::from_static(b"\x00\xff")));

    let (record, back) = recorded("some", Some(Bytes::from_static(b"\x01"))).await;
    assert_eq!(record.codec, Codec::Bytes);
    assert_eq!(back, Some(Bytes::from_static(b"\x01")));

    // An empty sequence may be of anything: JSON.
    let (record, back) = recorded("empty vec", Vec::<u8>::new()).await;
    assert_eq!(
        (&record.codec, record.data.as_deref()),
        (&Codec::Json, Some(&b"[]"[..]))
    );
    assert_eq!(back, Vec::<u8>::new());

    // An empty byte string is still a byte string.
    let (record, back) = recorded("empty bytes", Bytes::new()).await;
    assert_eq!(
        (&record.codec, record.data.as_deref()),
        (&Codec::Bytes, Some(&b""[..]))
    );
    assert_eq!(back, Bytes::new());

    for (key, json) in [("u64", "7"), ("text", "\"seven\"")] {
        let (engine, store) = engine();
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        Call::new(NS, key)
            .engine(&engine)
            .run(|_| async { Ok::<_, Error>(value) })
            .await
            .unwrap();
        let record = stored(&engine, &store, key).await;
        assert_eq!(
            (&record.codec, record.data.as_deref()),
            (&Codec::Json, Some(json.as_bytes()))
        );
    }
    let (record, back) = recorded("numbers", vec![1u16, 300]).await;
    assert_eq!(
        (&record.codec, record.data.as_deref()),
        (&Codec::Json, Some(&b"[1,300]"[..]))
    );
    assert_eq!(back, vec![1, 300]);
    let (record, _) = recorded("tuple", (1u8, 2u8)).await;
    assert_eq!(record.codec, Codec::Json);
}

#[tokio::test]
async fn a_json_record_of_bytes_from_before_replays_and_a_mismatch_is_a_decode_error() {
    let (engine, store) = engine();
    let runs = AtomicUsize::new(0);
    let call = |key: &'static str| {
        Call::new(NS, key).engine(&engine).run(|_| async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(vec![9u8])
        })
    };
    call("old").await.unwrap();
    // As idem 0.1 recorded a `Vec<u8>`: a JSON array, codec `json`.
    let mut old = Arc::unwrap_or_clone(stored(&engine, &store, "old").await);
    old.codec = Codec::Json;
    old.data = Some(Bytes::from_static(b"[1,2,255]"));
    store.put_raw(old);
    assert_eq!(call("old").await.unwrap(), vec![1, 2, 255]);

    // Raw bytes replayed as a number: a decode error, and the body never runs again.
    let (record, _) = recorded("mismatch", Bytes::from_static(b"\x07")).await;
    let mut mismatch = Arc::unwrap_or_clone(record);
    mismatch.id = engine.record_id(NS, "number").unwrap();
    mismatch.expires_at_s = u64::MAX / 1000;
    store.put_raw(mismatch);
    let number = Call::new(NS, "number")
        .engine(&engine)
        .run(|_| async {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(7u64)
        })
        .await;
    match number {
        Err(Error::Decode { reason, .. }) => assert!(reason.contains("byte array"), "{reason}"),
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// Found by review: a type whose `Deserialize` reads raw bytes as another value (an
/// untagged enum tries its variants in order) would replay that value. Such a value is
/// recorded as JSON, and replays as itself.
#[tokio::test]
async fn a_value_that_would_not_read_back_from_its_bytes_is_recorded_as_json() {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    enum Payload {
        Binary(Vec<u8>),
        Text(String),
    }
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    enum Either {
        Binary(Vec<u8>),
        Number(u64),
    }
    let (record, back) = recorded("untagged text", Payload::Binary(b"hi".to_vec())).await;
    assert_eq!(record.codec, Codec::Json);
    assert_eq!(back, Payload::Binary(b"hi".to_vec()));
    let (record, back) = recorded("untagged number", Either::Binary(vec![1, 2, 255])).await;
    assert_eq!(record.codec, Codec::Json);
    assert_eq!(back, Either::Binary(vec![1, 2, 255]));
    // A plain byte string still reads back as itself: bytes.
    let (record, _) = recorded("plain", vec![1u8, 2, 255]).await;
    assert_eq!(record.codec, Codec::Bytes);
}

/// A byte string whose `Deserialize` keeps the replayed record's bytes without copying
/// them, through `idem_core::replayed_bytes`, as idem-http's recorded responses do.
#[derive(Debug, Clone, PartialEq)]
struct Shared(Bytes);

impl Serialize for Shared {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Shared {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Shared;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, bytes: &[u8]) -> Result<Shared, E> {
                Ok(Shared(
                    idem_core::replayed_bytes(bytes)
                        .unwrap_or_else(|| Bytes::copy_from_slice(bytes)),
                ))
            }
        }
        deserializer.deserialize_bytes(Visit)
    }
}

#[tokio::test]
async fn a_replay_can_share_the_records_bytes_and_only_during_its_decode() {
    let (engine, store) = engine();
    let value = Shared(Bytes::from(vec![7u8; 4096]));
    let run = || {
        Call::new(NS, "shared")
            .engine(&engine)
            .run(|_| async { Ok::<_, Error>(value.clone()) })
    };
    assert_eq!(run().await.unwrap(), value);
    let record = stored(&engine, &store, "shared").await;
    assert_eq!(record.codec, Codec::Bytes);
    let data = record.data.as_ref().unwrap();
    let replayed = run().await.unwrap();
    assert_eq!(replayed, value);
    assert_eq!(
        replayed.0.as_ptr_range(),
        data.as_ptr_range(),
        "the replayed value is the record's own bytes"
    );
    // Outside a decode, nothing is shared, not even the record's bytes.
    assert!(
        idem_core::replayed_bytes(data).is_none(),
        "the record's bytes are not shared once its decode ended"
    );
    assert!(idem_core::replayed_bytes(&value.0).is_none());
}
