// rustc's own diagnostic for a body whose last expression ends in `;`
// still points into the body and offers to remove the semicolon.
use lockattr::exclusive;

#[exclusive("build-deploy")]
fn count() -> Result<u32, lockattr::Error> {
    let n = 3;
    Ok(n);
}

fn main() {
    let _ = count();
}
