use lockattr::exclusive;

#[exclusive("build-deploy", wait = 5)]
fn build() {}

fn main() {
    build();
}
