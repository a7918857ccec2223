// `#[async_trait]`'s return type, but statements before `Box::pin`: they
// would run when the function is called, outside the lock.
use lockattr::exclusive;
use std::future::Future;
use std::pin::Pin;

struct Tool;

impl Tool {
    #[exclusive("build-deploy")]
    fn build<'a>(&'a self) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        let started = std::time::Instant::now();
        Box::pin(async move {
            let _ = started;
        })
    }
}

fn main() {
    let _ = Tool.build();
}
