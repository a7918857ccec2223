use lockattr::exclusive;

#[exclusive("build-deploy", on_busy = "busy")]
fn build() -> u8 {
    0
}

fn main() {
    build();
}
