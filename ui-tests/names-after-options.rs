use lockattr::exclusive;

#[exclusive("artifacts", wait, "deploy")]
fn deploy() -> Result<(), lockattr::Error> {
    Ok(())
}

fn main() {}
