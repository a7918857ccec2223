// proc-lock's syntax: the name is not given as `name = ...`.
use lockattr::exclusive;

#[exclusive(name = "build-deploy")]
fn build() {}

fn main() {
    build();
}
