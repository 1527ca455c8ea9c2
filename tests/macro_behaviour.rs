//! The generated code, by behaviour: every supported shape runs its body once per key,
//! and every option does what it says.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use idem::{idempotent, Context, Engine, EngineBuilder, Error, ManualClock, MemoryStore};
use serde::{Deserialize, Serialize};

/// Each test's body counts its runs here, under a name of its own.
static RUNS: LazyLock<std::sync::Mutex<std::collections::HashMap<&'static str, usize>>> =
    LazyLock::new(Default::default);

fn ran(name: &'static str) {
    *RUNS.lock().unwrap().entry(name).or_default() += 1;
}

fn runs(name: &'static str) -> usize {
    RUNS.lock().unwrap().get(name).copied().unwrap_or(0)
}

fn install() {
    // Every test installs the same kind of engine; the first one wins.
    let _ = Engine::new(MemoryStore::new()).install();
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct CfnEvent {
    request_id: String,
    stack: String,
    size: u32,
}

fn event(id: &str, size: u32) -> CfnEvent {
    CfnEvent {
        request_id: id.into(),
        stack: "prod".into(),
        size,
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Group {
    name: String,
    size: u32,
}

#[idempotent(key = event.request_id, ttl = "24h")]
async fn create_group(event: CfnEvent) -> Result<Group, Error> {
    ran("free");
    Ok(Group {
        name: format!("{}-group", event.stack),
        size: event.size,
    })
}

#[tokio::test]
async fn free_function() {
    install();
    let first = create_group(event("free-1", 3)).await.unwrap();
    let second = create_group(event("free-1", 3)).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(runs("free"), 1);
    create_group(event("free-2", 3)).await.unwrap();
    assert_eq!(runs("free"), 2);
}

struct Billing {
    currency: &'static str,
}

impl Billing {
    #[idempotent(key = (self.currency, order_id), name = "Billing::charge")]
    async fn charge(&self, order_id: u64, cents: u64) -> Result<String, Error> {
        ran("method");
        Ok(format!("{cents} {} for {order_id}", self.currency))
    }
}

#[tokio::test]
async fn inherent_method_with_self() {
    install();
    let billing = Billing { currency: "EUR" };
    let a = billing.charge(7, 500).await.unwrap();
    let b = billing.charge(7, 500).await.unwrap();
    assert_eq!((a.as_str(), b.as_str()), ("500 EUR for 7", "500 EUR for 7"));
    assert_eq!(runs("method"), 1);
}

trait Mailer {
    async fn send(&self, to: String) -> Result<u32, Error>;
}

struct Smtp;

impl Mailer for Smtp {
    #[idempotent(key = to, name = "Smtp::send")]
    async fn send(&self, to: String) -> Result<u32, Error> {
        ran("trait");
        Ok(to.len() as u32)
    }
}

#[tokio::test]
async fn native_async_fn_in_a_trait_impl() {
    install();
    assert_eq!(Smtp.send("ada@example.org".into()).await.unwrap(), 15);
    assert_eq!(Smtp.send("ada@example.org".into()).await.unwrap(), 15);
    assert_eq!(runs("trait"), 1);
}

#[async_trait::async_trait]
trait Provisioner {
    async fn provision(&self, request_id: String, size: u32) -> Result<String, Error>;
}

struct Cloud;

#[async_trait::async_trait]
impl Provisioner for Cloud {
    #[idempotent(key = request_id, name = "Cloud::provision")]
    async fn provision(&self, request_id: String, size: u32) -> Result<String, Error> {
        ran("async_trait");
        Ok(format!("{request_id}:{size}"))
    }
}

#[tokio::test]
async fn async_trait_impl() {
    install();
    let cloud: &dyn Provisioner = &Cloud;
    assert_eq!(cloud.provision("r1".into(), 2).await.unwrap(), "r1:2");
    assert_eq!(cloud.provision("r1".into(), 9).await.unwrap(), "r1:2");
    assert_eq!(runs("async_trait"), 1);
}

#[idempotent(key = id)]
async fn generic<T: Serialize + Send>(id: u32, payload: T) -> Result<usize, Error> {
    ran("generic");
    Ok(idem::key::canonical_json(&payload)
        .map(|b| b.len())
        .unwrap_or(0))
}

#[idempotent(key = id.as_ref())]
async fn impl_trait_argument(id: impl AsRef<str> + Send) -> Result<String, Error> {
    ran("impl_arg");
    Ok(id.as_ref().to_uppercase())
}

#[idempotent(key = id)]
async fn with_lifetimes<'a, 'b>(id: &'a str, suffix: &'b str) -> Result<String, Error> {
    ran("lifetimes");
    Ok(format!("{id}{suffix}"))
}

#[idempotent(key = request_id)]
async fn destructured(
    CfnEvent {
        request_id, size, ..
    }: CfnEvent,
    (a, b): (u32, u32),
) -> Result<u32, Error> {
    ran("destructured");
    let _ = &request_id;
    Ok(size + a + b)
}

#[tokio::test]
async fn generics_impl_trait_lifetimes_and_patterns() {
    install();
    assert_eq!(generic(1, vec![1u8, 2]).await.unwrap(), 5);
    assert_eq!(generic(1, "other payload").await.unwrap(), 5);
    assert_eq!(runs("generic"), 1);
    assert_eq!(impl_trait_argument("abc").await.unwrap(), "ABC");
    assert_eq!(
        impl_trait_argument(String::from("abc")).await.unwrap(),
        "ABC"
    );
    assert_eq!(runs("impl_arg"), 1);
    let id = String::from("x");
    assert_eq!(with_lifetimes(&id, "-1").await.unwrap(), "x-1");
    assert_eq!(with_lifetimes(&id, "-2").await.unwrap(), "x-1");
    assert_eq!(runs("lifetimes"), 1);
    assert_eq!(destructured(event("d-1", 1), (2, 3)).await.unwrap(), 6);
    assert_eq!(destructured(event("d-1", 1), (20, 30)).await.unwrap(), 6);
    assert_eq!(runs("destructured"), 1);
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum AppError {
    TooBig(u32),
    Declined(String),
    Idem(String),
}

impl From<Error> for AppError {
    fn from(error: Error) -> Self {
        AppError::Idem(error.to_string())
    }
}

fn parse_size(text: &str) -> Result<u32, AppError> {
    text.parse().map_err(|_| AppError::Declined(text.into()))
}

#[idempotent(key = id)]
async fn early_returns(id: &str, size: &str) -> Result<u32, AppError> {
    ran("early");
    let size = parse_size(size)?;
    if size > 10 {
        return Err(AppError::TooBig(size));
    }
    if size == 0 {
        return Ok(0);
    }
    Ok(size * 2)
}

#[tokio::test]
async fn question_mark_and_early_return() {
    install();
    assert_eq!(
        early_returns("e1", "x").await,
        Err(AppError::Declined("x".into()))
    );
    assert_eq!(early_returns("e1", "99").await, Err(AppError::TooBig(99)));
    assert_eq!(early_returns("e1", "0").await, Ok(0));
    assert_eq!(early_returns("e1", "4").await, Ok(0), "replayed");
    assert_eq!(
        runs("early"),
        3,
        "errors released the key; the Ok was recorded"
    );
}

#[idempotent(key = event.request_id, fingerprint = (event.stack.as_str(), event.size))]
async fn fingerprinted(event: CfnEvent) -> Result<u32, Error> {
    ran("fingerprint");
    Ok(event.size)
}

#[tokio::test]
async fn fingerprint_rejects_a_changed_payload() {
    install();
    assert_eq!(fingerprinted(event("f-1", 3)).await.unwrap(), 3);
    assert_eq!(fingerprinted(event("f-1", 3)).await.unwrap(), 3);
    let changed = fingerprinted(event("f-1", 4)).await;
    assert!(
        matches!(changed, Err(Error::PayloadMismatch { .. })),
        "{changed:?}"
    );
    assert_eq!(runs("fingerprint"), 1);
}

static SECOND: LazyLock<Engine> = LazyLock::new(|| Engine::new(MemoryStore::new()));

#[idempotent(key = id, engine = SECOND, name = "routed")]
async fn on_second_engine(id: u32) -> Result<u32, Error> {
    ran("second");
    Ok(id)
}

#[idempotent(key = id, name = "routed")]
async fn on_installed_engine(id: u32) -> Result<u32, Error> {
    ran("installed");
    Ok(id)
}

#[tokio::test]
async fn engine_routes_calls_to_another_engine() {
    install();
    on_second_engine(1).await.unwrap();
    on_second_engine(1).await.unwrap();
    // Same name and key, other engine (other store): its own record.
    on_installed_engine(1).await.unwrap();
    assert_eq!((runs("second"), runs("installed")), (1, 1));
}

fn is_declined(error: &AppError) -> bool {
    matches!(error, AppError::Declined(_))
}

#[idempotent(key = card, replay_errors = is_declined)]
async fn pay(card: &str) -> Result<u32, AppError> {
    ran("replay_errors");
    Err(AppError::Declined(format!("{card} declined")))
}

#[idempotent(key = card, replay_errors = |e| matches!(e, AppError::TooBig(_)))]
async fn pay_closure(card: &str) -> Result<u32, AppError> {
    ran("replay_closure");
    Err(AppError::Declined(card.into()))
}

#[tokio::test]
async fn replay_errors_replays_a_recorded_error() {
    install();
    let expected = Err(AppError::Declined("4242 declined".into()));
    assert_eq!(pay("4242").await, expected);
    assert_eq!(pay("4242").await, expected);
    assert_eq!(runs("replay_errors"), 1);
    // The closure's argument type comes from the return type; it chooses no Declined.
    let _ = pay_closure("1").await;
    let _ = pay_closure("1").await;
    assert_eq!(runs("replay_closure"), 2);
}

#[idempotent(key = id)]
async fn with_anyhow(id: u32) -> anyhow::Result<u32> {
    ran("anyhow");
    anyhow::ensure!(id > 0, "id must be positive");
    Ok(id * 10)
}

#[idempotent(key = path)]
async fn with_io(path: &str) -> std::io::Result<usize> {
    ran("io");
    Ok(path.len())
}

#[tokio::test]
async fn anyhow_and_io_results() {
    install();
    assert_eq!(with_anyhow(4).await.unwrap(), 40);
    assert_eq!(with_anyhow(4).await.unwrap(), 40);
    assert!(with_anyhow(0).await.is_err());
    assert_eq!(runs("anyhow"), 2);
    assert_eq!(with_io("/tmp/x").await.unwrap(), 6);
    assert_eq!(with_io("/tmp/x").await.unwrap(), 6);
    assert_eq!(runs("io"), 1);
}

static CLOCK: LazyLock<ManualClock> = LazyLock::new(ManualClock::default);
static CLOCKED: LazyLock<Engine> = LazyLock::new(|| {
    EngineBuilder::from_arc(std::sync::Arc::new(MemoryStore::new()))
        .clock(CLOCK.clone())
        .build()
        .unwrap()
});
const LEASE: Duration = Duration::from_secs(20);

#[idempotent(key = id, engine = CLOCKED, ttl = "2s", lease = LEASE, max_duration = "1m", wait = Duration::from_millis(1))]
async fn timed(id: u32) -> Result<(u64, String), Error> {
    ran("timed");
    let context = Context::current().expect("the body runs under a context");
    Ok((context.fence(), context.token().to_owned()))
}

#[tokio::test]
async fn durations_and_the_context() {
    let (fence, token) = timed(1).await.unwrap();
    assert_eq!(fence, 1);
    assert_eq!(token.len(), 64);
    assert_eq!(timed(1).await.unwrap().1, token);
    assert_eq!(runs("timed"), 1);
    CLOCK.advance(Duration::from_secs(3)); // past the 2 s ttl
    let (fence, again) = timed(1).await.unwrap();
    assert_eq!(
        (fence, again),
        (2, token),
        "same key, same token; a higher fence"
    );
    assert_eq!(runs("timed"), 2);
}

#[tokio::test]
async fn the_key_is_evaluated_once_before_the_body() {
    install();
    static EVALUATED: AtomicUsize = AtomicUsize::new(0);
    fn key_of(id: &str) -> String {
        EVALUATED.fetch_add(1, Ordering::SeqCst);
        id.to_owned()
    }
    #[idempotent(key = key_of(&id))]
    async fn moved(id: String) -> Result<String, Error> {
        // The body moves `id`; the key was taken before.
        let owned: String = id;
        Ok(owned)
    }
    assert_eq!(moved("m".into()).await.unwrap(), "m");
    assert_eq!(moved("m".into()).await.unwrap(), "m");
    assert_eq!(EVALUATED.load(Ordering::SeqCst), 2);
}

#[test]
fn the_generated_future_is_send_when_the_body_is() {
    fn assert_send<T: Send>(_: &T) {}
    let future = create_group(event("send", 1));
    assert_send(&future);
    let billing = Billing { currency: "USD" };
    assert_send(&billing.charge(1, 1));
    assert_send(&pay("x"));
    assert_send(&timed(9));
}

/// A raw identifier's `r#` is not part of its name: the namespace is `...::type`, which
/// the engine accepts (`#` is refused in a namespace).
#[idempotent(key = id)]
async fn r#type(id: u32) -> Result<u32, Error> {
    ran("raw identifier");
    Ok(id + 1)
}

#[tokio::test]
async fn a_raw_identifier_names_its_namespace_without_r_hash() {
    install();
    assert_eq!(r#type(7).await.unwrap(), 8);
    assert_eq!(r#type(7).await.unwrap(), 8, "replayed");
    assert_eq!(runs("raw identifier"), 1);
    let engine = Engine::global().unwrap();
    let id = engine
        .record_id(concat!(module_path!(), "::type"), &7u32)
        .unwrap();
    assert!(engine.store().read(&id).await.unwrap().is_some());
}

#[idempotent(key = (tenant, idempotency_key), optional_key = true)]
async fn optional_payment(tenant: &str, idempotency_key: Option<String>) -> Result<bool, Error> {
    ran("optional key");
    Ok(Context::current().unwrap().is_guarded())
}

#[tokio::test]
async fn optional_key_runs_unguarded_without_a_key_and_guards_with_one() {
    install();
    assert!(!optional_payment("t", None).await.unwrap());
    assert!(!optional_payment("t", None).await.unwrap());
    assert!(optional_payment("t", Some("k".into())).await.unwrap());
    assert!(optional_payment("t", Some("k".into())).await.unwrap());
    assert_eq!(runs("optional key"), 3);
}

#[idempotent(key = id, report = true)]
async fn reported(id: u32) -> Result<idem::Report<u32>, Error> {
    ran("reported");
    if id == 0 {
        return Ok(0);
    }
    Ok(id * 2)
}

#[tokio::test]
async fn report_tells_the_caller_whether_the_body_ran() {
    install();
    let first = reported(21).await.unwrap();
    let again = reported(21).await.unwrap();
    assert_eq!((first.value, first.source), (42, idem::Source::Ran));
    assert_eq!((again.value, again.source), (42, idem::Source::Replayed));
    assert_eq!(
        reported(0).await.unwrap().value,
        0,
        "`return` inside the body"
    );
    assert_eq!(runs("reported"), 2);
}
