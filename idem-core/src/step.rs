//! Steps: durable progress inside a guarded body. Each step's result is journaled in the
//! key's record under the attempt's fence before the body goes on, and a later attempt of
//! the same record (after a crash, a lost lease, a released error) gets it back without
//! running the step again (`docs/protocol.md`, steps).
//!
//! The rules are [`protocol::step_plan`], [`protocol::journal_of`] and
//! [`protocol::after_journal`]; this file only runs them around the step's future.

use std::collections::HashSet;
use std::future::{Future, IntoFuture};
use std::pin::Pin;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::call::{store_call, ErrorPolicy, Namespace, NoErrorReplay, ReplayErrors};
use crate::codec;
use crate::context::Context;
use crate::engine::Engine;
use crate::error::Error;
use crate::protocol::{self, JournalAnswer, StepPlan};
use crate::store::{Attempt, Codec, Outcome, StepRecord, StoreError, StoreErrorKind, Transaction};

/// The journal of one attempt: what its context needs to run steps.
pub(crate) struct Journal {
    engine: Engine,
    namespace: Namespace,
    attempt: Attempt,
    /// The key is held by the body's transaction (PostgreSQL's lock-held form): a crash
    /// rolls every step back with it, so steps are refused there.
    holds_key: bool,
    state: tokio::sync::Mutex<JournalState>,
}

#[derive(Default)]
struct JournalState {
    /// The record's steps as this attempt knows them; `None` until read (an attempt
    /// with fence 1 has none to read).
    entries: Option<Vec<StepRecord>>,
    /// The names this attempt has run or replayed.
    used: HashSet<String>,
}

impl JournalState {
    fn data_bytes(&self) -> usize {
        self.entries
            .iter()
            .flatten()
            .map(StepRecord::data_len)
            .sum()
    }

    fn put(&mut self, step: StepRecord) {
        let entries = self.entries.get_or_insert_with(Vec::new);
        match entries.iter_mut().find(|entry| entry.name == step.name) {
            Some(entry) => *entry = step,
            None => entries.push(step),
        }
    }
}

impl Journal {
    /// The attempt whose journal this is.
    pub(crate) fn attempt(&self) -> &Attempt {
        &self.attempt
    }

    /// The journal of `attempt`, which took the key with its fence.
    pub(crate) fn new(
        engine: Engine,
        namespace: Namespace,
        attempt: Attempt,
        holds_key: bool,
    ) -> Journal {
        let entries = (attempt.fence == 1).then(Vec::new);
        Journal {
            engine,
            namespace,
            attempt,
            holds_key,
            state: tokio::sync::Mutex::new(JournalState {
                entries,
                used: HashSet::new(),
            }),
        }
    }
}

/// A reconciliation of an uncertain step: see [`Step::on_uncertain`].
type Reconcile<'a, T, E> = Box<
    dyn FnOnce(String) -> Pin<Box<dyn Future<Output = Result<Option<T>, E>> + Send + 'a>>
        + Send
        + 'a,
>;

