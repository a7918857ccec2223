use lockattr::exclusive;

#[exclusive("build-deploy", on_busy = || 0)]
fn build() -> u32 {
    1
}

fn main() {
    let _ = build();
}
