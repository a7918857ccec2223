// The closure's argument is the busy `lockattr::Error`, by value.
use lockattr::exclusive;

#[exclusive("build-deploy", on_busy = |err: std::io::Error| Err(err))]
fn build() -> std::io::Result<()> {
    Ok(())
}

fn main() {
    let _ = build();
}
