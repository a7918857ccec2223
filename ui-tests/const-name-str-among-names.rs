// Also among several names, a `const` must be a checked `LockName`.
use lockattr::exclusive;

const DEPLOY: &str = "deploy";

#[exclusive("artifacts", DEPLOY)]
fn deploy() -> Result<(), lockattr::Error> {
    Ok(())
}

fn main() {
    let _ = deploy();
}
