use lockattr::exclusive;

// `String` has no `From<lockattr::Error>`, so there is no `Err` to return
// when the lock is busy.
#[exclusive("build-deploy")]
fn build() -> Result<(), String> {
    Ok(())
}

fn main() {
    let _ = build();
}
