use lockattr::exclusive;

#[exclusive("build-deploy", wait = "99999999999999999999h")]
fn build() {}

fn main() {
    build();
}
