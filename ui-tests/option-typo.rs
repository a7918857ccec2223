use lockattr::exclusive;

#[exclusive("deploy", shard)]
fn deploy() -> Result<(), lockattr::Error> {
    Ok(())
}

fn main() {}
