//! A body that starts with inner attributes, in an edition-2021 crate.
#![deny(unused_variables)] // the inner `#![allow]`s below must cover the parameters

mod common;

use common::{busy_elsewhere, OwnDir};
use lockattr::exclusive;

// Compiles only if the inner attribute applies to the whole function, as it
// does without the attribute: the parameter is unused too.
#[exclusive("e2021-inner-attr", on_busy = 0)]
fn inner_attribute(unused: u32) -> u32 {
    #![allow(unused_variables)]
    let also_unused = 1;
    assert!(busy_elsewhere("e2021-inner-attr"), "runs under the lock");
    2
}

#[exclusive("e2021-inner-attr-async", on_busy = 0)]
async fn inner_attribute_async(unused: u32) -> u32 {
    #![allow(unused_variables)]
    let also_unused = 1;
    tokio::task::yield_now().await;
    assert!(
        busy_elsewhere("e2021-inner-attr-async"),
        "runs under the lock"
    );
    3
}

#[test]
fn a_body_may_start_with_an_inner_attribute() {
    let _dir = OwnDir::new();
    assert_eq!(inner_attribute(0), 2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    assert_eq!(rt.block_on(inner_attribute_async(0)), 3);
}
