//! The function API: one guarded call, built ([`Call`]) and run.
//!
//! An attempt goes through phases, one file each, every one an `impl` of the attempt
//! ([`guard`], with what they share: the timed store call, the events):
//! [`settings`] resolves the call; [`take`] takes the key (begin, its retries,
//! waiting); [`heartbeat`] keeps it while the body runs; [`finish`] records or releases
//! what the body ended with; [`replay`] answers a duplicate from a completed record;
//! [`settle`] settles a commit whose answer was lost. [`attempt`] runs them in order,
//! for [`Call::run`] and [`Call::run_in_transaction`] alike: they differ only in the
//! [`destination`] of the completion. [`policy`] chooses which errors are recorded.

mod attempt;
mod batch;
mod destination;
mod finish;
mod guard;
mod heartbeat;
mod policy;
mod replay;
mod report;
mod settings;
mod settle;
mod take;

use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::context::Context;
use crate::engine::Engine;
use crate::error::Error;
use crate::key;
use crate::store::{Isolation, Transaction};
use destination::{Destination, InStore};
use settings::{Resolved, Settings};

pub use crate::key::Namespace;
pub use batch::{Batch, BatchOutcome, DEFAULT_BATCH_CONCURRENCY};
pub(crate) use guard::store_call;
pub use policy::{Described, ErrorPolicy, NoErrorReplay, ReplayErrors};
pub use report::{Report, Source};

/// One guarded call: the function API, which the `#[idempotent]` macro only fills in.
///
/// The key is encoded when the call is built, so it may borrow what the body later
/// moves. Settings not given here come from the engine's [`Defaults`](crate::Defaults).
///
/// ```
/// use idem_core::{Call, Engine, Error, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// let engine = Engine::new(MemoryStore::new());
/// for _ in 0..2 {
///     let group: String = Call::new("groups::create", "req-42")
///         .engine(&engine)
///         .run(|ctx| async move {
///             // Pass ctx.token() downstream as the cloud API's idempotency key.
///             Ok::<_, Error>(format!("group-for-{}", &ctx.token()[..8]))
///         })
///         .await?;
///     assert!(group.starts_with("group-for-"));
/// }
/// # Ok(()) }
/// ```
#[must_use = "a call does nothing until it is run"]
pub struct Call<P = NoErrorReplay> {
    settings: Settings,
    errors: P,
}

