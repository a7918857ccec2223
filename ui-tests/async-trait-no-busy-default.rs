// Under `#[async_trait]`, the busy outcome is the future's `Output`'s:
// `u32` has none, and the error points at it.
use async_trait::async_trait;
use lockattr::exclusive;

#[async_trait]
trait Service {
    async fn count(&self) -> u32;
}

struct Real;

#[async_trait]
impl Service for Real {
    #[exclusive("build-deploy")]
    async fn count(&self) -> u32 {
        3
    }
}

fn main() {}
