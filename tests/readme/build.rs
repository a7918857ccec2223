//! Copies the README for `src/lib.rs` to run as doc tests, each runnable
//! Rust example given a lock directory of its own.
//!
//! A README shown on GitHub cannot hide lines, and its examples must not
//! lock in the host-wide `/run/lock`: two test runs at once would meet
//! there, and the lock files would stay. So this copy starts each example
//! with `let _dir = ::lockattr::__private::doc_dir();` (a fresh directory,
//! pinned as the process's default and removed at the end, as the hidden
//! first line of the crate's own doc examples does), at the start of the
//! first line of code, or in `fn main` when the example has one, so that
//! every line keeps its number in failure messages. Examples marked
//! `no_run`, `ignore` or `compile_fail` are copied as they are.

use std::fmt::Write as _;
use std::path::Path;

const SETUP: &str = "let _dir = ::lockattr::__private::doc_dir(); ";

fn main() {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    println!("cargo::rerun-if-changed={}", readme.display());
    let text = std::fs::read_to_string(&readme)
        .unwrap_or_else(|err| panic!("read {}: {err}", readme.display()));
    let out =
        Path::new(&std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("README.md");
    std::fs::write(&out, with_lock_dirs(&text))
        .unwrap_or_else(|err| panic!("write {}: {err}", out.display()));
}

fn with_lock_dirs(readme: &str) -> String {
    let lines: Vec<&str> = readme.lines().collect();
    let mut edits: Vec<(usize, Edit)> = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        let Some((fence, info)) = fence(lines[at]) else {
            at += 1;
            continue;
        };
        let end = (at + 1..lines.len())
            .find(|&i| lines[i].trim_start().starts_with(fence))
            .unwrap_or_else(|| panic!("README.md:{}: unclosed code block", at + 1));
        if runs(info) {
            edits.push(setup(&lines, at + 1..end));
        }
        at = end + 1;
    }
    let mut out = String::with_capacity(readme.len() + edits.len() * SETUP.len());
    for (i, line) in lines.iter().enumerate() {
        match edits.iter().find(|(at, _)| *at == i) {
            Some((_, Edit::Prefix(indent))) => {
                let _ = writeln!(out, "{}{SETUP}{}", &line[..*indent], &line[*indent..]);
            }
            Some((_, Edit::Suffix)) => {
                let _ = writeln!(out, "{line} {SETUP}");
            }
            None => {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    out
}

enum Edit {
    /// Put the setup after this many bytes of indentation.
    Prefix(usize),
    /// Put the setup at the end of the line (`fn main() {`).
    Suffix,
}

/// An opening fence: its backticks (or tildes) and its info string.
fn fence(line: &str) -> Option<(&str, &str)> {
    let trimmed = line.trim_start();
    for fence in ["```", "~~~"] {
        if let Some(info) = trimmed.strip_prefix(fence) {
            return Some((fence, info.trim()));
        }
    }
    None
}

/// Whether rustdoc compiles and runs the block: Rust (no language, or
/// `rust`) and not `no_run`, `ignore` or `compile_fail`.
fn runs(info: &str) -> bool {
    let words: Vec<&str> = info
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|word| !word.is_empty())
        .collect();
    let rust = words.first().is_none_or(|&first| first == "rust");
    rust && !words
        .iter()
        .any(|word| matches!(*word, "no_run" | "ignore" | "compile_fail"))
}

/// Where a block's setup goes: in `fn main` if it has one (rustdoc then
/// does not wrap the block in a `main` of its own), else before its first
/// line of code.
fn setup(lines: &[&str], block: std::ops::Range<usize>) -> (usize, Edit) {
    let main = block.clone().find(|&i| {
        let code = lines[i].trim_start();
        let code = code.strip_prefix("pub ").unwrap_or(code);
        let code = code.strip_prefix("async ").unwrap_or(code);
        code.starts_with("fn main(")
    });
    if let Some(main) = main {
        assert!(
            lines[main].trim_end().ends_with('{'),
            "README.md:{}: end the `fn main` line with its `{{`, so that the doc test can put \
             its lock directory there",
            main + 1
        );
        // An `#[exclusive] fn main` locks before its body: in the host's
        // lock directory, before the doc test could pin its own.
        let attributes = lines[block.start..main]
            .iter()
            .rev()
            .take_while(|line| line.trim_start().starts_with("#["));
        for line in attributes {
            assert!(
                !line.contains("exclusive"),
                "README.md:{}: an `#[exclusive] fn main` takes its lock before the doc test can \
                 give it a lock directory of its own: mark the block `rust,no_run`",
                main + 1
            );
        }
        return (main, Edit::Suffix);
    }
    let first = block
        .clone()
        .find(|&i| !lines[i].trim().is_empty())
        .unwrap_or(block.start);
    let indent = lines[first].len() - lines[first].trim_start().len();
    (first, Edit::Prefix(indent))
}
