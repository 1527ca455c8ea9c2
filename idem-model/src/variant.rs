//! The faulty variants: the code's rules with a defect put back, to show that the
//! checker finds it.

use std::fmt;
use std::sync::Arc;

use idem_core::protocol::{self, Terms};
use idem_core::store::{Attempt, Begin, Record, Renewal, State, StepRecord, Written};

/// Switches that put back a defect found by review, to show the checker finds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Variant {
    /// Schedule the first heartbeat a third of a lease after the body *started*, not
    /// after the lease started (the defect fixed in session 2: a slow begin pushed the
    /// first renewal past the margin).
    pub first_beat_from_body_start: bool,
    /// Let extend renew a released lease (held by the attempt, without the
    /// `lease_until_ms > 0` of [`Record::is_renewable_by`]): a heartbeat that lands
    /// after the release revives the lease.
    pub extend_after_release: bool,
    /// Settle a lost commit answer by the read alone (the defect fixed in session 6):
    /// a read that does not show the completion is taken to mean nothing persisted,
    /// whatever the release then finds, although a commit still in flight lands after
    /// the read, and the release, waiting behind its row lock, is refused with it.
    pub settle_by_read_only: bool,
    /// In the lock-held form, take the fence from the row alone (its fence plus one, as
    /// a plain begin does), without the sequence: the increment is rolled back with an
    /// attempt that fails or crashes, and the next holder acts under the same fence.
    pub fence_from_row: bool,
    /// Apply a step's journal write to any record in progress, without the held
    /// condition ([`Record::is_held_by`]: the attempt's owner and fence): a stale
    /// attempt's write lands in its successor's journal.
    pub journal_without_fence: bool,
    /// Begin writes a fresh record without the journal of the record's lifetime (not
    /// [`protocol::begun`]): an attempt that takes the key over runs again the steps
    /// its predecessors journaled.
    pub begin_clears_steps: bool,
}

impl Variant {
    /// The protocol as the code implements it.
    pub const FIXED: Variant = Variant {
        first_beat_from_body_start: false,
        extend_after_release: false,
        settle_by_read_only: false,
        fence_from_row: false,
        journal_without_fence: false,
        begin_clears_steps: false,
    };

    /// When the first heartbeat is due for a lease ending at `lease_until_ms` and a body
    /// that started at `body_start_ms`: [`Terms::first_beat_ms`], or a third of a lease
    /// after the body's start in the faulty variant.
    pub fn first_beat_ms(&self, terms: &Terms, lease_until_ms: u64, body_start_ms: u64) -> u64 {
        if self.first_beat_from_body_start {
            body_start_ms + terms.beat_every_ms()
        } else {
            terms.first_beat_ms(lease_until_ms)
        }
    }

    /// Extend as the store applies it: [`protocol::extend`], or, in the faulty variant,
    /// on any record held by the attempt, released or not.
    pub fn extend(
        &self,
        record: Option<&mut Arc<Record>>,
        attempt: &Attempt,
        renewal: &Renewal,
    ) -> Written<()> {
        if !self.extend_after_release {
            return protocol::extend(record, attempt, renewal);
        }
        match record {
            Some(record) if record.is_held_by(attempt) => {
                let record = Arc::make_mut(record);
                record.lease_until_ms = renewal.lease_until_ms;
                record.expires_at_s = renewal.expires_at_s;
                Written::Applied(())
            }
            other => Written::Refused(other.map(|record| record.clone())),
        }
    }
}

impl Variant {
    /// Hold as the store applies it: [`protocol::hold`] with the sequence's value
    /// `drawn`, or, in the faulty variant, [`protocol::begin`]'s condition and fence (the
    /// row's plus one).
    pub fn hold(&self, record: Option<&Arc<Record>>, request: &Begin, drawn: u64) -> Written<u64> {
        if self.fence_from_row {
            protocol::begin(record, request)
        } else {
            protocol::hold(record, request, drawn)
        }
    }
}

impl Variant {
    /// Journal as the store applies it: [`protocol::journal`], or, in the faulty
    /// variant, on any record in progress.
    pub fn journal(
        &self,
        record: Option<&mut Arc<Record>>,
        attempt: &Attempt,
        step: &StepRecord,
    ) -> Written<()> {
        if !self.journal_without_fence {
            return protocol::journal(record, attempt, step);
        }
        match record {
            Some(record) if record.state == State::InProgress => {
                let record = Arc::make_mut(record);
                record.steps.write(step.clone());
                Written::Applied(())
            }
            other => Written::Refused(other.map(|record| record.clone())),
        }
    }

    /// The record an applied begin writes: [`protocol::begun`] (the journal kept), or,
    /// in the faulty variant, [`Begin::record`] alone.
    pub fn begun(&self, current: Option<&Record>, request: &Begin, fence: u64) -> Record {
        if self.begin_clears_steps {
            request.record(fence)
        } else {
            protocol::begun(current, request, fence)
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults: Vec<&str> = [
            (
                self.first_beat_from_body_start,
                "first heartbeat from the body's start",
            ),
            (self.extend_after_release, "extend renews a released lease"),
            (
                self.settle_by_read_only,
                "a lost commit settled by the read only",
            ),
            (
                self.fence_from_row,
                "a held key's fence from the row without the sequence",
            ),
            (
                self.journal_without_fence,
                "a journal write without the held condition",
            ),
            (self.begin_clears_steps, "begin clears the journal"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if faults.is_empty() {
            f.write_str("the code's protocol")
        } else {
            f.write_str(&faults.join(", "))
        }
    }
}