/// One step of a guarded body: built by [`Context::step`] (or [`step`]), run by
/// awaiting it.
///
/// The first attempt of a key runs the step's future, journals its value in the key's
/// record (under the attempt's fence: a stale attempt is refused, as its completion
/// would be) and returns it; a later attempt of the same record (the first crashed,
/// lost its lease, or failed with an error its policy released) gets the journaled value
/// back without running the future. Inside the step, [`Context::current`] answers the
/// step's context, whose [`token`](Context::token) is the step's own (the context the
/// body was handed keeps the body's): `idem-http`'s client middleware sends it
/// downstream, so a step run again because its result was never journaled sends the
/// same key, and two steps never share one.
///
/// What a crash leaves, by default: a step whose value was journaled never runs again;
/// a step that ran but was not journaled runs again in the next attempt, with the same
/// key (at least once, with a key). [`at_most_once`](Step::at_most_once) journals that
/// the step started before it runs, and a later attempt that finds it started but not
/// finished does not run it: [`Error::StepUncertain`], or the decision of
/// [`on_uncertain`](Step::on_uncertain). That includes an at-most-once step whose
/// future returned an error its policy does not journal: its effect may have happened
/// before the error, so the step stays started, and the next attempt finds it uncertain
/// (journal the errors that mean "nothing happened" with
/// [`replay_errors`](Step::replay_errors), or reconcile).
///
/// A step's error is not journaled by default (the next attempt runs the step again),
/// as the body's is not; [`replay_errors`](Step::replay_errors) journals the errors a
/// predicate chooses, and a later attempt gets them back.
///
/// A body run unguarded (no key, a disabled engine) runs its steps as plain futures.
///
/// ```
/// use idem_core::{Call, Engine, Error, MemoryStore};
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// let engine = Engine::new(MemoryStore::new());
/// let charges = &AtomicUsize::new(0);
/// let order: String = Call::new("orders::place", "order-7")
///     .engine(&engine)
///     .run(|ctx| async move {
///         let charge: String = ctx
///             .step("charge", async {
///                 // Send Context::current().unwrap().token() here as the payment
///                 // API's idempotency key: inside the step it is the step's own.
///                 charges.fetch_add(1, Ordering::SeqCst);
///                 Ok::<_, Error>("ch_1".to_string())
///             })
///             .await?;
///         let mail: u32 = ctx.step("mail", async { Ok::<_, Error>(250) }).await?;
///         Ok::<_, Error>(format!("{charge}, mail {mail}"))
///     })
///     .await?;
/// assert_eq!(order, "ch_1, mail 250");
/// assert_eq!(charges.load(Ordering::SeqCst), 1);
/// # Ok(()) }
/// ```
#[must_use = "a step does nothing until it is awaited"]
pub struct Step<'a, T, E, F, P = NoErrorReplay> {
    context: Option<Context>,
    name: String,
    future: F,
    at_most_once: bool,
    errors: P,
    reconcile: Option<Reconcile<'a, T, E>>,
}

/// A step of the body this task runs, through [`Context::current`]: the same as
/// [`Context::step`] on the current context. Outside a guarded body the future runs as
/// it is.
pub fn step<'a, T, E, F>(name: impl Into<String>, future: F) -> Step<'a, T, E, F>
where
    F: Future<Output = Result<T, E>>,
{
    Step {
        context: Context::current(),
        name: name.into(),
        future,
        at_most_once: false,
        errors: NoErrorReplay,
        reconcile: None,
    }
}

impl Context {
    /// A step of this attempt's body, named `name` (unique within the body: a name used
    /// twice in one attempt is refused with [`Error::Step`]; give steps in a loop an
    /// index, `format!("mail-{i}")`): see [`Step`].
    pub fn step<'a, T, E, F>(&self, name: impl Into<String>, future: F) -> Step<'a, T, E, F>
    where
        F: Future<Output = Result<T, E>>,
    {
        Step {
            context: Some(self.clone()),
            name: name.into(),
            future,
            at_most_once: false,
            errors: NoErrorReplay,
            reconcile: None,
        }
    }
}

impl<'a, T, E, F, P> Step<'a, T, E, F, P> {
    /// Runs the step at most once per record lifetime: its start is journaled before it
    /// runs (one more store round trip), and a later attempt that finds it started but
    /// not finished does not run it again but fails with [`Error::StepUncertain`], which
    /// names the step and its key, unless [`on_uncertain`](Step::on_uncertain) decides.
    /// For effects that must not happen twice and whose downstream takes no
    /// idempotency key.
    pub fn at_most_once(mut self) -> Self {
        self.at_most_once = true;
        self
    }

    /// What to do with this at-most-once step when an earlier attempt started it and
    /// never journaled its result: `reconcile` gets the step's key (the token it sent
    /// downstream) and asks the downstream system whether the effect happened. `Ok(Some)`
    /// is the step's value (journaled, and the step does not run); `Ok(None)` says it did
    /// not happen, and the step runs; an error fails the step, and the journal is left
    /// as it is. Makes the step [`at_most_once`](Step::at_most_once).
    pub fn on_uncertain<R, Fut>(mut self, reconcile: R) -> Self
    where
        R: FnOnce(String) -> Fut + Send + 'a,
        Fut: Future<Output = Result<Option<T>, E>> + Send + 'a,
    {
        self.at_most_once = true;
        self.reconcile = Some(Box::new(move |key| Box::pin(reconcile(key))));
        self
    }

