//! The checker finds the three defects found by review and by a test, and a held key's
//! fence without its sequence, with the faulty variants switched on, and finds nothing
//! in the same bounds with the code's rules; the variants' restated rules differ from
//! the code's only where the defect lies.

use std::sync::Arc;

use idem_core::protocol::{self, Terms};
use idem_core::store::{Attempt, Record, Written};
use idem_core::testkit::{attempt, begin_at, renewal_at, LEASE_MS, T0, TTL_MS};
use idem_model::{Bounds, Protocol, Variant};
use stateright::{Checker, Model};

/// Small enough for a debug build: two callers, seven ticks, no injected fault.
fn bounds() -> Bounds {
    Bounds::base().with("horizon_ticks=7").unwrap()
}

/// The same in a transaction, with a TTL past the horizon (no record expires).
fn transactional() -> Bounds {
    bounds().with("transactional=1,ttl_ticks=9").unwrap()
}

/// One step in every body.
fn steps() -> Bounds {
    bounds().with("steps=1").unwrap()
}

/// One database step in every body, in a transaction, a TTL past the horizon.
fn database_steps() -> Bounds {
    transactional().with("steps=1").unwrap()
}

/// Held by the transaction (PostgreSQL's lock-held form), a TTL past the horizon.
fn lock_held() -> Bounds {
    bounds().with("lock_held=1,ttl_ticks=9").unwrap()
}

fn broken(variant: Variant) -> Vec<&'static str> {
    broken_in(bounds(), variant)
}

fn broken_in(bounds: Bounds, variant: Variant) -> Vec<&'static str> {
    let model = Protocol::new(bounds).with_variant(variant);
    let checker = model.clone().checker().threads(2).spawn_bfs().join();
    assert!(
        checker.unique_state_count() > 10_000,
        "the model explored almost nothing"
    );
    model
        .properties()
        .into_iter()
        .filter(|p| p.expectation.discovery_is_failure())
        .filter(|p| checker.discovery(p.name).is_some())
        .map(|p| p.name)
        .collect()
}

#[test]
fn the_code_s_rules_break_no_invariant() {
    assert_eq!(broken(Variant::FIXED), Vec::<&str>::new());
}

#[test]
fn the_code_s_rules_break_no_invariant_in_a_transaction() {
    assert_eq!(
        broken_in(transactional(), Variant::FIXED),
        Vec::<&str>::new()
    );
}

#[test]
fn the_code_s_rules_break_no_invariant_held_by_the_transaction() {
    assert_eq!(broken_in(lock_held(), Variant::FIXED), Vec::<&str>::new());
}

#[test]
fn the_code_s_rules_break_no_invariant_with_steps() {
    assert_eq!(broken_in(steps(), Variant::FIXED), Vec::<&str>::new());
}

#[test]
fn the_code_s_rules_break_no_invariant_with_database_steps() {
    assert_eq!(
        broken_in(database_steps(), Variant::FIXED),
        Vec::<&str>::new()
    );
}

#[test]
fn a_journal_write_without_the_held_condition_is_found() {
    let found = broken_in(
        steps(),
        Variant {
            journal_without_fence: true,
            ..Variant::FIXED
        },
    );
    assert!(
        found
            .contains(&"steps, a journal write is applied only for the attempt holding the record"),
        "{found:?}"
    );
}

#[test]
fn a_begin_that_clears_the_journal_is_found() {
    let found = broken_in(
        steps(),
        Variant {
            begin_clears_steps: true,
            ..Variant::FIXED
        },
    );
    assert_eq!(
        found,
        vec!["steps, a journaled step never runs again in its record's lifetime (by a holder or a healthy attempt)"]
    );
    let found = broken_in(
        database_steps(),
        Variant {
            begin_clears_steps: true,
            ..Variant::FIXED
        },
    );
    assert!(
        found.contains(
            &"steps, database steps commit at most one effect per step per record lifetime"
        ),
        "{found:?}"
    );
}

