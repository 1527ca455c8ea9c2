//! Batches: many keys taken in one store round trip where the store allows it, the
//! bodies of the keys taken run under a concurrency bound (in order within a group),
//! and their values completed together. Each item goes through the same phases as a
//! call ([`take`](super::take), [`heartbeat`](super::heartbeat),
//! [`finish`](super::finish), [`replay`](super::replay)), and so by the same rules; only
//! the first begin and the first completion of each item travel in a batch.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;
use tracing::Instrument as _;

use super::destination::InStore;
use super::finish::Failure;
use super::guard::{store_call, Guard, Held};
use super::policy::{ErrorPolicy, NoErrorReplay};
use super::report::Report;
use super::settings::{Resolved, Settings};
use super::take::{Found, Taken};
use super::Namespace;
use crate::context::Context;
use crate::engine::Engine;
use crate::error::Error;
use crate::key::RecordId;
use crate::key::{self, KeyError};
use crate::observe::{self, CallOutcome};
use crate::protocol;
use crate::store::{Attempt, Completion, StoreError, Written};

/// How many bodies of a batch run at once unless [`Batch::concurrency`] says otherwise:
/// one SQS receive.
pub const DEFAULT_BATCH_CONCURRENCY: usize = 10;

/// Many guarded calls of one function, one per item of a batch (an SQS receive, a
/// Kinesis or Kafka poll): every key taken in as few store round trips as the store
/// allows ([`Store::begin_batch`](crate::Store::begin_batch)), the bodies of the keys
/// this batch took run at most [`concurrency`](Batch::concurrency) at a time, and their
/// values recorded together ([`Store::complete_batch`](crate::Store::complete_batch)).
///
/// A batch is N independent keys: each item is exactly one call of
/// [`Call::run_reported`](crate::Call::run_reported) by the same rules (a duplicate is
/// replayed, a key in progress elsewhere is left to its holder, a failed body releases
/// its key), and nothing is atomic across items. Each item gets its own
/// [`BatchOutcome`], in the order the items were added; bad input stays with its item.
///
/// Items added with a group ([`item_in_group`](Batch::item_in_group): a FIFO queue's
/// message group, a Kafka partition) run one after another in the order they were
/// added. An item's turn passes to the next once its body has returned `Ok` (its
/// effect is done) or it is replayed; its completion travels with the batch's
/// completions and is not waited for, so it may still fail (a lease lost to another
/// attempt: that item is then [`Failed`](BatchOutcome::Failed) though the next one
/// ran, after it). A group stops at its first item whose body failed or panicked, or
/// that did not run here (in progress elsewhere, a store error before its body, an
/// invalid key): the rest of that group is [`Skipped`](BatchOutcome::Skipped), their
/// keys released untouched. An item that repeats an earlier item's key
/// ([`Repeated`](BatchOutcome::Repeated)) passes the turn on once that item has its
/// outcome, as that item ended: a producer's duplicate does not stop its group. Effects within a group therefore happen in order; a queue
/// helper that reports a failed item and the items after it keeps the redelivery in
/// order too.
///
/// ```
/// use idem_core::{Batch, BatchOutcome, Engine, Error, MemoryStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let engine = Engine::new(MemoryStore::new());
/// let messages = [("m-1", 3), ("m-2", 4), ("m-1", 3)];
/// let mut batch = Batch::new("orders::ship").engine(&engine);
/// for (id, quantity) in messages {
///     batch = batch.item(id, quantity);
/// }
/// let outcomes = batch
///     .run(|_ctx, quantity: u32| async move { Ok::<_, Error>(quantity * 10) })
///     .await;
/// assert!(matches!(&outcomes[0], BatchOutcome::Ran(report) if report.value == 30));
/// assert!(matches!(&outcomes[2], BatchOutcome::Repeated { first: 0 }));
/// # }
/// ```
#[must_use = "a batch does nothing until it is run"]
pub struct Batch<I, P = NoErrorReplay> {
    engine: Option<Engine>,
    namespace: Namespace,
    ttl: Option<std::time::Duration>,
    lease: Option<std::time::Duration>,
    max_duration: Option<std::time::Duration>,
    concurrency: usize,
    items: Vec<Item<I>>,
    errors: P,
}

