// `Box::pin` of a future made elsewhere: the lock cannot go inside it.
use lockattr::exclusive;
use std::future::Future;
use std::pin::Pin;

struct Tool;

impl Tool {
    async fn compile(&self) {}

    #[exclusive("build-deploy")]
    fn build<'a>(&'a self) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(self.compile())
    }
}

fn main() {
    let _ = Tool.build();
}