/// The faulty journal is the code's but on a record in progress held by another
/// attempt (another owner or fence), where it applies and the code refuses.
#[test]
fn the_faulty_journal_differs_from_the_code_only_on_another_attempt_s_record() {
    let faulty = Variant {
        journal_without_fence: true,
        ..Variant::FIXED
    };
    let at = attempt(idem_core::RecordId::new("model", [0; 32]), "c0g0", 3);
    let step = idem_core::store::StepRecord {
        name: "s0".to_owned(),
        outcome: Some(idem_core::store::Outcome::Ok),
        data: Some(b"0".to_vec().into()),
        codec: idem_core::store::Codec::Json,
    };
    let mut differs = 0;
    for record in records(&at) {
        let others = record.as_ref().is_some_and(|r| {
            r.state == idem_core::store::State::InProgress
                && (r.owner != at.owner || r.fence != at.fence)
        });
        let (mut mine, mut code, mut fixed) = (record.clone(), record.clone(), record.clone());
        let by_variant = faulty.journal(mine.as_mut(), &at, &step);
        let by_code = protocol::journal(code.as_mut(), &at, &step);
        assert_eq!(Variant::FIXED.journal(fixed.as_mut(), &at, &step), by_code);
        if others {
            assert_eq!(by_variant, Written::Applied(()));
            assert!(matches!(by_code, Written::Refused(_)));
            differs += 1;
        } else {
            assert_eq!((by_variant, mine), (by_code, code), "{record:?}");
        }
    }
    assert!(differs > 0);
}

/// The faulty begin is the code's but for the journal: the same record, with no steps.
#[test]
fn the_faulty_begin_differs_from_the_code_only_in_the_journal() {
    let faulty = Variant {
        begin_clears_steps: true,
        ..Variant::FIXED
    };
    let at = attempt(idem_core::RecordId::new("model", [0; 32]), "c0g0", 3);
    let request = begin_at(&at.id, "c1g0", T0 + LEASE_MS, None);
    let mut with_steps = idem_core::testkit::TERMS
        .begin(&at.id, at.owner, T0, None)
        .record(at.fence);
    with_steps
        .steps
        .write(idem_core::store::StepRecord::started("s0"));
    for current in [None, Some(with_steps)] {
        let by_code = protocol::begun(current.as_ref(), &request, 4);
        assert_eq!(Variant::FIXED.begun(current.as_ref(), &request, 4), by_code);
        let mine = faulty.begun(current.as_ref(), &request, 4);
        assert!(mine.steps.is_empty());
        assert_eq!(
            mine,
            idem_core::store::Record {
                steps: idem_core::store::Steps::new(),
                ..by_code
            }
        );
    }
}

#[test]
fn a_held_key_s_fence_taken_from_the_row_alone_is_found() {
    let found = broken_in(
        lock_held(),
        Variant {
            fence_from_row: true,
            ..Variant::FIXED
        },
    );
    assert_eq!(
        found,
        vec!["held by the transaction, every holder's fence is above every earlier one's"]
    );
}

/// The faulty hold is the code's but for the fence: the same condition and answer,
/// the row's fence plus one where the code adds the sequence's value.
#[test]
fn the_faulty_hold_differs_from_the_code_only_in_its_fence() {
    let faulty = Variant {
        fence_from_row: true,
        ..Variant::FIXED
    };
    let at = attempt(idem_core::RecordId::new("model", [0; 32]), "c0g0", 3);
    let request = begin_at(&at.id, "c1g0", T0 + LEASE_MS, None);
    let (mut applied, mut refused) = (0, 0);
    for record in records(&at) {
        let drawn = 7;
        let by_code = protocol::hold(record.as_ref(), &request, drawn);
        assert_eq!(
            Variant::FIXED.hold(record.as_ref(), &request, drawn),
            by_code
        );
        match (faulty.hold(record.as_ref(), &request, drawn), by_code) {
            (Written::Applied(mine), Written::Applied(code)) => {
                let row = record.as_ref().map_or(0, |r| r.fence);
                assert_eq!((mine, code), (row + 1, row + drawn), "{record:?}");
                applied += 1;
            }
            (mine, code) => {
                assert_eq!(mine, code, "{record:?}");
                refused += 1;
            }
        }
    }
    assert!(
        applied > 0 && refused > 0,
        "{applied} applied, {refused} refused"
    );
}

