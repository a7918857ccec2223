use lockattr::exclusive;

#[exclusive("deploy", crate = "tools::<u8>")]
fn deploy() -> Result<(), lockattr::Error> {
    Ok(())
}

fn main() {}
