//! Replays the corpus through the fuzz targets' check on stable Rust, so
//! that CI needs neither nightly nor cargo-fuzz to know that no input in
//! `corpus/` makes the attribute panic or break its contract.

use lockattr_fuzz::{Outcome, check_structured, check_text};
use std::fs;
use std::path::Path;

fn replay(target: &str, check: fn(&[u8]) -> Outcome) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    let (mut expanded, mut refused, mut unlexable) = (0, 0, 0);
    for file in &files {
        let data = fs::read(file).unwrap();
        // The file's name first, should the check panic.
        eprintln!("{}", file.display());
        match check(&data) {
            Outcome::Expanded => expanded += 1,
            Outcome::Refused => refused += 1,
            Outcome::Unlexable => unlexable += 1,
        }
    }
    println!(
        "{target}: {} inputs: {expanded} expanded, {refused} refused, {unlexable} not tokens",
        files.len()
    );
    assert!(
        expanded > 0 && refused > 0,
        "the {target} corpus should reach both outcomes"
    );
}

#[test]
fn text_corpus() {
    replay("text", check_text);
}

#[test]
fn structured_corpus() {
    replay("structured", check_structured);
}
