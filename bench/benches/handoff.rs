fn main() {
    eprintln!("hand-off benchmark: not written yet (issue 3)");
}
