use lockattr::exclusive;

#[exclusive("build-deploy", on_busy)]
fn build() {}

fn main() {
    build();
}
