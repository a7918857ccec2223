use lockattr::exclusive;

#[exclusive("build-deploy")]
struct Build;

fn main() {
    let _ = Build;
}
