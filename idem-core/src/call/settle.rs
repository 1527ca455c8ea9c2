//! Settling a commit whose answer was lost (the transactional form): the record read,
//! then the key released, and [`protocol::settle_by_read`] and
//! [`protocol::settle_by_release`] say what the answers mean.

use super::guard::Guard;
use super::report::{Report, Source};
use crate::error::Error;
use crate::observe::{self, CallOutcome};
use crate::protocol::{self, CommitFate};
use crate::store::{Attempt, StoreError};

impl Guard {
    /// A commit whose answer was an error or never came, settled by the record: the
    /// caller gets its value if the commit went through, a transient error otherwise.
    pub(super) async fn settle_commit<T, E: From<Error>>(
        &self,
        attempt: &Attempt,
        error: StoreError,
        value: T,
    ) -> Result<Report<T>, E> {
        let store = &self.engine.store();
        let read = self.store_call("read", store.read(&attempt.id)).await;
        let settled_by_read = match &read {
            Ok(record) => protocol::settle_by_read(record.as_deref(), attempt),
            Err(_) => None,
        };
        let fate = match settled_by_read {
            Some(fate) => Ok(fate),
            None => self
                .send_release(attempt)
                .await
                .map(|written| protocol::settle_by_release(written, attempt)),
        };
        let settled = match fate {
            Ok(CommitFate::Committed { expires_at_s }) => {
                tracing::debug!(target: "idem", namespace = %self.namespace, digest = %self.digest(),
                    fence = attempt.fence, %error, "the commit's answer was lost; the record shows it went through");
                self.outcome(CallOutcome::Ran, "ran and recorded");
                return Ok(Report {
                    value,
                    source: Source::Ran,
                    fence: attempt.fence,
                    replayed_until_ms: Some(expires_at_s.saturating_mul(1000)),
                });
            }
            Ok(CommitFate::RolledBack) => {
                "it did not go through: nothing of the body persisted and the key was released"
            }
            Ok(CommitFate::Unknown) => {
                "the record, no longer this attempt's, cannot tell whether it went through; \
                 a retry replays the value if it did and runs the body if it did not"
            }
            Err(_) => {
                "the record could not be settled to tell whether it went through; a retry \
                 replays the value if it did and runs the body if it did not"
            }
        };
        observe::call(&self.namespace, CallOutcome::StoreError);
        Err(self
            .store_error(
                "commit",
                StoreError::transient(format!("the commit failed ({error}); {settled}"))
                    .with_source(error),
            )
            .into())
    }
}
