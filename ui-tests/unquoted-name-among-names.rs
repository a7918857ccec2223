// The rule for a lower-case word holds for every name of several.
use lockattr::exclusive;

#[exclusive("artifacts", deploy_prod)]
fn deploy() -> Result<(), lockattr::Error> {
    Ok(())
}

fn main() {
    let _ = deploy();
}
