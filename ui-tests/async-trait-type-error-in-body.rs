// Under `#[async_trait]` and `#[exclusive]`, rustc's own diagnostic about
// the body still points at the user's code.
use async_trait::async_trait;
use lockattr::exclusive;

#[async_trait]
trait Service {
    async fn count(&self) -> Result<u32, lockattr::Error>;
}

struct Real;

#[async_trait]
impl Service for Real {
    #[exclusive("build-deploy")]
    async fn count(&self) -> Result<u32, lockattr::Error> {
        let count: u32 = "three";
        Ok(count)
    }
}

fn main() {}
