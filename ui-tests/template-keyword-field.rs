use lockattr::exclusive;

struct Job;

impl Job {
    // A field cannot be named `fn`: the placeholder could not be written as
    // an expression.
    #[exclusive("job-{self.fn}")]
    fn run(&self) -> Result<(), lockattr::Error> {
        Ok(())
    }
}

fn main() {}
