// A bare word after the name is an unknown option (or a name without its
// quotes): the error lists the options and says both.
use lockattr::exclusive;

#[exclusive("build-deploy", blocking)]
fn build() {}

fn main() {
    build();
}
