use lockattr::exclusive;

#[exclusive("deploy", on_bsy = Ok(()))]
fn deploy() -> Result<(), lockattr::Error> {
    Ok(())
}

fn main() {}
