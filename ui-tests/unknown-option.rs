use lockattr::exclusive;

#[exclusive("build-deploy", timeout = "5s")]
fn build() {}

fn main() {
    build();
}
