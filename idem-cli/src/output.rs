//! How answers are printed: a two-column table for people, JSON for scripts.

use std::time::{Duration, UNIX_EPOCH};

use crate::ops::{Forgotten, Inspected, RecordView};

/// An epoch-millisecond instant in RFC 3339 (UTC), with how far it is from `now_ms`.
pub fn instant_ms(ms: u64, now_ms: u64) -> String {
    let at = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms));
    let distance = |d: u64| humantime::format_duration(Duration::from_secs(d / 1000)).to_string();
    if ms >= now_ms {
        format!("{at} (in {})", distance(ms - now_ms))
    } else {
        format!("{at} ({} ago)", distance(now_ms - ms))
    }
}

/// The record as `field  value` lines.
pub fn record_table(view: &RecordView, now_ms: u64) -> String {
    let lease = if view.lease_until_ms == 0 {
        "0 (released)".to_owned()
    } else {
        format!(
            "{} {}",
            view.lease_until_ms,
            instant_ms(view.lease_until_ms, now_ms)
        )
    };
    let rows: [(&str, String); 10] = [
        ("id", view.id.clone()),
        ("state", view.state.clone()),
        (
            "live",
            if view.live {
                "yes (a call now would be refused or replayed)".to_owned()
            } else {
                "no (free: the next call runs the body)".to_owned()
            },
        ),
        ("fence", view.fence.to_string()),
        ("owner", view.owner.clone()),
        ("lease until", lease),
        (
            "expires at",
            format!(
                "{} {}",
                view.expires_at_s,
                instant_ms(view.expires_at_s.saturating_mul(1000), now_ms)
            ),
        ),
        (
            "outcome",
            view.outcome.clone().unwrap_or_else(|| "-".to_owned()),
        ),
        (
            "outcome size",
            view.outcome_bytes
                .map_or_else(|| "-".to_owned(), |n| format!("{n} bytes")),
        ),
        (
            "fingerprint",
            if view.fingerprint { "yes" } else { "no" }.to_owned(),
        ),
    ];
    let mut out = String::new();
    for (field, value) in rows {
        out.push_str(&format!("{field:<13} {value}\n"));
    }
    out
}

/// What `inspect` shows as `field  value` lines: the record, then its journal of
/// steps, a line each (`-` when it has none).
pub fn inspected_table(inspected: &Inspected, now_ms: u64) -> String {
    let mut out = record_table(&inspected.record, now_ms);
    if inspected.steps.is_empty() {
        out.push_str(&format!("{:<13} -\n", "steps"));
    }
    for (i, step) in inspected.steps.iter().enumerate() {
        let label = if i == 0 { "steps" } else { "" };
        let size = step
            .bytes
            .map_or_else(String::new, |n| format!(" ({n} bytes)"));
        out.push_str(&format!(
            "{label:<13} {}: {}{size}\n",
            step.name, step.state
        ));
    }
    out
}

/// Records as a table with one line each.
pub fn list_table(views: &[RecordView]) -> String {
    let mut out = format!(
        "{:<11} {:<5} {:>6}  {:<30} {:<24} {}\n",
        "STATE", "LIVE", "FENCE", "LEASE UNTIL", "EXPIRES", "ID"
    );
    for v in views {
        let lease = if v.lease_until_ms == 0 {
            "released".to_owned()
        } else {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(v.lease_until_ms))
                .to_string()
        };
        let expires =
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(v.expires_at_s));
        out.push_str(&format!(
            "{:<11} {:<5} {:>6}  {:<30} {:<24} {}\n",
            v.state,
            if v.live { "yes" } else { "no" },
            v.fence,
            lease,
            expires,
            v.id
        ));
    }
    out
}

/// What forget did, for people.
pub fn forgotten_text(forgotten: &Forgotten) -> String {
    let how = match forgotten.action {
        "released" => format!(
            "released the {} record in its holder's name (owner {}, fence {})",
            forgotten.before.state, forgotten.before.owner, forgotten.before.fence
        ),
        _ => format!(
            "took the {} record over and released it (fence {} -> {})",
            forgotten.before.state, forgotten.before.fence, forgotten.fence
        ),
    };
    let mut out = format!(
        "forgot `{}`: {how}; the next call runs the body with a fence above {}\n",
        forgotten.id, forgotten.fence
    );
    if let Some(note) = &forgotten.note {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}
