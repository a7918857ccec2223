// A `Result<impl Trait, E>` gets `Err` when busy like any `Result`, so `E`
// must convert from `lockattr::Error`; `String` does not.
use lockattr::exclusive;

#[exclusive("build-deploy")]
fn evens() -> Result<impl Iterator<Item = u32>, String> {
    Ok((0..10).filter(|n| n % 2 == 0))
}

fn main() {
    let _ = evens();
}
