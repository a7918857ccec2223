use lockattr::exclusive;

// The fixed start of a name is checked like a whole name: no hidden file.
#[exclusive(".{env}")]
fn deploy(env: &str) -> Result<(), lockattr::Error> {
    let _ = env;
    Ok(())
}

fn main() {}
