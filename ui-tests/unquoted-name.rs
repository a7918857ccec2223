// A lower-case word where a name goes is taken as a name without its quotes.
use lockattr::exclusive;

#[exclusive(build_deploy)]
fn build() {}

fn main() {
    build();
}
