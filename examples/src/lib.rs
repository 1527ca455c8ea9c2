//! Code the examples share, kept in a library so that `examples/tests` can test it.

pub mod cfn;
