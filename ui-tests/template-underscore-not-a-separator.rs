use lockattr::exclusive;

// `_` starts an escape in a value (`_2F` for `/`), so it cannot tell two
// placeholders apart: "a_2F" + "b" and "a" + "2F_b" would be one file.
#[exclusive("deploy-{env}_{region}")]
fn deploy(env: &str, region: &str) -> Result<(), lockattr::Error> {
    let _ = (env, region);
    Ok(())
}

fn main() {}
