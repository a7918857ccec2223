// A future named by its type, not by a name the macro could read: refused
// by what it is. With `on_busy` this is the only error.
use lockattr::exclusive;
use std::future::Ready;

#[exclusive("build-deploy", on_busy = std::future::ready(0))]
fn build() -> Ready<u32> {
    std::future::ready(1)
}

fn main() {
    let _ = build();
}