/// One item as added: its encoded key, its group, and what its body is given.
struct Item<I> {
    key: Result<Vec<u8>, KeyError>,
    group: Option<String>,
    input: I,
}

/// What became of one item of a [`Batch`].
#[derive(Debug)]
pub enum BatchOutcome<T, E> {
    /// This batch ran the body (its value recorded, or not recorded as the report's
    /// [`Source::RanNotRecorded`](crate::Source::RanNotRecorded) says).
    Ran(Report<T>),
    /// A duplicate: the value an earlier call recorded; the body did not run.
    Replayed(Report<T>),
    /// Another attempt holds the key: the body did not run here. Deliver the item again
    /// later (its lease ends at `lease_until_ms`, epoch milliseconds).
    InProgressElsewhere {
        /// When the other attempt's lease ends, unless renewed.
        lease_until_ms: Option<u64>,
    },
    /// The body failed (its key released, or its error recorded as
    /// [`Batch::replay_errors`] says), a recorded error was replayed, or the item could
    /// not be guarded (a store error, a lost lease): the error, as a call would return
    /// it.
    Failed(E),
    /// Not run: an earlier item of its group failed or did not run, so this one may not run
    /// out of order. A key this batch had taken for it was released untouched; an item
    /// that would have replayed, or whose key is in progress elsewhere, is skipped too
    /// (its record untouched), so that a queue delivers the group again in order.
    Skipped,
    /// The key cannot be encoded (a float, an empty value, a record id too long for
    /// the store): [`Error::InvalidKey`]. Nothing was written; no delivery can succeed,
    /// so a queue should move it aside (a dead-letter queue, after its
    /// `maxReceiveCount`) rather than deliver it again forever.
    InvalidKey(Error),
    /// The same key as the item at index `first` of this batch: not run, and nothing
    /// written for it. Its effect is the first item's: whether it is done is
    /// `outcomes[first]`'s [`is_processed`](BatchOutcome::is_processed) (this one's own
    /// is `false`). In a group, its turn ends as the first item ended (processed or
    /// not); in a group already stopped, it is [`Skipped`](BatchOutcome::Skipped) like
    /// the rest of the group.
    Repeated {
        /// The index of the first item with this key.
        first: usize,
    },
}

impl<T, E> BatchOutcome<T, E> {
    /// Whether the item's effect is done and recorded or replayed ([`Ran`](Self::Ran),
    /// [`Replayed`](Self::Replayed)): an item that is not should be delivered again (a
    /// queue's partial-failure report). A [`Repeated`](Self::Repeated) item is not by
    /// itself: it is processed when its first item is (delivered again, it replays that
    /// item's record).
    pub fn is_processed(&self) -> bool {
        matches!(self, BatchOutcome::Ran(_) | BatchOutcome::Replayed(_))
    }
}

impl<I> Batch<I> {
    /// An empty batch of calls in `namespace` (a function's name, as for
    /// [`Call::new`](crate::Call::new)).
    pub fn new(namespace: impl Into<Namespace>) -> Self {
        Batch {
            engine: None,
            namespace: namespace.into(),
            ttl: None,
            lease: None,
            max_duration: None,
            concurrency: DEFAULT_BATCH_CONCURRENCY,
            items: Vec::new(),
            errors: NoErrorReplay,
        }
    }
}

impl<I, P> Batch<I, P> {
    /// Runs on `engine` instead of the scoped or installed one.
    pub fn engine(mut self, engine: &Engine) -> Self {
        self.engine = Some(engine.clone());
        self
    }

