use lockattr::exclusive;
use std::pin::Pin;

type Job = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

#[exclusive("build-deploy")]
fn build() -> Job {
    Box::pin(async {})
}

fn main() {
    let _ = build();
}
