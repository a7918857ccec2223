//! Built without lockattr's `postgres` feature: with `LOCKATTR_URL` set,
//! its lock must be an error, never a local lock file.

#[lockattr::exclusive("no-postgres")]
fn run() -> Result<(), lockattr::Error> {
    Ok(())
}

fn main() {
    match run() {
        Ok(()) => println!("OUTCOME HELD"),
        Err(err) => println!("OUTCOME {:?} {err}", err.kind()),
    }
}
