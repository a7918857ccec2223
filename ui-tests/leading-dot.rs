use lockattr::exclusive;

#[exclusive(".hidden")]
fn build() {}

fn main() {
    build();
}
