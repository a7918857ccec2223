use lockattr::exclusive;

#[exclusive("build-deploy")]
const fn build() {}

fn main() {
    build();
}
