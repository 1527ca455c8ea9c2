//! The protocol's pure rules that the engine and the model share: the settling of a
//! lost commit, the lock-held form's hold and the meaning of its answer, and the lease
//! and TTL limits.

use std::sync::Arc;
use std::time::Duration;

use idem_core::protocol::*;
use idem_core::store::{Attempt, Codec, Hold, Outcome, Owner, Record, RecordId, Written};
use idem_core::Encoded;

/// The one key these rules are applied to.
fn id() -> RecordId {
    RecordId::new("ns", [1; 32])
}

/// An owner named by a test: distinct names, distinct owners.
fn owner(name: &str) -> Owner {
    Owner::from_u128(name.bytes().fold(0, |n, b| n << 8 | u128::from(b)))
}

fn attempt(fence: u64) -> Attempt {
    Attempt {
        id: id(),
        owner: owner("me"),
        fence,
    }
}

fn in_progress(fence: u64, lease_until_ms: u64) -> Arc<Record> {
    let record = Terms {
        lease_ms: 1000,
        ttl_ms: 1000,
    }
    .begin(
        &id(),
        owner("me"),
        lease_until_ms.saturating_sub(1000),
        None,
    )
    .record(fence);
    Arc::new(record)
}

#[test]
fn the_limits_messages_name_their_constants() {
    let ttl = ttl_refusal(MIN_TTL - Duration::from_nanos(1)).unwrap();
    assert!(ttl.contains(&format!("at least {MIN_TTL:?}")), "{ttl}");
    assert_eq!(ttl_refusal(MIN_TTL), None);
    let lease = lease_refusal(MIN_LEASE - Duration::from_nanos(1)).unwrap();
    assert!(
        lease.contains(&format!("at least {MIN_LEASE:?}")),
        "{lease}"
    );
    assert_eq!(lease_refusal(MIN_LEASE), None);
    let second = Duration::from_secs(1);
    assert!(check_times(second, Duration::from_secs(3), second).is_ok());
    let short = check_times(second, Duration::from_millis(1500), second).unwrap_err();
    assert!(
        short.contains("too short for the 1s store timeout"),
        "{short}"
    );
}

#[test]
fn a_lost_commit_is_settled_by_the_read_then_by_the_release() {
    let mine = attempt(3);
    let mut completed = in_progress(3, 5000);
    complete(
        Some(&mut completed),
        &mine,
        &Terms {
            lease_ms: 1000,
            ttl_ms: 60_000,
        }
        .completion(
            4000,
            Outcome::Ok,
            Some(Encoded {
                codec: Codec::Json,
                data: "1".into(),
            }),
        ),
    );
    let committed = CommitFate::Committed {
        expires_at_s: completed.expires_at_s,
    };
    // The read settles it only when it shows this attempt's completion.
    assert_eq!(settle_by_read(Some(&completed), &mine), Some(committed));
    assert_eq!(settle_by_read(Some(&in_progress(3, 5000)), &mine), None);
    assert_eq!(settle_by_read(None, &mine), None);
    assert_eq!(settle_by_read(Some(&completed), &attempt(4)), None);
    // The release: refused with the completion (a commit that landed after the
    // read), applied, applied earlier, or refused by a record not this attempt's.
    assert_eq!(
        settle_by_release(Written::Refused(Some(completed.clone())), &mine),
        committed
    );
    assert_eq!(
        settle_by_release(Written::Applied(()), &mine),
        CommitFate::RolledBack
    );
    let mut released = in_progress(3, 5000);
    release(Some(&mut released), &mine);
    assert_eq!(
        settle_by_release(Written::Refused(Some(released)), &mine),
        CommitFate::RolledBack
    );
    assert_eq!(
        settle_by_release(Written::Refused(None), &mine),
        CommitFate::Unknown
    );
    assert_eq!(
        settle_by_release(Written::Refused(Some(in_progress(4, 9000))), &mine),
        CommitFate::Unknown
    );
}

/// `owner`'s begin at 10 s, with a 1 s lease.
fn begin_at_10s(owner: &str) -> idem_core::store::Begin {
    Terms {
        lease_ms: 1000,
        ttl_ms: 1000,
    }
    .begin(&id(), self::owner(owner), 10_000, None)
}

#[test]
fn a_hold_is_a_begin_whose_fence_adds_the_sequence_s_value_and_whose_lease_is_released() {
    let request = begin_at_10s("next");
    let free = in_progress(4, 9_000);
    let live = in_progress(4, 11_000);
    // No record: the sequence's value alone; a free record: its fence plus that value.
    assert_eq!(hold(None, &request, 7), Written::Applied(7));
    assert_eq!(hold(Some(&free), &request, 7), Written::Applied(11));
    // A live record refuses it as it refuses a begin.
    assert_eq!(
        hold(Some(&live), &request, 7),
        begin(Some(&live), &request).map(|_| 0)
    );
    assert!(matches!(
        hold(Some(&live), &request, 7),
        Written::Refused(Some(_))
    ));
    let held = held_record(&request, 11);
    assert_eq!(held.lease_until_ms, 0);
    assert_eq!(held.fence, 11);
    assert!(
        !held.is_live(request.now_ms),
        "free at once, were it committed"
    );
}

#[test]
fn a_hold_s_answer_is_read_as_a_begin_s_with_no_lease_end() {
    let request = begin_at_10s("me");
    assert_eq!(
        after_hold(Hold::Taken(9), &request),
        Some(BeginAnswer::Held {
            fence: 9,
            lease_until_ms: u64::MAX
        })
    );
    assert_eq!(after_hold(Hold::Busy, &request), None);
    assert_eq!(
        after_hold(Hold::Conflict, &request),
        Some(BeginAnswer::Again)
    );
    let live = in_progress(4, 11_000);
    assert_eq!(
        after_hold(Hold::Refused(Some(live.clone())), &request),
        Some(after_begin(Written::Refused(Some(live)), &request))
    );
    assert_eq!(
        after_hold(Hold::Refused(None), &request),
        Some(BeginAnswer::Again)
    );
}
