//! The engine: a store, a clock and the defaults every call starts from.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;

use crate::cache::{Cache, LocalCache};
use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::key::{self, Namespace, RecordId};
use crate::store::Store;

static GLOBAL: OnceLock<Engine> = OnceLock::new();

tokio::task_local! {
    /// The engine of [`Engine::scope`]: used before the process-wide one.
    static SCOPED: Engine;
}

/// The environment variable that turns idem off: `IDEM_DISABLED=1` (or `true`).
pub const DISABLED_VARIABLE: &str = "IDEM_DISABLED";

/// The defaults a call starts from; each can be overridden per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    /// How long a completed record is replayed (counted from completion). 1 hour.
    pub ttl: Duration,
    /// How long a lease lasts without a heartbeat. 30 seconds; heartbeats renew it
    /// every `lease / 3`.
    pub lease: Duration,
    /// How long heartbeats keep a running body's lease alive. 15 minutes; after that
    /// the lease lapses, so a hung body cannot hold a key forever.
    pub max_duration: Duration,
    /// How long a duplicate waits for an in-progress call to finish; `None` (the
    /// default) answers at once with [`Error::InProgress`].
    pub wait: Option<Duration>,
    /// The timeout of every store call. 5 seconds.
    pub store_timeout: Duration,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            ttl: Duration::from_secs(3600),
            lease: Duration::from_secs(30),
            max_duration: Duration::from_secs(15 * 60),
            wait: None,
            store_timeout: Duration::from_secs(5),
        }
    }
}

