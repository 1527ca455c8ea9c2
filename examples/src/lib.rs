//! Shared helpers of idem's examples.
