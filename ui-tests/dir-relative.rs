use lockattr::exclusive;

#[exclusive("build-deploy", dir = "rel")]
fn build() {}

fn main() {
    build();
}
