//! The knobs of a storm.

use std::time::Duration;

/// The knobs of a storm.
#[derive(Debug, Clone)]
pub struct StormConfig {
    /// How many distinct events (keys).
    pub events: usize,
    /// The share of events delivered more than once (a third of those three times).
    pub duplicate_rate: f64,
    /// The share of body runs that crash (half before, half after the side effect).
    pub crash_rate: f64,
    /// The share of body runs that return an error (the key is released).
    pub error_rate: f64,
    /// The share of deliveries before which the clock jumps past the lease.
    pub clock_jump_rate: f64,
    /// The share of body runs that pause past their lease after the side effect (the
    /// clock jumps while the body blocks its thread, starving its heartbeats), as a
    /// process paused by the OS or a long GC would: duplicates may take over.
    pub zombie_rate: f64,
    /// The share of store calls that meet a fault.
    pub fault_rate: f64,
    /// A body takes a random time up to this (real time) around its side effect, so
    /// that clock jumps land while bodies run.
    pub max_body_time: Duration,
    /// How many deliveries run at once.
    pub concurrency: usize,
    /// The seed of every random choice.
    pub seed: u64,
}

impl Default for StormConfig {
    fn default() -> Self {
        StormConfig {
            events: 1000,
            duplicate_rate: 0.3,
            crash_rate: 0.05,
            error_rate: 0.05,
            clock_jump_rate: 0.02,
            zombie_rate: 0.02,
            fault_rate: 0.02,
            max_body_time: Duration::from_millis(2),
            concurrency: 32,
            seed: 7,
        }
    }
}
