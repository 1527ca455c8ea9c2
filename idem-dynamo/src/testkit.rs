//! Test helpers (feature `testkit`): an interceptor that counts the HTTP requests a
//! client sends, by DynamoDB operation. With the SDK's retries turned off, it counts
//! exactly the requests each guarded call costs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;

/// Counts HTTP attempts per DynamoDB operation (`UpdateItem`, `GetItem`, ...). Clones
/// share their counts; add one to a client with `Config::builder().interceptor(...)`.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl RequestCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests sent so far, all operations together.
    pub fn total(&self) -> usize {
        self.lock().values().sum()
    }

    /// Requests sent so far for one operation, such as `"UpdateItem"`.
    pub fn of(&self, operation: &str) -> usize {
        self.lock().get(operation).copied().unwrap_or(0)
    }

    /// Every operation's count.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.lock().clone()
    }

    /// Sets every count back to zero.
    pub fn reset(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, usize>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "idem-dynamo RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // DynamoDB's JSON protocol names the operation in `X-Amz-Target`:
        // `DynamoDB_20120810.UpdateItem`.
        let operation = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|target| target.rsplit('.').next())
            .unwrap_or("unknown")
            .to_owned();
        *self.lock().entry(operation).or_default() += 1;
        Ok(())
    }
}
