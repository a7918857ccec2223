fn main() {
    eprintln!("speed benchmark: not written yet (issue 4)");
}