/// A store, a clock and the defaults: what guarded calls run against.
///
/// Cheap to clone (one `Arc`). Install one per process at start-up with
/// [`Engine::install`]; calls that name no engine use it. Tests run engines with
/// different stores or clocks side by side and pass them to each call.
///
/// ```
/// use idem_core::{Engine, MemoryStore};
/// use std::time::Duration;
///
/// let engine = Engine::builder(MemoryStore::new())
///     .ttl(Duration::from_secs(24 * 3600))
///     .build()
///     .unwrap();
/// # let _ = engine;
/// ```
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) defaults: Defaults,
    pub(crate) secret: Option<Vec<u8>>,
    pub(crate) disabled: bool,
    pub(crate) cache: Option<Cache>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("defaults", &self.inner.defaults)
            .field("secret", &self.inner.secret.as_ref().map(|_| "<set>"))
            .field("cache", &self.inner.cache)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine over `store` with the system clock and the default settings.
    pub fn new(store: impl Store) -> Engine {
        Engine::builder(store)
            .build()
            .expect("the default settings are valid")
    }

    /// A builder over `store`, to set the clock, the defaults or a secret.
    pub fn builder(store: impl Store) -> EngineBuilder {
        EngineBuilder::from_arc(Arc::new(store))
    }

    /// Installs this engine as the process-wide one, used by every call that names no
    /// engine. Once per process: a second call returns [`Error::AlreadyInstalled`].
    pub fn install(self) -> Result<(), Error> {
        GLOBAL.set(self).map_err(|_| Error::AlreadyInstalled)
    }

    /// The process-wide engine, if one is installed.
    pub fn global() -> Option<&'static Engine> {
        GLOBAL.get()
    }

    /// Runs `future` with this engine as the one its calls use when they name none,
    /// before the process-wide one. A task-local: it covers `future` (and what it
    /// awaits), not tasks it spawns. For tests, where each `#[tokio::test]` wants an
    /// engine of its own and [`install`](Engine::install) is once per process:
    ///
    /// ```
    /// use idem_core::{Call, Engine, Error, MemoryStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Error> {
    /// let engine = Engine::new(MemoryStore::new());
    /// let value = engine
    ///     .scope(async {
    ///         // Names no engine: uses the scoped one.
    ///         Call::new("tests::scoped", "k").run(|_| async { Ok::<_, Error>(7) }).await
    ///     })
    ///     .await?;
    /// assert_eq!(value, 7);
    /// # Ok(()) }
    /// ```
    pub async fn scope<F: std::future::Future>(&self, future: F) -> F::Output {
        SCOPED.scope(self.clone(), future).await
    }

    /// The engine a call that names none runs on: the [scoped](Engine::scope) one, else
    /// the process-wide one.
    pub fn current() -> Option<Engine> {
        SCOPED
            .try_with(Engine::clone)
            .ok()
            .or_else(|| GLOBAL.get().cloned())
    }

    /// Whether idem is turned off on this engine ([`EngineBuilder::disabled`], or
    /// `IDEM_DISABLED=1`): calls then run their bodies unguarded.
    pub fn is_disabled(&self) -> bool {
        self.inner.disabled
    }

    /// The store this engine writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The store this engine writes to, as its concrete type `S`; `None` when it is
    /// another type.
    pub fn store_as<S: Store>(&self) -> Option<&S> {
        let store: &dyn std::any::Any = &*self.inner.store;
        store.downcast_ref::<S>()
    }

    /// The clock this engine reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The defaults of this engine's calls.
    pub fn defaults(&self) -> &Defaults {
        &self.inner.defaults
    }

    /// The number of records in the engine's [local cache](EngineBuilder::local_cache)
    /// now (0 without one).
    pub fn cached_records(&self) -> usize {
        self.inner.cache.as_ref().map_or(0, Cache::len)
    }

    pub(crate) fn cache(&self) -> Option<&Cache> {
        self.inner.cache.as_ref()
    }

    /// The digest (the token) of a canonical key in `namespace`, keyed with this
    /// engine's secret if it has one.
    pub(crate) fn digest(&self, namespace: &str, canonical: &[u8]) -> String {
        key::digest(namespace, canonical, self.inner.secret.as_deref())
    }

    /// The record id of a canonical key in `namespace`: `{namespace}#{digest}`, the
    /// digest as [`digest`](Engine::digest) computes it.
    pub(crate) fn id(&self, namespace: &Namespace, canonical: &[u8]) -> RecordId {
        key::record_id(namespace, canonical, self.inner.secret.as_deref())
    }

    /// The id of the record that calls on this engine keep for `key` in `namespace`:
    /// for operators who read or delete one key's record through [`Engine::store`].
    ///
    /// ```
    /// # use idem_core::{Engine, MemoryStore};
    /// let engine = Engine::new(MemoryStore::new());
    /// let id = engine.record_id("orders::create", "req-1").unwrap();
    /// assert!(id.to_string().starts_with("orders::create#"));
    /// ```
    pub fn record_id<K: Serialize + ?Sized>(
        &self,
        namespace: &str,
        key: &K,
    ) -> Result<RecordId, Error> {
        key::check_namespace(namespace).map_err(Error::Config)?;
        let canonical = key::canonical_key(key).map_err(|e| Error::InvalidKey {
            namespace: namespace.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(self.id(&Namespace::from(namespace), &canonical))
    }
}

/// Builds an [`Engine`]: see [`Engine::builder`].
pub struct EngineBuilder {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    defaults: Defaults,
    secret: Option<Vec<u8>>,
    disabled: Option<bool>,
    cache: Option<LocalCache>,
}

impl EngineBuilder {
    /// A builder over a store that is already shared.
    pub fn from_arc(store: Arc<dyn Store>) -> EngineBuilder {
        EngineBuilder {
            store,
            clock: Arc::new(SystemClock),
            defaults: Defaults::default(),
            secret: None,
            disabled: None,
            cache: None,
        }
    }

    /// The clock (the system clock by default; tests pass a
    /// [`ManualClock`](crate::ManualClock)).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How long a completed record is replayed. Default 1 hour.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.defaults.ttl = ttl;
        self
    }

    /// How long a lease lasts without a heartbeat. Default 30 s.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.defaults.lease = lease;
        self
    }

    /// How long heartbeats keep a running body's lease alive. Default 15 min.
    pub fn max_duration(mut self, max_duration: Duration) -> Self {
        self.defaults.max_duration = max_duration;
        self
    }

    /// How long a duplicate waits for an in-progress call. Default: no wait.
    pub fn wait(mut self, wait: Option<Duration>) -> Self {
        self.defaults.wait = wait;
        self
    }

    /// The timeout of every store call. Default 5 s.
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.defaults.store_timeout = timeout;
        self
    }

    /// A secret: digests become HMAC-SHA-256 keyed with it instead of plain SHA-256.
    /// Recommended where keys carry personal data, since a plain digest of a guessable
    /// key can be recomputed. Changing the secret changes every digest and token, so
    /// every key is new again.
    pub fn secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// Keeps completed records in this process's memory too, in front of the store: a
    /// duplicate of a key this process completed or replayed within
    /// [`LocalCache::max_age`] is answered with no store request. Records in progress
    /// or released are never cached. What it cannot see: a record deleted or changed in
    /// the store by someone else, until its entry ages out (see [`LocalCache`]).
    ///
    /// For a shared store (DynamoDB, Redis, PostgreSQL), where a duplicate otherwise
    /// costs a round trip; the in-memory store gains nothing from it.
    pub fn local_cache(mut self, cache: LocalCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Turns idem off: every call on the engine runs its body **unguarded**, as if idem
    /// were not there (one warning event when the engine is built). For local
    /// development and tests of the body alone; Powertools has the same switch. Without
    /// this setting, the environment decides: `IDEM_DISABLED=1` (or `true`) turns it off.
    pub fn disabled(mut self, disabled: bool) -> Self {
        self.disabled = Some(disabled);
        self
    }

    /// The engine, or [`Error::Config`] when the settings cannot work.
    pub fn build(self) -> Result<Engine, Error> {
        if self.defaults.store_timeout.is_zero() {
            return Err(Error::Config("the store timeout must be positive".into()));
        }
        check_timing(
            self.defaults.ttl,
            self.defaults.lease,
            self.defaults.store_timeout,
        )?;
        let disabled = self.disabled.unwrap_or_else(|| {
            std::env::var(DISABLED_VARIABLE)
                .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true"))
        });
        if disabled {
            tracing::warn!(target: "idem",
                "idem is disabled ({DISABLED_VARIABLE} or EngineBuilder::disabled): bodies run unguarded, duplicates run again");
        }
        let cache = self.cache.map(LocalCache::build).transpose()?;
        Ok(Engine {
            inner: Arc::new(Inner {
                store: self.store,
                clock: self.clock,
                defaults: self.defaults,
                secret: self.secret,
                disabled,
                cache,
            }),
        })
    }
}

/// The checks every call's ttl and lease pass, whether they come from the engine or the
/// call: [`protocol::check_times`](crate::protocol::check_times).
pub(crate) fn check_timing(
    ttl: Duration,
    lease: Duration,
    store_timeout: Duration,
) -> Result<(), Error> {
    crate::protocol::check_times(ttl, lease, store_timeout).map_err(Error::Config)
}
