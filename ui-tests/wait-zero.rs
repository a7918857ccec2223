use lockattr::exclusive;

#[exclusive("build-deploy", wait = "0s")]
fn build() {}

fn main() {
    build();
}
