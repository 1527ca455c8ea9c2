//! The store conformance kit (feature `testkit`): the definition of done for a store.
//!
//! A store crate's whole conformance test is one macro call:
//!
//! ```
//! // tests/conformance.rs of a store crate (here with the in-memory store):
//! idem_core::store_conformance!(
//!     factory = || async { idem_core::MemoryStore::new() },
//!     atomic = true,
//! );
//! # fn main() {}
//! ```
//!
//! [`store_conformance!`](crate::store_conformance) expands to one `#[test]` for each
//! rule of the store contract ([`cases`]), a property test ([`run_model`]) that drives
//! random sequences of begin, complete, extend, release, clock moves and crashes against
//! the store and a reference [`Model`] and compares every answer, and, through the
//! engine, the 64-task [`race`] (with and without `wait`) and the duplicate [`storm`]
//! with its per-key invariants. The factory is called once per test (once per sequence
//! in the property test); it may return a fresh store or one on a shared table, since
//! every test uses ids of its own.
//!
//! The files of the kit: `conformance.rs` (the macro), `cases.rs` (one function per
//! rule), `model.rs` (the reference model and the property test), `race.rs`,
//! `storm/` (the duplicate storm and its invariants) and `faults.rs` ([`FaultyStore`],
//! which injects failures into any store).

mod conformance;
mod counting;
mod faults;
pub mod floor;
mod model;
mod race;
mod storm;

pub mod cases;

pub use conformance::{run_batch_race, run_race, run_storm, Sizes};
pub use counting::{CountingStore, LoopingStore};
pub use faults::{Chaos, Fault, FaultyStore, Operation};
pub use model::{check_sequence, run_model, Model, Op};
pub use race::{batch_race, race, BatchRace, Race, RACE_VALUE};
pub use storm::{storm, Downstream, StormConfig, StormReport};

use std::future::Future;
use std::sync::Arc;

use crate::protocol::Terms;
use crate::store::{Attempt, Begin, Completion, Outcome, Owner, RecordId, Renewal, Store};

/// A runtime for one case: multi-threaded, so racing tasks really run in parallel.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
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

/// A record id no other case or run uses: namespace `conformance::{case}`, a random
/// digest.
pub fn fresh_id(case: &str) -> RecordId {
    let mut digest = [0u8; 32];
    digest[..16].copy_from_slice(&uuid::Uuid::new_v4().as_u128().to_le_bytes());
    digest[16..].copy_from_slice(&uuid::Uuid::new_v4().as_u128().to_le_bytes());
    RecordId::new(format!("conformance::{case}"), digest)
}

/// The owner a case names `name` ("a", "b", ...): the same for the same name, distinct
/// for distinct names (the first 16 bytes of the name's SHA-256).
pub fn owner(name: &str) -> Owner {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Owner::from_u128(u128::from_be_bytes(bytes))
}

/// The kit's lease and TTL, from which its requests are computed as the engine
/// computes its own.
pub const TERMS: Terms = Terms {
    lease_ms: LEASE_MS,
    ttl_ms: TTL_MS,
};

/// A begin at `now` with the kit's lease and TTL, as the engine would compute it.
/// What the kit's helpers take as a record id: a [`RecordId`], or a text naming one
/// ([`test_id`]).
pub trait TestId {
    /// The record id.
    fn to_id(&self) -> RecordId;
}

impl TestId for RecordId {
    fn to_id(&self) -> RecordId {
        self.clone()
    }
}

impl TestId for str {
    fn to_id(&self) -> RecordId {
        test_id(self)
    }
}

impl TestId for String {
    fn to_id(&self) -> RecordId {
        test_id(self)
    }
}

impl<T: TestId + ?Sized> TestId for &T {
    fn to_id(&self) -> RecordId {
        (**self).to_id()
    }
}

/// The record id a test names with `text`: a written-out record id as it reads, or
/// `namespace#name` with any name, whose digest is then the name's SHA-256 (the same
/// for the same text).
pub fn test_id(text: &str) -> RecordId {
    use sha2::Digest as _;
    text.parse().unwrap_or_else(|_| {
        let (namespace, name) = text.rsplit_once('#').unwrap_or(("test", text));
        RecordId::new(namespace, sha2::Sha256::digest(name.as_bytes()).into())
    })
}

