#![deny(unused_must_use)]

use lockattr::exclusive;

// `u32` is not `#[must_use]` itself: only the function's own attribute,
// kept by the macro, can make ignoring the count an error.
#[exclusive("build-deploy", on_busy = 0)]
#[must_use = "the count of built targets says whether anything was built"]
fn build() -> u32 {
    1
}

fn main() {
    build();
}