    /// Journals the step's errors that `predicate` chooses, as
    /// [`Call::replay_errors`](crate::Call::replay_errors) records the body's: a later
    /// attempt gets the journaled error back and does not run the step. Other errors are
    /// not journaled, and the next attempt runs the step again.
    pub fn replay_errors<Q>(self, predicate: Q) -> Step<'a, T, E, F, ReplayErrors<E, Q>>
    where
        E: Serialize + DeserializeOwned,
        Q: Fn(&E) -> bool,
    {
        Step {
            context: self.context,
            name: self.name,
            future: self.future,
            at_most_once: self.at_most_once,
            errors: ReplayErrors::new(predicate),
            reconcile: self.reconcile,
        }
    }
}

impl<'a, T, E, F, P> IntoFuture for Step<'a, T, E, F, P>
where
    F: Future<Output = Result<T, E>> + Send + 'a,
    T: Serialize + DeserializeOwned + Send + 'a,
    E: From<Error> + Send + 'a,
    P: ErrorPolicy<E> + Send + Sync + 'a,
{
    type Output = Result<T, E>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl<'a, T, E, F, P> Step<'a, T, E, F, P>
where
    F: Future<Output = Result<T, E>> + Send + 'a,
    T: Serialize + DeserializeOwned + Send + 'a,
    E: From<Error> + Send + 'a,
    P: ErrorPolicy<E> + Send + Sync + 'a,
{
    async fn run(self) -> Result<T, E> {
        let Step {
            context,
            name,
            future,
            at_most_once,
            errors,
            reconcile,
        } = self;
        // Outside any body: nothing to journal, nothing to scope.
        let Some(context) = context else {
            return future.await;
        };
        let run = Run {
            context: &context,
            name: &name,
        };
        let Some(journal) = context.journal() else {
            // Unguarded (no key, a disabled engine): no journal, but the same names and
            // the same step token, so what the step sends downstream keeps its key.
            run.claim_unguarded()?;
            return context.in_step(&name).scope(future).await;
        };
        run.check(journal)?;
        let entry = run.entry().await?;
        let plan = protocol::step_plan(entry.as_ref(), at_most_once);
        tracing::debug!(target: "idem", namespace = %context.namespace(), digest = %context.digest(),
            step = %name, plan = ?plan, "step");
        match plan {
            StepPlan::Replay => run.replay(&entry.expect("a replayed step has an entry"), &errors),
            StepPlan::Uncertain => {
                let step_key = context.in_step(&name).token().to_owned();
                let Some(reconcile) = reconcile else {
                    return Err(Error::StepUncertain {
                        namespace: context.namespace().to_owned(),
                        digest: context.digest().to_owned(),
                        step: name.clone(),
                        step_key,
                    }
                    .into());
                };
                match reconcile(step_key).await? {
                    Some(value) => {
                        let entry = run.value_entry(&value)?;
                        run.write(entry).await?;
                        Ok(value)
                    }
                    None => run.execute(future, &errors).await,
                }
            }
            StepPlan::Run { mark_started } => {
                if mark_started {
                    // Not marked started under a lease that may be lost: it would be
                    // uncertain without having run.
                    if context.lease_lost() {
                        return Err(run.lease_lost().into());
                    }
                    run.write(StepRecord::started(name.as_str())).await?;
                }
                run.execute(future, &errors).await
            }
        }
    }
}

/// One step being run by its attempt.
struct Run<'r> {
    context: &'r Context,
    name: &'r str,
}