#[test]
fn a_lost_commit_settled_by_the_read_alone_is_found() {
    let found = broken_in(
        transactional(),
        Variant {
            settle_by_read_only: true,
            ..Variant::FIXED
        },
    );
    assert_eq!(
        found,
        vec!["in a transaction, a call told nothing persisted has nothing committed"]
    );
}

#[test]
fn a_first_heartbeat_counted_from_the_body_s_start_is_found() {
    let found = broken(Variant {
        first_beat_from_body_start: true,
        ..Variant::FIXED
    });
    assert!(found.contains(&"one holder"), "{found:?}");
    assert!(
        found.contains(&"a healthy holder keeps its lease"),
        "{found:?}"
    );
    assert!(
        found.contains(
            &"runs at most one plus the attempts that crashed, failed or lost their lease"
        ),
        "{found:?}"
    );
}

#[test]
fn an_extend_that_renews_a_released_lease_is_found() {
    let found = broken(Variant {
        extend_after_release: true,
        ..Variant::FIXED
    });
    assert_eq!(found, vec!["a released key can be begun at once"]);
}

/// Records an extend may meet: absent, held and live, held and lapsed, held and
/// released, completed, and another attempt's.
fn records(at: &Attempt) -> Vec<Option<Arc<Record>>> {
    let mut held = idem_core::testkit::TERMS
        .begin(&at.id, at.owner, T0, None)
        .record(at.fence);
    let mut out = vec![None, Some(held.clone())];
    held.lease_until_ms = T0 - 1;
    out.push(Some(held.clone()));
    held.lease_until_ms = 0;
    out.push(Some(held.clone()));
    let mut completed = held.clone();
    completed.state = idem_core::store::State::Completed;
    out.push(Some(completed));
    out.push(Some(
        begin_at(&at.id, "someone else", T0, None).record(at.fence + 1),
    ));
    out.into_iter().map(|record| record.map(Arc::new)).collect()
}

#[test]
fn the_faulty_extend_differs_from_the_code_only_on_a_released_lease() {
    let at = attempt(idem_core::RecordId::new("model", [0; 32]), "c0g0", 3);
    let renewal = renewal_at(T0 + 1_000);
    let faulty = Variant {
        extend_after_release: true,
        ..Variant::FIXED
    };
    for record in records(&at) {
        let released = record.as_ref().is_some_and(|r| {
            r.state == idem_core::store::State::InProgress && r.lease_until_ms == 0
        });
        let (mut mine, mut code, mut fixed) = (record.clone(), record.clone(), record.clone());
        let by_variant = faulty.extend(mine.as_mut(), &at, &renewal);
        let by_code = protocol::extend(code.as_mut(), &at, &renewal);
        assert_eq!(
            Variant::FIXED.extend(fixed.as_mut(), &at, &renewal),
            by_code,
            "the fixed variant is the code's extend"
        );
        if released {
            assert_eq!(by_variant, Written::Applied(()));
            assert!(matches!(by_code, Written::Refused(_)));
        } else {
            assert_eq!((by_variant, mine), (by_code, code), "{record:?}");
        }
    }
}

#[test]
fn the_faulty_schedule_differs_from_the_code_only_when_the_body_starts_late() {
    let terms = Terms {
        lease_ms: LEASE_MS,
        ttl_ms: TTL_MS,
    };
    let lease_until = T0 + LEASE_MS;
    let faulty = Variant {
        first_beat_from_body_start: true,
        ..Variant::FIXED
    };
    // The body starts as the lease starts (begin answered at once): the same beat.
    assert_eq!(
        faulty.first_beat_ms(&terms, lease_until, T0),
        terms.first_beat_ms(lease_until)
    );
    assert_eq!(
        Variant::FIXED.first_beat_ms(&terms, lease_until, T0 + 5_000),
        terms.first_beat_ms(lease_until)
    );
    // A slow begin: the faulty beat comes as much later as begin was slow.
    assert_eq!(
        faulty.first_beat_ms(&terms, lease_until, T0 + 5_000),
        terms.first_beat_ms(lease_until) + 5_000
    );
}