/// A value idem can record and replay: any `Serialize + DeserializeOwned` type. Written
/// as a bound on a generic function's value type (`T: idem::Recordable`); the compiler
/// suggests it when such a bound is missing.
///
/// A value that serializes as one byte string (`bytes::Bytes` with its `serde` feature,
/// `serde_bytes::ByteBuf`, a non-empty `Vec<u8>`, also inside a newtype or `Some`), and
/// reads back from those bytes as itself (checked as it is recorded), is recorded as its
/// raw bytes (the `bytes` codec: a DynamoDB Binary attribute, a
/// PostgreSQL `bytea`, a Redis string), never base64; any other value as JSON. Bytes
/// *inside* a struct or tuple are JSON too, an array of numbers (about 3.5 characters
/// per byte): return a large binary payload on its own, not as a field.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), idem_core::Error> {
/// use bytes::Bytes;
/// use idem_core::{Call, Engine, MemoryStore};
///
/// let engine = Engine::new(MemoryStore::new());
/// let render = || async { Ok::<_, idem_core::Error>(Bytes::from_static(b"%PDF-1.7 ...")) };
/// let first = Call::new("invoices::render", "inv-7").engine(&engine).run(|_| render()).await?;
/// let again = Call::new("invoices::render", "inv-7").engine(&engine).run(|_| render()).await?;
/// assert_eq!(first, again); // replayed from the record's raw bytes
/// # Ok(()) }
/// ```
#[diagnostic::on_unimplemented(
    message = "the `Ok` type `{Self}` of an `#[idempotent]` function must implement `Serialize` and `DeserializeOwned`",
    label = "idem records this value to replay it to duplicates",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]` on `{Self}`; on a generic type parameter, add the bound `idem::Recordable`"
)]
pub trait Recordable: Serialize + DeserializeOwned {}
#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> Recordable for T {}

impl Call {
    /// A call in `namespace` (a function's name: `module::function`), keyed on `key`.
    ///
    /// The key is any `Serialize` value; tuples make composite keys. Floats and empty
    /// values (`""`, `null`, `[]`, `{}`) are refused with [`Error::InvalidKey`] when the
    /// call runs, before anything is written.
    ///
    /// The namespace is a `&str`, `String`, `Arc<str>` or any other [`Namespace`]: copied
    /// once unless it is a [`Namespace::fixed`] (what the attribute passes), which is
    /// borrowed.
    pub fn new<K: Serialize + ?Sized>(namespace: impl Into<Namespace>, key: &K) -> Call {
        Call {
            settings: Settings {
                engine: None,
                namespace: namespace.into(),
                key: key::canonical_key(key),
                fingerprint: None,
                ttl: None,
                lease: None,
                max_duration: None,
                wait: None,
                optional_key: false,
                isolation: None,
            },
            errors: NoErrorReplay,
        }
    }
}

impl<P> Call<P> {
    /// Runs on `engine` instead of the [scoped](Engine::scope) or installed one.
    pub fn engine(mut self, engine: &Engine) -> Self {
        self.settings.engine = Some(engine.clone());
        self
    }

    /// How long the completed record is replayed, counted from completion.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.settings.ttl = Some(ttl);
        self
    }

    /// How long the lease lasts without a heartbeat; heartbeats renew it every
    /// `lease / 3`.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.settings.lease = Some(lease);
        self
    }

    /// How long heartbeats keep the lease alive while the body runs.
    pub fn max_duration(mut self, max_duration: Duration) -> Self {
        self.settings.max_duration = Some(max_duration);
        self
    }

    /// Waits up to `wait` for an in-progress call with the same key, polling (50 ms
    /// doubling to 1 s, jittered) until its outcome can be replayed or its lease lapses
    /// and this call takes over. The pauses are slept on the engine's clock: under a
    /// [`ManualClock`](crate::ManualClock), a waiting call moves on only when the test
    /// moves the clock.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.settings.wait = Some(wait);
        self
    }

    /// The isolation level of the body's transaction
    /// ([`run_in_transaction`](Call::run_in_transaction)), set when it is opened, before
    /// its first statement; the database's default when not given. A plain
    /// [`run`](Call::run) has no transaction and ignores it.
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.settings.isolation = Some(isolation);
        self
    }

    /// Lets the call run without a key: when the key is empty (`""`, `None`, `[]`, `{}`,
    /// or a tuple key with such a part), the body runs **unguarded**, with a warning
    /// event, instead of the call failing with [`Error::InvalidKey`]. For keys that are
    /// legitimately optional, such as an `Idempotency-Key` header that clients may
    /// leave out (AWS Lambda Powertools does the same unless
    /// `raise_on_no_idempotency_key` is set). The unguarded body's [`Context`] has an
    /// empty token and fence 0 ([`Context::is_guarded`] says `false`).
    ///
    /// ```
    /// use idem_core::{Call, Engine, Error, MemoryStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Error> {
    /// let engine = Engine::new(MemoryStore::new());
    /// let header: Option<&str> = None; // the client sent no key
    /// let guarded = Call::new("payments::create", &("tenant-1", header))
    ///     .engine(&engine)
    ///     .optional_key()
    ///     .run(|ctx| async move { Ok::<_, Error>(ctx.is_guarded()) })
    ///     .await?;
    /// assert!(!guarded);
    /// # Ok(()) }
    /// ```
    pub fn optional_key(mut self) -> Self {
        self.settings.optional_key = true;
        self
    }

    /// A payload to check duplicates against: a later call with the same key but a
    /// different fingerprint gets [`Error::PayloadMismatch`] instead of a replay.
    pub fn fingerprint<F: Serialize + ?Sized>(mut self, payload: &F) -> Self {
        self.settings.fingerprint = Some(key::canonical_json(payload));
        self
    }

    /// Records the body's errors for which `predicate` returns `true`, and replays them
    /// to duplicates, as values are. Other errors release the key.
    pub fn replay_errors<E, F>(self, predicate: F) -> Call<ReplayErrors<E, F>>
    where
        E: Serialize + DeserializeOwned,
        F: Fn(&E) -> bool,
    {
        Call {
            settings: self.settings,
            errors: ReplayErrors {
                predicate,
                _error: PhantomData,
            },
        }
    }

    /// How the body's errors are written in the event that reports a release (`error`
    /// field), for example `|e| e.to_string()`. The attribute sets it by itself, from
    /// the error's `Display` (or `Debug`) where it has one.
    ///
    /// ```
    /// # use idem_core::{Call, Error};
    /// let call = Call::new("orders::create", "req-1").describe_errors(|e: &Error| e.to_string());
    /// # let _ = call;
    /// ```
    pub fn describe_errors<E>(self, describe: fn(&E) -> String) -> Call<Described<P, E>> {
        Call {
            settings: self.settings,
            errors: Described {
                policy: self.errors,
                describe,
            },
        }
    }

    /// Runs `body` at most once for this key, or replays what its first run recorded.
    ///
    /// The body gets the attempt's [`Context`] (also readable as
    /// [`Context::current`]). Its heartbeats are polled in the same future as the body:
    /// a body that blocks its thread starves them.
    pub async fn run<T, E, B, Fut>(self, body: B) -> Result<T, E>
    where
        B: FnOnce(Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        self.run_reported(body).await.map(|report| report.value)
    }

    /// [`run`](Call::run), telling also how the value was obtained: the body ran or the
    /// value was replayed, under which fence, and until when the record replays it.
    ///
    /// ```
    /// use idem_core::{Call, Engine, Error, MemoryStore, Source};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Error> {
    /// let engine = Engine::new(MemoryStore::new());
    /// let call = || Call::new("orders::create", "req-1").engine(&engine);
    /// let first = call().run_reported(|_| async { Ok::<_, Error>(7) }).await?;
    /// let again = call().run_reported(|_| async { Ok::<_, Error>(8) }).await?;
    /// assert_eq!((first.value, first.source), (7, Source::Ran));
    /// assert_eq!((again.value, again.source), (7, Source::Replayed));
    /// assert_eq!(again.fence, first.fence);
    /// # Ok(()) }
    /// ```
    pub async fn run_reported<T, E, B, Fut>(self, body: B) -> Result<Report<T>, E>
    where
        B: FnOnce(Context) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        self.run_to::<InStore, _, _, _>(async move |context, _: &mut InStore| body(context).await)
            .await
    }
}