    /// How long each completed record is replayed, as [`Call::ttl`](crate::Call::ttl).
    pub fn ttl(mut self, ttl: std::time::Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Each key's lease, as [`Call::lease`](crate::Call::lease). An item waiting for its
    /// group's turn keeps its lease by heartbeats.
    pub fn lease(mut self, lease: std::time::Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// How long heartbeats keep each key, counted from when the batch took it (waiting
    /// for the group's turn included), as [`Call::max_duration`](crate::Call::max_duration).
    pub fn max_duration(mut self, max_duration: std::time::Duration) -> Self {
        self.max_duration = Some(max_duration);
        self
    }

    /// How many bodies run at once (at least 1): [`DEFAULT_BATCH_CONCURRENCY`] unless
    /// set.
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Adds an item keyed on `key` (any `Serialize` value, as [`Call::new`](crate::Call::new)
    /// takes), whose body is given `input`. A key that cannot be encoded is reported as
    /// [`BatchOutcome::InvalidKey`] for this item alone.
    pub fn item<K: Serialize + ?Sized>(mut self, key: &K, input: I) -> Self {
        self.items.push(Item {
            key: key::canonical_key(key),
            group: None,
            input,
        });
        self
    }

    /// Adds an item as [`item`](Batch::item) does, in `group`: the group's items run one
    /// after another in the order they were added, and the group stops at its first item
    /// whose body failed or that did not run here (see [`Batch`] for the exact rule).
    pub fn item_in_group<K: Serialize + ?Sized>(
        mut self,
        key: &K,
        group: impl Into<String>,
        input: I,
    ) -> Self {
        self.items.push(Item {
            key: key::canonical_key(key),
            group: Some(group.into()),
            input,
        });
        self
    }

    /// Records the body's errors for which `predicate` returns `true` and replays them,
    /// as [`Call::replay_errors`](crate::Call::replay_errors).
    pub fn replay_errors<E, F>(self, predicate: F) -> Batch<I, super::ReplayErrors<E, F>>
    where
        E: Serialize + DeserializeOwned,
        F: Fn(&E) -> bool,
    {
        Batch {
            engine: self.engine,
            namespace: self.namespace,
            ttl: self.ttl,
            lease: self.lease,
            max_duration: self.max_duration,
            concurrency: self.concurrency,
            items: self.items,
            errors: super::ReplayErrors {
                predicate,
                _error: std::marker::PhantomData,
            },
        }
    }

    /// Runs the batch: `body` is called with an item's [`Context`] and input for each key
    /// this batch takes. Returns one outcome per item, in the order they were added.
    ///
    /// A body that panics has its key released like a call's; the other items are
    /// finished (completed or released) first, then the panic goes on.
    pub async fn run<T, E, B, Fut>(self, body: B) -> Vec<BatchOutcome<T, E>>
    where
        B: Fn(Context, I) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        T: Serialize + DeserializeOwned,
        E: From<Error>,
        P: ErrorPolicy<E>,
    {
        let Batch {
            engine,
            namespace,
            ttl,
            lease,
            max_duration,
            concurrency,
            items,
            errors,
        } = self;
        // A repeated key's item hears how its first item ended (`repeats`), which the
        // first tells each of its repeats (`tells`) once it has its outcome.
        let mut tells: Vec<Vec<oneshot::Sender<bool>>> = items.iter().map(|_| Vec::new()).collect();
        let mut repeats: Vec<Option<oneshot::Receiver<bool>>> =
            items.iter().map(|_| None).collect();
        let mut groups = Vec::with_capacity(items.len());
        let mut seen: HashMap<RecordId, usize> = HashMap::with_capacity(items.len());
        let mut slots = Vec::with_capacity(items.len());
        for (index, Item { key, group, input }) in items.into_iter().enumerate() {
            groups.push(group);
            let settings = Settings {
                engine: engine.clone(),
                namespace: namespace.clone(),
                key,
                fingerprint: None,
                ttl,
                lease,
                max_duration,
                wait: None,
                optional_key: false,
                isolation: None,
            };
            slots.push(match settings.resolve() {
                Ok(Resolved::Guarded(mut guard)) => {
                    // A batch never waits for a key in progress elsewhere.
                    guard.wait = None;
                    match seen.entry(guard.request.id.clone()) {
                        std::collections::hash_map::Entry::Occupied(first) => {
                            let (tell, hear) = oneshot::channel();
                            tells[*first.get()].push(tell);
                            repeats[index] = Some(hear);
                            Slot::Done(BatchOutcome::Repeated {
                                first: *first.get(),
                            })
                        }
                        std::collections::hash_map::Entry::Vacant(vacant) => {
                            vacant.insert(index);
                            match guard.cached(&errors) {
                                Some(replayed) => Slot::Done(replayed_outcome(replayed)),
                                None => Slot::Begin { guard, input },
                            }
                        }
                    }
                }
                Ok(Resolved::Unguarded { context, .. }) => Slot::Unguarded { context, input },
                Err(error @ Error::InvalidKey { .. }) => {
                    Slot::Done(BatchOutcome::InvalidKey(error))
                }
                Err(error) => Slot::Done(BatchOutcome::Failed(error.into())),
            });
        }
        begin_all(&mut slots, &errors).await;
        let completer = slots.iter().find_map(|slot| match slot {
            Slot::Held { guard, .. } => Some((guard.engine.clone(), guard.namespace.clone())),
            _ => None,
        });
        let turns = turns(&groups);
        let semaphore = Semaphore::new(concurrency);
        let (completions, pending) = mpsc::unbounded_channel();
        let shared = Shared {
            semaphore: &semaphore,
            body: &body,
            errors: &errors,
            _items: PhantomData,
        };
        let outcomes = futures_util::future::join_all(
            slots.into_iter().zip(turns).zip(repeats).zip(tells).map(
                |(((slot, (turn, next)), repeat), tell)| {
                    let completions = completions.clone();
                    let shared = &shared;
                    async move {
                        let outcome = shared.run_item(slot, turn, next, repeat, completions).await;
                        // A panic drops the senders: its repeats hear "not processed".
                        if let Ok(outcome) = &outcome {
                            for tell in tell {
                                let _ = tell.send(outcome.is_processed());
                            }
                        }
                        outcome
                    }
                },
            ),
        );
        // The channel closes once every item is done with its sender.
        drop(completions);
        let completing = complete_all(completer, pending);
        let (outcomes, ()) = futures_util::future::join(outcomes, completing).await;
        let mut panic = None;
        let outcomes = outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|caught| {
                    panic.get_or_insert(caught);
                    BatchOutcome::Skipped
                })
            })
            .collect();
        if let Some(panic) = panic {
            std::panic::resume_unwind(panic);
        }
        outcomes
    }
}

