use lockattr::exclusive;

#[exclusive("build-deploy", on_busy = async |err| Err(err))]
async fn build() -> Result<(), lockattr::Error> {
    Ok(())
}

fn main() {
    let _ = build();
}
