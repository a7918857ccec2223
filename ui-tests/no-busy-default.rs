use lockattr::exclusive;

#[exclusive("build-deploy")]
fn build() -> i32 {
    42
}

fn main() {
    build();
}
