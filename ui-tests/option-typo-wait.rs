use lockattr::exclusive;

#[exclusive("deploy", wiat)]
fn deploy() -> Result<(), lockattr::Error> {
    Ok(())
}

fn main() {}
