//! Compile-time behaviour of #[idempotent]: every supported shape compiles, and every
//! misuse is an error that says what to write instead.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
