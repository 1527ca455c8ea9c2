//! Not public API: what `#[idempotent]` generates calls into. Not covered by semver;
//! `idem` pins `idem-macros` to its exact version so the two always match.
//!
//! The helper traits exist for their error messages: each requirement is checked at
//! the function's return type through a trait whose `on_unimplemented` message names
//! the fix.

use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use idem_core::store::Transaction;
pub use idem_core::{Call, Context, Engine, Error, Report};
use idem_core::{ErrorPolicy, ReplayErrors};

/// The return type of an `#[idempotent]` function: a `Result`.
#[diagnostic::on_unimplemented(
    message = "`#[idempotent]` functions must return a `Result`, not `{Self}`",
    label = "return a `Result<T, E>` here",
    note = "idem records the `Ok` value to replay it to duplicates, and releases the key on `Err` so a retry runs the body again"
)]
pub trait IdempotentResult: Sized {
    /// The recorded value.
    type Ok;
    /// The error, which idem's own errors convert into.
    type Err;
    /// As a `Result`.
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
    /// Back from a `Result`.
    fn from_result(result: Result<Self::Ok, Self::Err>) -> Self;
}

impl<T, E> IdempotentResult for Result<T, E> {
    type Ok = T;
    type Err = E;
    fn into_result(self) -> Result<T, E> {
        self
    }
    fn from_result(result: Result<T, E>) -> Self {
        result
    }
}

pub use idem_core::Recordable as RecordableValue;

/// A value that can serve as a key or a fingerprint.
#[diagnostic::on_unimplemented(
    message = "the key `{Self}` of an `#[idempotent]` function must implement `Serialize`",
    label = "idem encodes this key to tell events apart",
    note = "derive it: `#[derive(serde::Serialize)]` on `{Self}`, or key on a field that is (a string, a number, a tuple of them)"
)]
pub trait IdempotencyKey: Serialize {}
#[diagnostic::do_not_recommend]
impl<K: Serialize + ?Sized> IdempotencyKey for K {}

/// A payload to fingerprint.
#[diagnostic::on_unimplemented(
    message = "the fingerprint `{Self}` of an `#[idempotent]` function must implement `Serialize`",
    label = "idem encodes this payload to compare duplicates with",
    note = "derive it: `#[derive(serde::Serialize)]` on `{Self}`"
)]
pub trait Fingerprint: Serialize {}
#[diagnostic::do_not_recommend]
impl<F: Serialize + ?Sized> Fingerprint for F {}

/// A literal `ttl`, checked at compile time (in a `const` item) by the engine's rule:
/// [`protocol::ttl_refusal`](idem_core::protocol::ttl_refusal).
pub const fn checked_ttl(ttl: Duration) -> Duration {
    if let Some(refusal) = idem_core::protocol::ttl_refusal(ttl) {
        panic!("{}", refusal);
    }
    ttl
}

/// A literal `lease`, checked at compile time (in a `const` item) by the engine's rule:
/// [`protocol::lease_refusal`](idem_core::protocol::lease_refusal).
pub const fn checked_lease(lease: Duration) -> Duration {
    if let Some(refusal) = idem_core::protocol::lease_refusal(lease) {
        panic!("{}", refusal);
    }
    lease
}

/// The call for `key` in `namespace`: the key's requirement is checked here, at the
/// key's tokens.
pub fn call<K: IdempotencyKey + ?Sized>(namespace: &'static str, key: &K) -> Call {
    Call::new(idem_core::Namespace::fixed(namespace), key)
}

/// `fingerprint = payload`: the payload's requirement is checked here, at its tokens.
pub fn fingerprint<P, F: Fingerprint + ?Sized>(call: Call<P>, payload: &F) -> Call<P> {
    call.fingerprint(payload)
}

/// An error type idem's own errors convert into.
#[diagnostic::on_unimplemented(
    message = "the error type `{Self}` of an `#[idempotent]` function must implement `From<idem::Error>`",
    label = "idem returns its own errors (in progress, payload mismatch, store failures) through this type",
    note = "add `impl From<idem::Error> for {Self}` or a variant with `#[from] idem::Error` (thiserror); `anyhow::Result` and `std::io::Result` work as they are"
)]
pub trait FromIdemError: From<Error> {}
#[diagnostic::do_not_recommend]
impl<E: From<Error>> FromIdemError for E {}

