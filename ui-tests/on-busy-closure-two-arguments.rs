use lockattr::exclusive;

#[exclusive("build-deploy", on_busy = |err, attempt| Err(err))]
fn build() -> Result<(), lockattr::Error> {
    Ok(())
}

fn main() {
    let _ = build();
}
