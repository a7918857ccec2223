use lockattr::exclusive;
use std::future::Future;

#[exclusive("build-deploy")]
fn build() -> impl Future<Output = ()> {
    async {}
}

fn main() {
    let _ = build();
}
