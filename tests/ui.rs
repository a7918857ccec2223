//! Compile-time checks of `#[exclusive]`: each file in `ui-tests/` must fail
//! to compile with exactly the diagnostics in its `.stderr`.

#[test]
#[cfg_attr(
    lockattr_portable,
    ignore = "the macro's diagnostics do not depend on the runtime's portable fallbacks"
)]
fn ui() {
    trybuild::TestCases::new().compile_fail("ui-tests/*.rs");
}
