use lockattr::exclusive;

#[exclusive("")]
fn build() {}

fn main() {
    build();
}
