// An `impl Trait` the body cannot name is judged by its trait's name, also
// inside another type and as `IntoFuture`.
use lockattr::exclusive;
use std::future::IntoFuture;

#[exclusive("build-deploy", on_busy = None)]
fn build() -> Option<impl IntoFuture<Output = ()>> {
    Some(async {})
}

fn main() {
    let _ = build();
}
