//! The storm's outcome.

use std::collections::BTreeMap;
use std::fmt;

/// The storm's outcome: counts, and every invariant that did not hold.
#[derive(Debug, Default)]
pub struct StormReport {
    /// Events, deliveries (with redeliveries), calls, body runs, ...
    pub counts: BTreeMap<&'static str, usize>,
    /// Errors callers got, by kind.
    pub errors: BTreeMap<&'static str, usize>,
    /// Each invariant checked, with how many keys it was checked on.
    pub checked: Vec<(&'static str, usize)>,
    /// Every violation, one line each. Empty when the guarantee held.
    pub violations: Vec<String>,
}

impl fmt::Display for StormReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, count) in &self.counts {
            writeln!(f, "{name:>28}: {count}")?;
        }
        for (kind, count) in &self.errors {
            writeln!(f, "{:>28}: {count}", format!("error {kind}"))?;
        }
        for (invariant, keys) in &self.checked {
            writeln!(f, "checked on {keys} keys: {invariant}")?;
        }
        match self.violations.len() {
            0 => writeln!(f, "every invariant held"),
            n => {
                writeln!(f, "{n} violations:")?;
                for violation in &self.violations {
                    writeln!(f, "  {violation}")?;
                }
                Ok(())
            }
        }
    }
}
