//! Compiles the macro crate's modules into this library, whatever they are:
//! the `mod` lines of `lockattr-macros/src/lib.rs` (its trampoline, which
//! needs `proc_macro`, stays out) become an inline module whose `#[path]`
//! is that `src/` directory, so a module's own submodules resolve there as
//! they do in the macro crate, and `crate::args` and the like resolve
//! through a re-export.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let src = manifest
        .join("../lockattr-macros/src")
        .canonicalize()
        .unwrap();
    let lib = src.join("lib.rs");
    println!("cargo::rerun-if-changed={}", lib.display());
    let text = fs::read_to_string(&lib).unwrap();

    // `#[cfg(..)]` and the like go on both the module and its re-export.
    let mut attrs = Vec::new();
    let mut decls = String::new();
    let mut uses = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("#[") {
            attrs.push(line);
            continue;
        }
        let rest = line
            .strip_prefix("pub(crate) ")
            .or_else(|| line.strip_prefix("pub "))
            .unwrap_or(line);
        if let Some(name) = rest.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
            for attr in &attrs {
                writeln!(decls, "    {attr}").unwrap();
                writeln!(uses, "{attr}").unwrap();
            }
            writeln!(decls, "    pub(crate) mod {name};").unwrap();
            writeln!(
                uses,
                "#[allow(unused_imports)]\npub(crate) use macro_src::{name};"
            )
            .unwrap();
        }
        attrs.clear();
    }
    assert!(
        !decls.is_empty(),
        "no `mod name;` line in {}: the harness cannot find the macro's modules",
        lib.display()
    );

    let generated = format!(
        "#[path = {path:?}]\n#[allow(dead_code, unused_imports, unreachable_pub)]\nmod macro_src {{\n{decls}}}\n{uses}",
        path = src.display().to_string(),
    );
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("macro_modules.rs");
    fs::write(out, generated).unwrap();
}
