//! The README's examples, compiled and run as doc tests:
//! `cargo test -p lockattr-readme --doc`. `build.rs` copies the README and
//! gives each runnable example a lock directory of its own; an example
//! whose running would be wrong (an `#[exclusive] fn main`, which would
//! lock in the host's directory) is marked `rust,no_run` and only compiled.

#[cfg(doctest)]
#[doc = include_str!(concat!(env!("OUT_DIR"), "/README.md"))]
pub struct Readme;
