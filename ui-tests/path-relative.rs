use lockattr::exclusive;

#[exclusive(path = "rel")]
fn build() {}

fn main() {
    build();
}