/// An item on its way through the batch.
enum Slot<I, T, E> {
    /// Its outcome is known without running it.
    Done(BatchOutcome<T, E>),
    /// Its key is to be taken by the batch's begin.
    Begin { guard: Guard, input: I },
    /// Its key is held: the body may run when its turn comes.
    Held { guard: Guard, held: Held, input: I },
    /// The engine is disabled: the body runs without a record.
    Unguarded { context: Context, input: I },
}

fn replayed_outcome<T, E>(replayed: Result<Report<T>, E>) -> BatchOutcome<T, E> {
    match replayed {
        Ok(report) => BatchOutcome::Replayed(report),
        Err(error) => BatchOutcome::Failed(error),
    }
}

/// For each item, the turn it waits for (its group's previous item's, `true` when that
/// one was processed) and the turn it hands to its group's next item.
type Turn = (
    Option<oneshot::Receiver<bool>>,
    Option<oneshot::Sender<bool>>,
);

fn turns(groups: &[Option<String>]) -> Vec<Turn> {
    let mut turns: Vec<Turn> = groups.iter().map(|_| (None, None)).collect();
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (index, group) in groups.iter().enumerate() {
        let Some(group) = group else { continue };
        if let Some(previous) = last.insert(group, index) {
            let (next, turn) = oneshot::channel();
            turns[previous].1 = Some(next);
            turns[index].0 = Some(turn);
        }
    }
    turns
}

