use lockattr::exclusive;

#[exclusive(crate = "lockattr")]
fn build() {}

fn main() {
    build();
}
