use lockattr::exclusive;

// 201 bytes outside the placeholder: too long whatever the value.
#[exclusive(
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx-{env}-y"
)]
fn deploy(env: &str) -> Result<(), lockattr::Error> {
    let _ = env;
    Ok(())
}

fn main() {}