/// Takes every key of `slots` that is to be begun: one [`Store::begin_batch`]
/// (crate::Store::begin_batch), each answer read by the rules of a call's begin.
async fn begin_all<I, T, E, P>(slots: &mut [Slot<I, T, E>], errors: &P)
where
    T: DeserializeOwned,
    E: From<Error>,
    P: ErrorPolicy<E>,
{
    let mut requests = Vec::new();
    for slot in slots.iter_mut() {
        if let Slot::Begin { guard, .. } = slot {
            let now = guard.clock_now();
            guard.terms().stamp(&mut guard.request, now);
            requests.push(guard.request.clone());
        }
    }
    let Some((engine, namespace)) = slots.iter().find_map(|slot| match slot {
        Slot::Begin { guard, .. } => Some((guard.engine.clone(), guard.namespace.clone())),
        _ => None,
    }) else {
        return;
    };
    let count = requests.len();
    let answers = store_call(&engine, &namespace, "begin_batch", async {
        answers(engine.store().begin_batch(&requests).await, count)
    })
    .await;
    // A batch that failed as a whole for a passing reason (its timeout, a lost
    // connection: one slow item delays them all) may have been applied in part, and
    // its items' keys held by these very attempts: each item's begin is sent again on
    // its own, as the same attempt, so one already applied reads back as held (and its
    // body runs) instead of leaving the key held by nobody until its lease lapses.
    let resend = matches!(&answers, Err(error) if error.is_transient());
    let answers = spread(answers, count);
    let found = futures_util::future::join_all(
        slots
            .iter_mut()
            .filter_map(|slot| match slot {
                Slot::Begin { guard, .. } => Some(guard),
                _ => None,
            })
            .zip(answers)
            .map(|(guard, answer)| async move {
                if resend {
                    guard.acquire().await
                } else {
                    begun(guard, answer).await
                }
            }),
    )
    .await;
    let mut found = found.into_iter();
    for slot in slots.iter_mut() {
        if !matches!(slot, Slot::Begin { .. }) {
            continue;
        }
        let found = found.next().expect("one answer per request");
        let Slot::Begin { guard, input } =
            std::mem::replace(slot, Slot::Done(BatchOutcome::Skipped))
        else {
            unreachable!("matched above")
        };
        *slot = match found {
            Ok(found) => match guard.taken(found, errors).await {
                Ok(Taken::Held(held)) => Slot::Held { guard, held, input },
                Ok(Taken::Replayed(report)) => Slot::Done(BatchOutcome::Replayed(report)),
                Err(error) => Slot::Done(BatchOutcome::Failed(error)),
            },
            Err(Error::InProgress { lease_until_ms, .. }) => {
                Slot::Done(BatchOutcome::InProgressElsewhere { lease_until_ms })
            }
            Err(error) => {
                if matches!(error, Error::Store { .. }) {
                    observe::call(&guard.namespace, CallOutcome::StoreError);
                }
                Slot::Done(BatchOutcome::Failed(error.into()))
            }
        };
    }
}

/// A batch store call's answers, checked to be one per request.
fn answers<R>(
    answers: Vec<Result<R, StoreError>>,
    count: usize,
) -> Result<Vec<Result<R, StoreError>>, StoreError> {
    if answers.len() == count {
        Ok(answers)
    } else {
        Err(StoreError::permanent(format!(
            "the store answered a batch of {count} with {} answers",
            answers.len()
        )))
    }
}

/// One answer per request: a batch call that failed as a whole fails each.
fn spread<R>(
    answers: Result<Vec<Result<R, StoreError>>, StoreError>,
    count: usize,
) -> Vec<Result<R, StoreError>> {
    match answers {
        Ok(answers) => answers,
        Err(error) => error.for_each_item(count),
    }
}

/// What the batch's answer to an item's begin found, by the rules of a call's begin:
/// a refusal that read back free begins again as a call does; a record in progress
/// elsewhere is not waited for.
async fn begun(
    guard: &mut Guard,
    answer: Result<Written<u64>, StoreError>,
) -> Result<Found, Error> {
    let written = answer.map_err(|error| guard.store_error("begin", error))?;
    match guard.found(protocol::after_begin(written, &guard.request)) {
        Some(Found::Live(record)) => guard
            .completed_record(record.clone())?
            .ok_or_else(|| guard.in_progress(&record)),
        Some(held) => Ok(held),
        None => guard.acquire().await,
    }
}

/// A value's completion handed to the batch's completer, and where its answer goes.
struct Pending {
    attempt: Attempt,
    completion: Completion,
    answer: oneshot::Sender<Result<Written<()>, StoreError>>,
}

