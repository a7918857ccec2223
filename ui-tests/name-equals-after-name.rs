// `name = ...` is no option either, after a first name.
use lockattr::exclusive;

#[exclusive("artifacts", name = "deploy")]
fn deploy() -> Result<(), lockattr::Error> {
    Ok(())
}

fn main() {
    let _ = deploy();
}
