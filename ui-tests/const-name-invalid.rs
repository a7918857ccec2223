use lockattr::{LockName, exclusive};

const BUILD_DEPLOY: LockName = LockName::new("build/deploy");

#[exclusive(BUILD_DEPLOY)]
fn build() {}

fn main() {
    build();
}