/// Sends the completions the items hand in, as many at a time as are waiting: one
/// [`Store::complete_batch`](crate::Store::complete_batch) whenever completions wait
/// and none is in flight, so no completion waits for more than the one before it.
async fn complete_all(
    target: Option<(Engine, Namespace)>,
    mut pending: mpsc::UnboundedReceiver<Pending>,
) {
    while let Some(first) = pending.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = pending.try_recv() {
            batch.push(more);
        }
        let Some((engine, namespace)) = &target else {
            continue;
        };
        let (completions, senders): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|p| ((p.attempt, p.completion), p.answer))
            .unzip();
        let count = completions.len();
        let answers = store_call(engine, namespace, "complete_batch", async {
            answers(engine.store().complete_batch(&completions).await, count)
        })
        .await;
        // As for begins: a batch that failed as a whole for a passing reason may have
        // been applied in part; each completion is sent again on its own (the same
        // attempt's: one already applied reads back as this attempt's), each under a
        // store timeout of its own, so one slow item does not leave every other item
        // "ran, not recorded".
        let answers = match answers {
            Err(error) if error.is_transient() => {
                futures_util::future::join_all(completions.iter().map(|(attempt, completion)| {
                    store_call(
                        engine,
                        namespace,
                        "complete",
                        engine.store().complete(attempt, completion),
                    )
                }))
                .await
            }
            answers => spread(answers, count),
        };
        for (sender, answer) in senders.into_iter().zip(answers) {
            // An item that is gone (a panic unwinding) needs no answer.
            let _ = sender.send(answer);
        }
    }
}

/// What every item shares while the batch runs: the concurrency bound, the body and
/// the error policy, for items of input `I` whose bodies (futures `Fut`) end in
/// `Result<T, E>`.
struct Shared<'a, B, P, I, T, E, Fut> {
    semaphore: &'a Semaphore,
    body: &'a B,
    errors: &'a P,
    _items: PhantomData<fn(I, T, E, Fut)>,
}

/// How a held item's turn went.
enum Turned<T, E> {
    /// Its group's previous item failed or did not run here.
    Skipped,
    /// Its lease was lost while it waited: it must not run.
    LeaseLost,
    /// The body ran and ended so.
    Ran(Result<T, Failure<E>>),
}

type Caught = Box<dyn Any + Send>;

