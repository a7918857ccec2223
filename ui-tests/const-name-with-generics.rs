use lockattr::exclusive;

#[exclusive(NAMES<u8>)]
fn deploy() -> Result<(), lockattr::Error> {
    Ok(())
}

fn main() {}
