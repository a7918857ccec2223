use lockattr::exclusive;

// "a-b" + "c" and "a" + "b-c" would be one file.
#[exclusive("deploy-{env}{region}")]
fn deploy(env: &str, region: &str) -> Result<(), lockattr::Error> {
    let _ = (env, region);
    Ok(())
}

fn main() {}
