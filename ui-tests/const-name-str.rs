// A `const` of type `&str` is not a checked lock name.
use lockattr::exclusive;

const BUILD_DEPLOY: &str = "build-deploy";

#[exclusive(BUILD_DEPLOY)]
fn build() {}

fn main() {
    build();
}
