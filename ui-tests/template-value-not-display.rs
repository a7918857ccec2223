use lockattr::exclusive;

struct Env;

#[exclusive("deploy-{env}")]
fn deploy(env: Env) -> Result<(), lockattr::Error> {
    let _ = env;
    Ok(())
}

fn main() {}
