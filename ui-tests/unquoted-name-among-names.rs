// A lower-case word after the first name may be an option or a name
// without its quotes: the error lists the options and gives the quoted name.
use lockattr::exclusive;

#[exclusive("artifacts", deploy_prod)]
fn deploy() -> Result<(), lockattr::Error> {
    Ok(())
}

fn main() {
    let _ = deploy();
}
