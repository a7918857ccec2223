// What `#[async_trait]` turns an `async fn` into.
use lockattr::exclusive;
use std::future::Future;
use std::pin::Pin;

struct Tool;

impl Tool {
    #[exclusive("build-deploy")]
    fn build<'a>(&'a self) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {})
    }
}

fn main() {
    let _ = Tool.build();
}
