use lockattr::exclusive;

#[exclusive("deploy-{}")]
fn deploy(env: &str) -> Result<(), lockattr::Error> {
    let _ = env;
    Ok(())
}

fn main() {}
