//! What the body can read about its own attempt.

use crate::key::Namespace;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::clock::Clock;
use crate::engine::Engine;
use crate::step::Journal;

tokio::task_local! {
    static CURRENT: Context;
}

/// The attempt the body runs under: handed to the body by [`Call::run`](crate::Call::run)
/// and readable through [`Context::current`].
///
/// Pass [`token`](Context::token) downstream as the idempotency key of the external API
/// the body calls (a payment provider's `Idempotency-Key`, a cloud API's client token).
/// idem deduplicates calls at the entry; the downstream key covers the one gap no entry
/// check can: a crash after the side effect but before the completion was recorded.
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
    /// Inside a step: the step's name and token.
    step: Option<Arc<StepScope>>,
}

/// The step a context is scoped to ([`Context::step`]).
pub(crate) struct StepScope {
    pub(crate) name: String,
    pub(crate) token: String,
}

struct Inner {
    namespace: Namespace,
    token: String,
    fence: u64,
    lease_until_ms: AtomicU64,
    lost: AtomicBool,
    clock: Arc<dyn Clock>,
    /// The engine the call runs on.
    engine: Engine,
    /// The attempt's journal of steps; `None` for a body run unguarded.
    journal: Option<Journal>,
    /// The names of the steps an unguarded body ran (a guarded one's are in its
    /// journal).
    unguarded_steps: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("namespace", &self.inner.namespace)
            .field("token", &self.inner.token)
            .field("fence", &self.inner.fence)
            .field("step", &self.step.as_ref().map(|step| &step.name))
            .field("lease_lost", &self.lease_lost())
            .finish()
    }
}

impl Context {
    pub(crate) fn new(
        namespace: Namespace,
        token: String,
        fence: u64,
        lease_until_ms: u64,
        engine: Engine,
        journal: Option<Journal>,
    ) -> Self {
        let clock = engine.clock().clone();
        Context {
            inner: Arc::new(Inner {
                namespace,
                token,
                fence,
                lease_until_ms: AtomicU64::new(lease_until_ms),
                lost: AtomicBool::new(false),
                clock,
                engine,
                journal,
                unguarded_steps: Default::default(),
            }),
            step: None,
        }
    }

    /// The context of a body that runs unguarded: fence 0, a lease that never lapses,
    /// and the key's token when there is a key (a disabled engine), so downstream keys
    /// are still derived from it; an empty token when there is none
    /// ([`Call::optional_key`](crate::Call::optional_key) without a key).
    pub(crate) fn unguarded(namespace: Namespace, token: String, engine: Engine) -> Self {
        Context::new(namespace, token, 0, u64::MAX, engine, None)
    }

    /// Whether the body runs under a key's lease (its fence is 1 or more). `false` for a
    /// body run unguarded: a call with [`optional_key`](crate::Call::optional_key) that
    /// had no key (its token is empty), or any call on a disabled engine (its token is
    /// still the key's, so what it sends downstream keeps its keys).
    pub fn is_guarded(&self) -> bool {
        self.inner.fence > 0
    }

    /// The context of the attempt this task runs under, if any.
    ///
    /// A task-local: it is set while the guarded body is polled, and is `None` anywhere
    /// else, including inside tasks the body starts with `tokio::spawn` (pass the
    /// context to them by hand).
    pub fn current() -> Option<Context> {
        CURRENT.try_with(Context::clone).ok()
    }

    pub(crate) async fn scope<F: std::future::Future>(self, body: F) -> F::Output {
        CURRENT.scope(self, body).await
    }

    /// The call's namespace.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// A stable token for the key: its 64-character lowercase hex digest. The same key
    /// in the same namespace always gives the same token, in every process and version;
    /// pass it downstream as an idempotency key. Empty only for a body run without a key
    /// ([`Call::optional_key`](crate::Call::optional_key)).
    ///
    /// The context of a [step](Context::step) (what [`Context::current`] answers inside
    /// it) has the step's own token instead ([`key::step_token`](crate::key::step_token)
    /// of the key's token and the step's name): what a step sends downstream has a key
    /// of its own, the same in every attempt, so a step run again after a crash sends
    /// the same key. The context the body was handed keeps the key's token, also inside
    /// a step: take the step's from [`Context::current`].
    pub fn token(&self) -> &str {
        match &self.step {
            Some(step) => &step.token,
            None => &self.inner.token,
        }
    }

    /// The key's digest: [`token`](Context::token) outside a step.
    pub(crate) fn digest(&self) -> &str {
        &self.inner.token
    }

    /// The name of the step this context runs in, if any.
    pub fn step_name(&self) -> Option<&str> {
        self.step.as_ref().map(|step| step.name.as_str())
    }

    /// This context, scoped to the step `name` (its token the step's).
    pub(crate) fn in_step(&self, name: &str) -> Context {
        let token = if self.inner.token.is_empty() {
            String::new()
        } else {
            crate::key::step_token(&self.inner.token, name)
        };
        Context {
            inner: self.inner.clone(),
            step: Some(Arc::new(StepScope {
                name: name.to_owned(),
                token,
            })),
        }
    }

    /// Claims `name` for a step of this unguarded body: `false` when it was used.
    pub(crate) fn claim_step_name(&self, name: &str) -> bool {
        let mut names = self
            .inner
            .unguarded_steps
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        names.insert(name.to_owned())
    }

    /// The engine the call runs on.
    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The attempt the body runs under, `None` for a body run unguarded.
    pub(crate) fn attempt(&self) -> Option<&crate::store::Attempt> {
        self.journal().map(Journal::attempt)
    }

    /// The attempt's journal, `None` for a body run unguarded.
    pub(crate) fn journal(&self) -> Option<&Journal> {
        self.inner.journal.as_ref()
    }

    /// The fencing number of this attempt: higher than that of every attempt that held
    /// the key before, while the record exists. Downstream systems that store it can
    /// refuse writes from an older attempt.
    pub fn fence(&self) -> u64 {
        self.inner.fence
    }

    /// Whether the lease may be lost: a heartbeat was refused (another attempt took
    /// over), or the lease's end has passed without a renewal (the store was unreachable,
    /// the body ran past `max_duration`, or it blocked its thread). A body that sees
    /// `true` should stop before its next side effect; its completion will be refused if
    /// another attempt took over.
    pub fn lease_lost(&self) -> bool {
        self.inner.lost.load(Ordering::Acquire)
            || !crate::protocol::lease_is_live(
                self.inner.clock.now_ms(),
                self.inner.lease_until_ms.load(Ordering::Acquire),
            )
    }

    pub(crate) fn renewed(&self, lease_until_ms: u64) {
        self.inner
            .lease_until_ms
            .store(lease_until_ms, Ordering::Release);
    }

    pub(crate) fn is_marked_lost(&self) -> bool {
        self.inner.lost.load(Ordering::Acquire)
    }

    pub(crate) fn mark_lost(&self) {
        self.inner.lost.store(true, Ordering::Release);
    }
}
