use lockattr::exclusive;

trait Tool {
    #[exclusive("build-deploy")]
    fn build(&self);
}

fn main() {}
