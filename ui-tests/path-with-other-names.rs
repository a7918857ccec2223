use lockattr::exclusive;

#[exclusive(path = "/run/lock/tool.lock", "deploy")]
fn deploy() -> Result<(), lockattr::Error> {
    Ok(())
}

fn main() {}