impl<B, P, I, T, E, Fut> Shared<'_, B, P, I, T, E, Fut>
where
    B: Fn(Context, I) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    T: Serialize + DeserializeOwned,
    E: From<Error>,
    P: ErrorPolicy<E>,
{
    /// One item, from its turn to its outcome; a caught panic is handed back once the
    /// key is released.
    async fn run_item(
        &self,
        slot: Slot<I, T, E>,
        turn: Option<oneshot::Receiver<bool>>,
        next: Option<oneshot::Sender<bool>>,
        repeat: Option<oneshot::Receiver<bool>>,
        completions: mpsc::UnboundedSender<Pending>,
    ) -> Result<BatchOutcome<T, E>, Caught> {
        match slot {
            Slot::Done(outcome) => {
                if !my_turn(turn).await {
                    hand_on(next, false);
                    return Ok(BatchOutcome::Skipped);
                }
                // A repeat hands its group on as its first item ended.
                let processed = match repeat {
                    Some(first) => first.await.unwrap_or(false),
                    None => outcome.is_processed(),
                };
                hand_on(next, processed);
                Ok(outcome)
            }
            Slot::Begin { .. } => unreachable!("every key was begun"),
            Slot::Unguarded { context, input } => {
                let ran = self.turn(turn, next, &context, input).await;
                match ran {
                    Turned::Skipped | Turned::LeaseLost => Ok(BatchOutcome::Skipped),
                    Turned::Ran(Ok(value)) => Ok(BatchOutcome::Ran(Report::unguarded(value))),
                    Turned::Ran(Err(Failure::Returned(error))) => Ok(BatchOutcome::Failed(error)),
                    Turned::Ran(Err(Failure::Panicked(panic))) => Err(panic),
                }
            }
            Slot::Held { guard, held, input } => {
                let span = guard.span(held.attempt());
                self.held(guard, held, input, (turn, next), completions)
                    .instrument(span)
                    .await
            }
        }
    }

    /// A held item: its body run when its turn comes, under heartbeats from the moment
    /// the batch took its key; then its value completed in a batch, or its key released.
    async fn held(
        &self,
        guard: Guard,
        held: Held,
        input: I,
        (turn, next): Turn,
        completions: mpsc::UnboundedSender<Pending>,
    ) -> Result<BatchOutcome<T, E>, Caught> {
        let attempt = held.attempt();
        let Held {
            context,
            lease_until_ms,
        } = &held;
        let ran = guard
            .drive(
                attempt,
                context,
                *lease_until_ms,
                self.turn(turn, next, context, input),
            )
            .await;
        match ran {
            Turned::Skipped => {
                guard.release(attempt).await;
                Ok(BatchOutcome::Skipped)
            }
            Turned::LeaseLost => {
                observe::call(&guard.namespace, CallOutcome::LeaseLost);
                Ok(BatchOutcome::Failed(
                    Error::LeaseLost {
                        namespace: guard.namespace.to_string(),
                        digest: String::from(guard.digest()),
                        value: None,
                    }
                    .into(),
                ))
            }
            Turned::Ran(Ok(value)) => {
                let (spilled, completion) = guard.value_completion(&value);
                let first = Instant::now();
                let (answer, answered) = oneshot::channel();
                let _ = completions.send(Pending {
                    attempt: attempt.clone(),
                    completion: completion.clone(),
                    answer,
                });
                let answer = answered.await.unwrap_or_else(|_| {
                    Err(StoreError::transient("the batch's completion was not sent"))
                });
                let store = guard.engine.store();
                let answer = guard
                    .resent_after("complete", first, answer, || {
                        store.complete(attempt, &completion)
                    })
                    .await;
                Ok(
                    match guard.value_completed(attempt, value, spilled, completion, answer) {
                        Ok(report) => BatchOutcome::Ran(report),
                        Err(error) => BatchOutcome::Failed(error),
                    },
                )
            }
            Turned::Ran(Err(Failure::Returned(error))) => Ok(
                match guard
                    .fail::<InStore, _, _, _>(attempt, Failure::Returned(error), self.errors)
                    .await
                {
                    Ok(report) => BatchOutcome::Ran(report),
                    Err(error) => BatchOutcome::Failed(error),
                },
            ),
            Turned::Ran(Err(Failure::Panicked(panic))) => {
                guard.release(attempt).await;
                guard.outcome(CallOutcome::Released, "the body panicked");
                Err(panic)
            }
        }
    }

    /// Waits for the item's turn, then runs its body under a permit of the concurrency
    /// bound, and hands the turn on (processed iff the body returned a value).
    async fn turn(
        &self,
        turn: Option<oneshot::Receiver<bool>>,
        next: Option<oneshot::Sender<bool>>,
        context: &Context,
        input: I,
    ) -> Turned<T, E> {
        if !my_turn(turn).await {
            hand_on(next, false);
            return Turned::Skipped;
        }
        let _permit = self.semaphore.acquire().await;
        if context.is_guarded() && context.lease_lost() {
            hand_on(next, false);
            return Turned::LeaseLost;
        }
        // The closure is called inside the guard too, as a call's is.
        let for_body = context.clone();
        let ran = context
            .clone()
            .scope(
                AssertUnwindSafe(async move { (self.body)(for_body, input).await }).catch_unwind(),
            )
            .await;
        let ran = match ran {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(Failure::Returned(error)),
            Err(panic) => Err(Failure::Panicked(panic)),
        };
        hand_on(next, ran.is_ok());
        Turned::Ran(ran)
    }
}

/// Whether the item may run: it has no turn to wait for, or the previous item of its
/// group was processed.
async fn my_turn(turn: Option<oneshot::Receiver<bool>>) -> bool {
    match turn {
        Some(turn) => turn.await.unwrap_or(false),
        None => true,
    }
}

fn hand_on(next: Option<oneshot::Sender<bool>>, processed: bool) {
    if let Some(next) = next {
        let _ = next.send(processed);
    }
}