impl Run<'_> {
    fn attempt_journal(&self) -> &Journal {
        self.context.journal().expect("a step runs with a journal")
    }

    fn namespace(&self) -> &Namespace {
        &self.attempt_journal().namespace
    }

    fn refused(&self, reason: String) -> Error {
        Error::Step {
            namespace: self.context.namespace().to_owned(),
            step: self.name.to_owned(),
            reason,
        }
    }

    /// The error of a step whose attempt lost its lease. It carries no value: a step's
    /// value is not the body's, which [`Error::lost_value`] decodes.
    fn lease_lost(&self) -> Error {
        self.context.mark_lost();
        Error::LeaseLost {
            namespace: self.context.namespace().to_owned(),
            digest: self.context.digest().to_owned(),
            value: None,
        }
    }

    fn store_error(&self, operation: &'static str, source: StoreError) -> Error {
        if source.kind() == StoreErrorKind::Malformed {
            return self.decode_error(source.to_string());
        }
        Error::Store {
            namespace: self.context.namespace().to_owned(),
            operation,
            source,
        }
    }

    fn decode_error(&self, reason: impl std::fmt::Display) -> Error {
        Error::Decode {
            namespace: self.context.namespace().to_owned(),
            digest: self.context.digest().to_owned(),
            reason: format!("step `{}`: {reason}", self.name),
        }
    }

    /// Refuses a step inside another step, and a step where the key is held by the
    /// body's transaction (the lock-held form: no journal survives its rollback).
    fn check(&self, journal: &Journal) -> Result<(), Error> {
        self.check_nesting()?;
        if journal.holds_key {
            return Err(self.refused(
                "the key is held by the body's own transaction (PostgreSQL's lock-held form, \
                 run_in_transaction on a lock_held(true) store), whose rollback after a crash \
                 undoes every step with the body, so there is no journal to keep: run a body \
                 with steps with run (not run_in_transaction), or on a store in the \
                 clock-lease form (the default)"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// Refuses a step inside another step.
    fn check_nesting(&self) -> Result<(), Error> {
        if self.name.contains('\0') {
            // PostgreSQL's text cannot hold it: refused on every store alike.
            return Err(self.refused("its name contains a NUL character".to_owned()));
        }
        // A step of this context, or of the context the task runs in (a clone of the
        // body's context used inside another step).
        let outer = self
            .context
            .step_name()
            .map(str::to_owned)
            .or_else(|| Context::current().and_then(|c| c.step_name().map(str::to_owned)));
        if let Some(outer) = outer {
            return Err(self.refused(format!(
                "it was started inside step `{outer}`; steps do not nest: run it beside the \
                 other, in the body"
            )));
        }
        Ok(())
    }

    /// The checks of an unguarded step (no journal): not nested, and its name not used
    /// before in this body, as a guarded step's, so that code that runs unguarded runs
    /// guarded too.
    fn claim_unguarded(&self) -> Result<(), Error> {
        self.check_nesting()?;
        if !self.context.claim_step_name(self.name) {
            return Err(self.repeated());
        }
        Ok(())
    }

    fn repeated(&self) -> Error {
        self.refused(
            "the name is used twice in this attempt: give each step its own name (steps in a \
             loop an index, `format!(\"mail-{i}\")`)"
                .to_owned(),
        )
    }

    /// Refuses an entry that would take the journal past the store's data limit.
    async fn check_size(&self, entry: &StepRecord) -> Result<(), Error> {
        let journal = self.attempt_journal();
        let max = journal.engine.store().limits().max_data_bytes;
        let state = journal.state.lock().await;
        let others = state.data_bytes()
            - state
                .entries
                .iter()
                .flatten()
                .find(|e| e.name == entry.name)
                .map_or(0, StepRecord::data_len);
        if others + entry.data_len() > max {
            return Err(self.refused(format!(
                "its value is {} bytes and the journal already holds {others}; the store \
                 keeps at most {max} with the record, so the step ran but its result is not \
                 journaled (the next attempt runs it again, with the same key): return a \
                 smaller value (an id), and keep the rest elsewhere",
                entry.data_len()
            )));
        }
        Ok(())
    }

    /// Claims the step's name for this attempt and finds its journal entry, reading the
    /// record's journal once per attempt (never for an attempt with fence 1).
    async fn entry(&self) -> Result<Option<StepRecord>, Error> {
        let journal = self.attempt_journal();
        let mut state = journal.state.lock().await;
        if state.used.contains(self.name) {
            return Err(self.repeated());
        }
        if state.entries.is_none() {
            let read = store_call(
                &journal.engine,
                self.namespace(),
                "read",
                journal.engine.store().read(&journal.attempt.id),
            )
            .await
            .map_err(|error| self.store_error("read", error))?;
            match protocol::journal_of(read.as_deref(), &journal.attempt) {
                Some(steps) => state.entries = Some(steps.to_vec()),
                None => return Err(self.lease_lost()),
            }
        }
        state.used.insert(self.name.to_owned());
        Ok(state
            .entries
            .iter()
            .flatten()
            .find(|entry| entry.name == self.name)
            .cloned())
    }

    /// The journaled result of a step an earlier attempt finished.
    fn replay<T, E, P>(&self, entry: &StepRecord, errors: &P) -> Result<T, E>
    where
        T: DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        let empty = bytes::Bytes::new();
        let data = entry.data.as_ref().unwrap_or(&empty);
        match entry.outcome {
            Some(Outcome::Ok) => codec::decode(&entry.codec, data).map_err(|e| {
                self.decode_error(format!("the journaled value does not decode: {e}"))
                    .into()
            }),
            Some(Outcome::Err) => {
                let json = std::str::from_utf8(data)
                    .map_err(|_| self.decode_error("the journaled error is not JSON"))?;
                match errors.decode(json) {
                    Some(Ok(error)) => Err(error),
                    Some(Err(e)) => Err(self
                        .decode_error(format!("the journaled error does not decode: {e}"))
                        .into()),
                    None => Err(Error::RecordedError {
                        namespace: self.context.namespace().to_owned(),
                        digest: self.context.digest().to_owned(),
                        data: json.to_owned(),
                    }
                    .into()),
                }
            }
            other => Err(self
                .decode_error(format!("the journal entry is not finished ({other:?})"))
                .into()),
        }
    }

    /// Runs the step's future inside the step's scope and journals what it ended with.
    async fn execute<T, E, F, P>(&self, future: F, errors: &P) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        if self.context.lease_lost() {
            return Err(self.lease_lost().into());
        }
        let ended = self.context.in_step(self.name).scope(future).await;
        match ended {
            Ok(value) => {
                let entry = self.value_entry(&value)?;
                self.write(entry).await?;
                Ok(value)
            }
            Err(error) => {
                if let Some(Ok(json)) = errors.record(&error) {
                    let entry = StepRecord {
                        name: self.name.to_owned(),
                        outcome: Some(Outcome::Err),
                        data: Some(json.into_bytes().into()),
                        codec: Codec::Json,
                    };
                    // The step's own error is what the body gets; a failure to journal it
                    // only means the next attempt runs the step again.
                    if let Err(journal_error) = self.write(entry).await {
                        tracing::warn!(target: "idem", namespace = %self.context.namespace(),
                            digest = %self.context.digest(), step = %self.name,
                            error = %journal_error, "the step's error was not journaled");
                    }
                }
                Err(error)
            }
        }
    }

    /// The journal entry of the step's value, and the value encoded.
    fn value_entry<T: Serialize + DeserializeOwned>(&self, value: &T) -> Result<StepRecord, Error> {
        let encoded = codec::encode(value)
            .map_err(|e| self.refused(format!("its value does not encode: {e}")))?;
        let entry = StepRecord {
            name: self.name.to_owned(),
            outcome: Some(Outcome::Ok),
            data: Some(encoded.data),
            codec: encoded.codec,
        };
        Ok(entry)
    }

    /// Writes `entry` into the record's journal under the attempt's fence.
    async fn write(&self, entry: StepRecord) -> Result<(), Error> {
        self.check_size(&entry).await?;
        let journal = self.attempt_journal();
        let written = store_call(
            &journal.engine,
            self.namespace(),
            "journal",
            journal.engine.store().journal(&journal.attempt, &entry),
        )
        .await
        .map_err(|error| self.store_error("journal", error))?;
        match protocol::after_journal(written, &journal.attempt, &entry) {
            JournalAnswer::Journaled => {
                journal.state.lock().await.put(entry);
                Ok(())
            }
            JournalAnswer::LeaseLost { current_fence } => {
                tracing::warn!(target: "idem", namespace = %self.context.namespace(),
                    digest = %self.context.digest(), step = %self.name,
                    fence = journal.attempt.fence, current_fence,
                    "the step's journal was refused: another attempt holds the key");
                Err(self.lease_lost())
            }
        }
    }
}

impl Context {
    /// A **database step**: `body` runs in a transaction of its own on the engine's
    /// store (`Tx`, e.g. `idem_postgres::PgTransaction`), and the step's journal entry is
    /// written in that transaction and committed with the body's writes, or neither is
    /// (an atomic phase). A later attempt of the key finds the entry and gets the value
    /// back without running `body`; a crash before the commit rolls both back, and the
    /// next attempt runs the step again: its rows are never written twice nor lost.
    ///
    /// The journal write has the condition of every journal write (the attempt still
    /// holds the key): a stale attempt's step is rolled back and the call gets
    /// [`Error::LeaseLost`] (with no value: the step's is not the body's). A commit whose answer is lost is a
    /// store error; whether it went through, the next attempt reads in the journal. A
    /// `body` error rolls the transaction back and is returned, never journaled. The
    /// name follows [`Context::step`]'s rules, and inside the step
    /// [`Context::token`] is the step's.
    ///
    /// Not for a body run by [`run_in_transaction`](crate::Call::run_in_transaction) in
    /// the lock-held form (refused, as every step is there); beside a clock-lease
    /// `run_in_transaction` it uses a second connection, and its commit is visible to
    /// the body's transaction as any other commit is (under `REPEATABLE READ` or
    /// `SERIALIZABLE` the body's completion may then meet a serialization failure).
    pub async fn transaction_step<Tx, T, E, B>(&self, name: &str, body: B) -> Result<T, E>
    where
        Tx: Transaction,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        B: AsyncFnOnce(&mut Tx) -> Result<T, E>,
    {
        let Some(journal) = self.journal() else {
            // Unguarded: a transaction all the same, committed with no journal.
            let store = self.store_of::<Tx>(name)?;
            let mut tx = Tx::open(store, None).await.map_err(|e| Error::Store {
                namespace: self.namespace().to_owned(),
                operation: "open",
                source: e,
            })?;
            Run {
                context: self,
                name,
            }
            .claim_unguarded()?;
            let value = self.in_step(name).scope(body(&mut tx)).await?;
            tx.commit().await.map_err(|e| Error::Store {
                namespace: self.namespace().to_owned(),
                operation: "commit",
                source: e,
            })?;
            return Ok(value);
        };
        let run = Run {
            context: self,
            name,
        };
        run.check(journal)?;
        let store = self.store_of::<Tx>(name)?;
        let entry = run.entry().await?;
        match protocol::step_plan(entry.as_ref(), false) {
            StepPlan::Replay => {
                return run.replay(
                    &entry.expect("a replayed step has an entry"),
                    &NoErrorReplay,
                )
            }
            StepPlan::Uncertain => unreachable!("a database step is never at most once"),
            StepPlan::Run { .. } => {}
        }
        if self.lease_lost() {
            return Err(run.lease_lost().into());
        }
        let mut tx = Tx::open(store, None)
            .await
            .map_err(|e| run.store_error("open", e))?;
        let value = match self.in_step(name).scope(body(&mut tx)).await {
            Ok(value) => value,
            Err(error) => {
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(target: "idem", namespace = %self.namespace(),
                        digest = %self.digest(), step = %name, error = %rollback,
                        "the database step's rollback failed (the database discards it)");
                }
                return Err(error);
            }
        };
        let entry = run.value_entry(&value)?;
        run.check_size(&entry).await?;
        let written = store_call(
            &journal.engine,
            &journal.namespace,
            "journal",
            tx.journal(&journal.attempt, &entry),
        )
        .await;
        let answer = match written {
            Ok(written) => protocol::after_journal(written, &journal.attempt, &entry),
            Err(error) => {
                let _ = tx.rollback().await;
                return Err(run.store_error("journal", error).into());
            }
        };
        if let JournalAnswer::LeaseLost { .. } = answer {
            let _ = tx.rollback().await;
            return Err(run.lease_lost().into());
        }
        store_call(&journal.engine, &journal.namespace, "commit", tx.commit())
            .await
            .map_err(|e| run.store_error("commit", e))?;
        journal.state.lock().await.put(entry);
        Ok(value)
    }

    /// The engine's store as `Tx`'s, or the error of a step that names another store's
    /// transaction.
    fn store_of<Tx: Transaction>(&self, name: &str) -> Result<&Tx::Store, Error> {
        self.engine()
            .store_as::<Tx::Store>()
            .ok_or_else(|| Error::Step {
                namespace: self.namespace().to_owned(),
                step: name.to_owned(),
                reason: format!(
                    "the engine's store is not the store of {}: a database step runs in a \
                 transaction of the store that keeps the journal",
                    std::any::type_name::<Tx>()
                ),
            })
    }
}