impl<P> Call<P> {
    /// [`run`](Call::run) with the body's own database writes and the completion in
    /// **one transaction**: the effect and its record commit together or not at all, so
    /// a database effect happens exactly once even across crashes, with no downstream
    /// key.
    ///
    /// The engine's store must support it (its [`Transaction`] type, for example
    /// `idem_postgres::PgTransaction`). The key is held in one of two ways, as the
    /// transaction type says ([`Transaction::holds_key`]):
    /// - **by the transaction itself** (`PgTransaction` with `lock_held(true)`): the
    ///   transaction is opened first, at the call's [`isolation`](Call::isolation) level,
    ///   and takes the key inside it; its lock on the record is the lease, with no clock
    ///   and no heartbeat, and it ends with the commit, the rollback or the session (a
    ///   process that dies frees the key as soon as the database ends its session). A
    ///   duplicate is [`Error::InProgress`] at once, or with [`wait`](Call::wait) waits
    ///   for the commit or the rollback. `docs/protocol.md` §3.6 has the rules;
    /// - **by a clock lease**, as [`run`](Call::run)'s: the key is taken and its lease
    ///   committed at once, so duplicates see the call in progress; then the
    ///   transaction is opened and handed to the body while heartbeats renew the lease.
    ///
    /// Either way the body writes in the transaction, and the completion is written in
    /// it, conditional on the attempt still holding the key, and committed with the
    /// body's writes.
    ///
    /// - The lease was lost (another attempt took over): everything the body wrote is
    ///   rolled back and the call returns [`Error::LeaseLost`].
    /// - The body fails or panics: its writes are rolled back, then the key is released
    ///   (or the error recorded, as [`replay_errors`](Call::replay_errors) says).
    /// - The process dies before the commit: the database discards the transaction; the
    ///   key is free once the database ends the session (held by the transaction) or
    ///   the lease lapses (by a clock lease), and a redelivery runs the body again.
    /// - The commit's answer is lost: the record is read, and the key released if the
    ///   read does not show the completion. The completion, in the read or in the
    ///   release's refusal (a commit still in flight when the record was read), means the
    ///   commit went through; a release applied means nothing persisted, and the call
    ///   returns a transient [`Error::Store`] (a retry runs the body again).
    ///
    /// The body is an async closure; name its transaction's type so the engine knows
    /// which store to find: `async |ctx, tx: &mut PgTransaction| { ... }`. An unguarded
    /// call ([`optional_key`](Call::optional_key), a disabled engine) runs in a
    /// transaction too, committed with no record.
    pub async fn run_in_transaction<Tx, T, E, B>(self, body: B) -> Result<T, E>
    where
        Tx: Transaction,
        B: AsyncFnOnce(Context, &mut Tx) -> Result<T, E>,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        self.run_in_transaction_reported(body)
            .await
            .map(|report| report.value)
    }

    /// [`run_in_transaction`](Call::run_in_transaction), telling also how the value was
    /// obtained, as [`run_reported`](Call::run_reported) does: the body ran (its writes
    /// committed with the completion) or the value was replayed, under which fence, and
    /// until when the record replays it.
    pub async fn run_in_transaction_reported<Tx, T, E, B>(self, body: B) -> Result<Report<T>, E>
    where
        Tx: Transaction,
        B: AsyncFnOnce(Context, &mut Tx) -> Result<T, E>,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        self.run_to::<Tx, _, _, _>(body).await
    }

    /// The one path of both forms: the call resolved, then its attempt (or its
    /// unguarded body) run with the completion written to `D`.
    async fn run_to<D, T, E, B>(self, body: B) -> Result<Report<T>, E>
    where
        D: Destination,
        B: AsyncFnOnce(Context, &mut D) -> Result<T, E>,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        match self.settings.resolve()? {
            Resolved::Guarded(mut guard) => {
                D::check(&guard.engine, &guard.namespace)?;
                guard.attempt(body, &self.errors).await
            }
            Resolved::Unguarded {
                namespace,
                context,
                engine,
                isolation,
            } => {
                D::check(&engine, &namespace)?;
                attempt::unguarded(&engine, &namespace, context, isolation, body).await
            }
        }
    }
}
