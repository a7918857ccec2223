use lockattr::exclusive;

#[exclusive("deploy", sahred)]
fn deploy() -> Result<(), lockattr::Error> {
    Ok(())
}

fn main() {}
