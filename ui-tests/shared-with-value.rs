use lockattr::exclusive;

#[exclusive("build-deploy", shared = true)]
fn build() {}

fn main() {
    build();
}
