use lockattr::exclusive;

#[exclusive("build-deploy")]
fn evens() -> impl Iterator<Item = u32> {
    (0..10).filter(|n| n % 2 == 0)
}

fn main() {
    evens();
}
