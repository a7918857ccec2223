use lockattr::exclusive;

#[exclusive(path = "/run/lock/tool.lock", dir = "/run/lock")]
fn build() {}

fn main() {
    build();
}
