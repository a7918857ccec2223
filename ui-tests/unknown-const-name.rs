use lockattr::{LockName, exclusive};

const BUILD_DEPLOY: LockName = LockName::new("build-deploy");

#[exclusive(BUILD_DEPOLY)]
fn build() {}

fn main() {
    let _ = BUILD_DEPLOY;
    build();
}
