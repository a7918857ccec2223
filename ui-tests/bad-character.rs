use lockattr::exclusive;

#[exclusive("a/b")]
fn build() {}

fn main() {
    build();
}
