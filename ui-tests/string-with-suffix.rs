use lockattr::exclusive;

#[exclusive("build-deploy", wait = "5s"x)]
fn build() {}

fn main() {
    build();
}
