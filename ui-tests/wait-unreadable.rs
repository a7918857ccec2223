use lockattr::exclusive;

#[exclusive("build-deploy", wait = "5 minutes")]
fn build() {}

fn main() {
    build();
}
