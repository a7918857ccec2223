use lockattr::exclusive;

#[exclusive("build-deploy")]
fn build() -> Result<u32, lockattr::Error> {
    let count: u32 = "three";
    Ok(count)
}

fn main() {
    let _ = build();
}
