//! Compile-time checks of `#[exclusive]`: each file in `ui-tests/` must fail
//! to compile with exactly the diagnostics in its `.stderr`.

#[test]
fn ui() {
    trybuild::TestCases::new().compile_fail("ui-tests/*.rs");
}
