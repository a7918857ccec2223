use lockattr::exclusive;

#[exclusive(path = "/run/lock/a.lock", path = "/run/lock/b.lock")]
fn build() {}

fn main() {
    build();
}
