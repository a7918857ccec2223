use lockattr::exclusive;

#[exclusive(42)]
fn build() {}

fn main() {
    build();
}
