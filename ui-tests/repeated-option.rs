use lockattr::exclusive;

#[exclusive("build-deploy", shared, on_busy = (), shared)]
fn build() {}

fn main() {
    build();
}