/// A begin at `now` by the owner named `owner` ([`owner()`]).
pub fn begin_at(id: impl TestId, owner: &str, now: u64, fingerprint: Option<&str>) -> Begin {
    TERMS.begin(
        &id.to_id(),
        self::owner(owner),
        now,
        fingerprint.map(str::to_owned),
    )
}

/// The attempt the owner named `owner` ([`owner()`]) holds with `fence`.
pub fn attempt(id: impl TestId, owner: &str, fence: u64) -> Attempt {
    Attempt {
        id: id.to_id(),
        owner: self::owner(owner),
        fence,
    }
}

/// A completion at `now` with the kit's TTL, its data JSON text.
pub fn completion_at(now: u64, outcome: Outcome, data: Option<&str>) -> Completion {
    let data = data.map(|json| crate::codec::encode_json(json.to_owned()));
    TERMS.completion(now, outcome, data)
}

/// A completion at `now` with the kit's TTL whose data are raw bytes
/// ([`Codec::Bytes`](crate::store::Codec::Bytes)).
pub fn bytes_completion_at(now: u64, data: &[u8]) -> Completion {
    let data = crate::Encoded {
        codec: crate::store::Codec::Bytes,
        data: bytes::Bytes::copy_from_slice(data),
    };
    TERMS.completion(now, Outcome::Ok, Some(data))
}

/// A lease renewed at `now` with the kit's lease and TTL.
pub fn renewal_at(now: u64) -> Renewal {
    TERMS.renewal(now)
}

/// A store together with what cleans up after it: a test's table, schema or key
/// prefix, removed when `cleanup` is dropped, right after the store. Every [`Store`]
/// call goes to `store`, so a conformance factory can return one.
#[derive(Debug)]
pub struct WithCleanup<S, C> {
    /// The store under test.
    pub store: S,
    /// Dropped after the store (fields drop in order): its `Drop` cleans up.
    pub cleanup: C,
}

impl<S, C> std::ops::Deref for WithCleanup<S, C> {
    type Target = S;
    fn deref(&self) -> &S {
        &self.store
    }
}

#[crate::store::async_trait]
impl<S: Store, C: Send + Sync + 'static> Store for WithCleanup<S, C> {
    fn limits(&self) -> crate::store::Limits {
        self.store.limits()
    }
    async fn begin(
        &self,
        request: &Begin,
    ) -> Result<crate::store::Written<u64>, crate::store::StoreError> {
        self.store.begin(request).await
    }
    async fn begin_batch(
        &self,
        requests: &[Begin],
    ) -> Vec<Result<crate::store::Written<u64>, crate::store::StoreError>> {
        self.store.begin_batch(requests).await
    }
    async fn complete(
        &self,
        attempt: &Attempt,
        completion: &Completion,
    ) -> Result<crate::store::Written<()>, crate::store::StoreError> {
        self.store.complete(attempt, completion).await
    }
    async fn complete_batch(
        &self,
        completions: &[(Attempt, Completion)],
    ) -> Vec<Result<crate::store::Written<()>, crate::store::StoreError>> {
        self.store.complete_batch(completions).await
    }
    async fn extend(
        &self,
        attempt: &Attempt,
        renewal: &Renewal,
    ) -> Result<crate::store::Written<()>, crate::store::StoreError> {
        self.store.extend(attempt, renewal).await
    }
    async fn release(
        &self,
        attempt: &Attempt,
    ) -> Result<crate::store::Written<()>, crate::store::StoreError> {
        self.store.release(attempt).await
    }
    async fn journal(
        &self,
        attempt: &Attempt,
        step: &crate::store::StepRecord,
    ) -> Result<crate::store::Written<()>, crate::store::StoreError> {
        self.store.journal(attempt, step).await
    }
    async fn read(
        &self,
        id: &crate::store::RecordId,
    ) -> Result<Option<Arc<crate::store::Record>>, crate::store::StoreError> {
        self.store.read(id).await
    }
    async fn delete(&self, id: &crate::store::RecordId) -> Result<(), crate::store::StoreError> {
        self.store.delete(id).await
    }
}