/// An error type `replay_errors` can record and replay.
#[diagnostic::on_unimplemented(
    message = "`replay_errors` records errors, so the error type `{Self}` must implement `Serialize` and `DeserializeOwned`",
    label = "idem records this error to replay it to duplicates",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]` on `{Self}`, or drop `replay_errors`"
)]
pub trait RecordableError: Serialize + DeserializeOwned {}
#[diagnostic::do_not_recommend]
impl<E: Serialize + DeserializeOwned> RecordableError for E {}

/// Runs `body` under `call`, for a function returning `R`.
pub async fn run<R, P, B, Fut>(call: Call<P>, body: B) -> R
where
    R: IdempotentResult,
    R::Ok: RecordableValue,
    R::Err: FromIdemError,
    P: ErrorPolicy<R::Err>,
    B: FnOnce(Context) -> Fut,
    Fut: Future<Output = R>,
{
    R::from_result(
        call.run(|context| async move { body(context).await.into_result() })
            .await,
    )
}

/// Runs `body` under `call` in a transaction of the engine's store, for a function with
/// `transaction(tx: Tx)` returning `R`.
pub async fn run_in_transaction<R, Tx, P, B>(call: Call<P>, body: B) -> R
where
    R: IdempotentResult,
    R::Ok: RecordableValue,
    R::Err: FromIdemError,
    P: ErrorPolicy<R::Err>,
    Tx: Transaction,
    B: AsyncFnOnce(Context, &mut Tx) -> R,
{
    R::from_result(
        call.run_in_transaction(async move |context, transaction: &mut Tx| {
            body(context, transaction).await.into_result()
        })
        .await,
    )
}

/// The return type of an `#[idempotent(report = true)]` function: a `Result` whose `Ok`
/// is a [`Report`] of the value the body returns.
#[diagnostic::on_unimplemented(
    message = "with `report = true`, an `#[idempotent]` function must return `Result<idem::Report<T>, E>`, not `{Self}`",
    label = "return `Result<idem::Report<T>, E>` here; the body still returns `Result<T, E>`",
    note = "the report tells the caller whether the body ran or the value was replayed"
)]
pub trait ReportedResult: IdempotentResult<Ok = Report<Self::Value>> {
    /// What the body returns in `Ok`.
    type Value;
}

#[diagnostic::do_not_recommend]
impl<T, E> ReportedResult for Result<Report<T>, E> {
    type Value = T;
}

/// Runs `body` under `call` for a function returning `Result<Report<T>, E>`: the body
/// returns `Result<T, E>`, and the caller gets the value with its report.
pub async fn run_reported<R, P, B, Fut>(call: Call<P>, body: B) -> R
where
    R: ReportedResult,
    R::Value: RecordableValue,
    R::Err: FromIdemError,
    P: ErrorPolicy<R::Err>,
    B: FnOnce(Context) -> Fut,
    Fut: Future<Output = Result<R::Value, R::Err>>,
{
    R::from_result(call.run_reported(body).await)
}

/// The body's error, to describe in events: by `Display` where it has one, else by
/// `Debug`, else by its type's name (autoref specialization: the macro calls
/// `(&&&Describe(error)).describe()` on a concrete type).
pub struct Describe<'a, E>(pub &'a E);

/// `Display` errors: the first choice.
pub trait DescribeByDisplay {
    /// The error's text.
    fn describe(&self) -> String;
}
impl<E: std::fmt::Display> DescribeByDisplay for &&Describe<'_, E> {
    fn describe(&self) -> String {
        self.0.to_string()
    }
}

/// `Debug` errors: the second choice.
pub trait DescribeByDebug {
    /// The error's text.
    fn describe(&self) -> String;
}
impl<E: std::fmt::Debug> DescribeByDebug for &Describe<'_, E> {
    fn describe(&self) -> String {
        format!("{:?}", self.0)
    }
}

/// Any other error: its type's name.
pub trait DescribeByName {
    /// The error's type.
    fn describe(&self) -> String;
}
impl<E> DescribeByName for Describe<'_, E> {
    fn describe(&self) -> String {
        std::any::type_name::<E>().to_owned()
    }
}

/// `replay_errors = predicate`, for a function returning `R`: the predicate's argument
/// type comes from `R`, so a closure needs no annotation.
pub fn replay_errors<R, P, F>(call: Call<P>, predicate: F) -> Call<ReplayErrors<R::Err, F>>
where
    R: IdempotentResult,
    R::Err: RecordableError,
    F: Fn(&R::Err) -> bool,
{
    call.replay_errors(predicate)
}
