use lockattr::exclusive;

#[exclusive("build\0deploy")]
fn build() {}

fn main() {
    build();
}
