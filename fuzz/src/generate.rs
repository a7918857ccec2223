//! The structured target's input: an option list and an item built from
//! the real syntax (names, templates with `{placeholders}`, every option,
//! duplicates, typos, garbage; functions sync and async, methods,
//! generics, `impl Trait`, `const fn`, no body, test attributes, inner
//! attributes, `return` and `?`), rendered to source text and lexed as a
//! compiler would. Small numbers index lists of fragments, so that most
//! bytes make something the parser has to think about.

use arbitrary::Arbitrary;
use std::fmt::{self, Write as _};

/// One generated input: `#[exclusive(ARGS)] ITEM`.
#[derive(Arbitrary)]
pub struct Case {
    args: Vec<(Arg, Sep)>,
    item: Item,
}

impl Case {
    /// The attribute's arguments, as source text.
    pub fn args(&self) -> String {
        let mut out = String::new();
        for (i, (arg, sep)) in self.args.iter().enumerate() {
            if i > 0 {
                sep.render(&mut out);
            }
            arg.render(&mut out);
        }
        out
    }

    /// The item, as source text.
    pub fn item(&self) -> String {
        let mut out = String::new();
        self.item.render(&mut out);
        out
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#[exclusive({})]\n{}", self.args(), self.item())
    }
}

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[usize::from(i) % list.len()]
}

#[derive(Arbitrary)]
enum Sep {
    Comma,
    Comma2,
    Comma3,
    CommaSpace,
    None,
    Space,
    Semicolon,
    Doubled,
    Eq,
}

impl Sep {
    fn render(&self, out: &mut String) {
        out.push_str(match self {
            Sep::Comma | Sep::Comma2 | Sep::Comma3 => ",",
            Sep::CommaSpace => ", ",
            Sep::None => "",
            Sep::Space => " ",
            Sep::Semicolon => ";",
            Sep::Doubled => ",,",
            Sep::Eq => "=",
        });
    }
}

#[derive(Arbitrary)]
enum Arg {
    Name(Lit),
    Name2(Lit),
    Const(ConstPath),
    Path(Lit),
    PathBare,
    PathEmpty,
    OnBusy(Expr),
    OnBusyBare,
    OnBusyEmpty,
    Wait,
    WaitFor(Lit),
    WaitDuration(Duration),
    WaitEmpty,
    Shared,
    SharedEq(Lit),
    Dir(Lit),
    Crate(CratePath),
    CrateLit(Lit),
    CrateBare,
    Key(u8, Option<Lit>),
    Garbage(u8),
    Raw(String),
}

impl Arg {
    fn render(&self, out: &mut String) {
        match self {
            Arg::Name(lit) | Arg::Name2(lit) => lit.render(out),
            Arg::Const(path) => path.render(out),
            Arg::Path(lit) => {
                out.push_str("path = ");
                lit.render(out);
            }
            Arg::PathBare => out.push_str("path"),
            Arg::PathEmpty => out.push_str("path ="),
            Arg::OnBusy(expr) => {
                out.push_str("on_busy = ");
                expr.render(out);
            }
            Arg::OnBusyBare => out.push_str("on_busy"),
            Arg::OnBusyEmpty => out.push_str("on_busy ="),
            Arg::Wait => out.push_str("wait"),
            Arg::WaitFor(lit) => {
                out.push_str("wait = ");
                lit.render(out);
            }
            Arg::WaitDuration(duration) => {
                out.push_str("wait = \"");
                duration.render(out);
                out.push('"');
            }
            Arg::WaitEmpty => out.push_str("wait ="),
            Arg::Shared => out.push_str("shared"),
            Arg::SharedEq(lit) => {
                out.push_str("shared = ");
                lit.render(out);
            }
            Arg::Dir(lit) => {
                out.push_str("dir = ");
                lit.render(out);
            }
            Arg::Crate(path) => {
                out.push_str("crate = \"");
                out.push_str(&path.text().replace('\\', "\\\\").replace('"', "\\\""));
                out.push('"');
            }
            Arg::CrateLit(lit) => {
                out.push_str("crate = ");
                lit.render(out);
            }
            Arg::CrateBare => out.push_str("crate"),
            Arg::Key(word, value) => {
                out.push_str(pick(KEYS, *word));
                if let Some(value) = value {
                    out.push_str(" = ");
                    value.render(out);
                }
            }
            Arg::Garbage(i) => out.push_str(pick(GARBAGE, *i)),
            Arg::Raw(text) => out.push_str(text),
        }
    }
}

/// Option words, their typos and near misses.
const KEYS: &[&str] = &[
    "wait",
    "wiat",
    "waits",
    "shared",
    "sahred",
    "share",
    "dir",
    "dirs",
    "directory",
    "on_busy",
    "onbusy",
    "on_bsy",
    "on_busy_",
    "crate",
    "krate",
    "path",
    "paths",
    "pth",
    "timeout",
    "name",
    "a",
    "WAIT",
    "_",
    "r#wait",
    "r#crate",
    "busy",
    "self",
    "Self",
    "super",
    "async",
    "const",
    "exclusive",
    "on_Busy",
    "w",
    "sh",
    "d",
];

const GARBAGE: &[&str] = &[
    "=",
    "= =",
    "1",
    "()",
    "[]",
    "{}",
    "#",
    "$",
    "@",
    "=>",
    "->",
    "'a",
    "'a'",
    "..",
    "::",
    ";",
    "r#wait",
    "crate",
    "self",
    "Self",
    "fn",
    "async",
    "\"x\" = 1",
    "wait wait",
    "dir",
    "dir =",
    "path",
    "crate =",
    "shared shared",
    "::x",
    "x::",
    "x::<u8>",
    "x<u8>",
    "1.5",
    "-1",
    "!",
    "#[a]",
    "wait = 1",
    "wait = \"1s\" \"2s\"",
    "dir = \"/a\" \"/b\"",
    "on_busy = 1 2",
    "on_busy = ,",
    "on_busy = =",
    "r\"x\"",
    "b\"x\"",
    "'static",
    "_",
    "?",
    "<>",
    "<",
    ">",
    "on_busy = |x| x",
    "on_busy = async {}",
    "(\"a\")",
    "[\"a\"]",
    "{\"a\"}",
    "\"a\"\"b\"",
];

/// A literal: a value made of pieces, written in one of Rust's forms.
#[derive(Arbitrary)]
struct Lit {
    style: Style,
    text: Vec<Piece>,
}

#[derive(Arbitrary)]
enum Style {
    Plain,
    Plain2,
    Plain3,
    Raw(u8),
    Escaped,
    Byte,
    CStr,
    Suffix(u8),
    Char,
    Int(u64),
    Float,
}

#[derive(Arbitrary)]
enum Piece {
    Word(u8),
    Word2(u8),
    Dash,
    Dot,
    Underscore,
    Slash,
    Space,
    Open,
    Close,
    Placeholder(u8),
    Placeholder2(u8),
    Digits(u16),
    Unicode(char),
    Nul,
    Quote,
    Backslash,
    Newline,
    Long(u8),
}

const WORDS: &[&str] = &[
    "deploy",
    "build",
    "a",
    "x",
    "lock",
    "run",
    "tmp",
    "lock.d",
    "cache",
    "db",
    "artifacts",
    "nightly",
    "env",
    "self",
    "..",
    ".",
    "/run/lock",
    "/tmp",
    "/",
    "//",
    "~",
    "$HOME",
    "C:\\",
    "build-deploy",
    "-",
    "_x",
    "0",
    "é",
    "ß",
    "日本",
    "🦀",
    "\u{200b}",
    "\t",
    "%",
    "*",
];

/// Placeholders: parameters the generated functions have, fields of
/// `self`, and what is not a placeholder.
const PLACEHOLDERS: &[&str] = &[
    "env",
    "id",
    "n",
    "name",
    "x",
    "field",
    "self.field",
    "self.name",
    "self.id",
    "self.",
    "self.1",
    "self._",
    "self.fn",
    "",
    " ",
    "1",
    "a b",
    "r#type",
    "self",
    "Self",
    "env.x",
    "_",
    "self.self",
    "é",
    "self.env",
    "env ",
    " env",
    "{env}",
    "self..x",
    "T",
    "crate",
    "fn",
    "self.a.b",
    "SELF.x",
    "_1",
    "a1",
    "self.r#fn",
];

impl Lit {
    fn value(&self) -> String {
        let mut value = String::new();
        for piece in &self.text {
            match piece {
                Piece::Word(i) | Piece::Word2(i) => value.push_str(pick(WORDS, *i)),
                Piece::Dash => value.push('-'),
                Piece::Dot => value.push('.'),
                Piece::Underscore => value.push('_'),
                Piece::Slash => value.push('/'),
                Piece::Space => value.push(' '),
                Piece::Open => value.push('{'),
                Piece::Close => value.push('}'),
                Piece::Placeholder(i) | Piece::Placeholder2(i) => {
                    write!(value, "{{{}}}", pick(PLACEHOLDERS, *i)).unwrap()
                }
                Piece::Digits(n) => write!(value, "{n}").unwrap(),
                Piece::Unicode(c) => value.push(*c),
                Piece::Nul => value.push('\0'),
                Piece::Quote => value.push('"'),
                Piece::Backslash => value.push('\\'),
                Piece::Newline => value.push('\n'),
                Piece::Long(n) => value.push_str(&"x".repeat(usize::from(*n) * 2)),
            }
        }
        value
    }

    fn render(&self, out: &mut String) {
        let value = self.value();
        match &self.style {
            Style::Plain | Style::Plain2 | Style::Plain3 => plain(&value, out),
            Style::Raw(hashes) => {
                let value = value.replace('\r', "");
                let mut hashes = usize::from(*hashes % 3);
                while value.contains(&format!("\"{}", "#".repeat(hashes))) {
                    hashes += 1;
                }
                let hashes = "#".repeat(hashes);
                write!(out, "r{hashes}\"{value}\"{hashes}").unwrap();
            }
            Style::Escaped => {
                out.push('"');
                for c in value.chars() {
                    if c.is_ascii_alphanumeric() {
                        out.push(c);
                    } else {
                        write!(out, "\\u{{{:x}}}", u32::from(c)).unwrap();
                    }
                }
                out.push('"');
            }
            Style::Byte => {
                out.push_str("b\"");
                for b in value.bytes() {
                    match b {
                        b'"' | b'\\' => write!(out, "\\{}", char::from(b)).unwrap(),
                        0x20..=0x7e => out.push(char::from(b)),
                        _ => write!(out, "\\x{b:02x}").unwrap(),
                    }
                }
                out.push('"');
            }
            Style::CStr => {
                out.push('c');
                plain(&value, out);
            }
            Style::Suffix(i) => {
                plain(&value, out);
                out.push_str(pick(&["s", "_x", "suffix", "ms", "u8", "é"], *i));
            }
            Style::Char => match value.chars().next() {
                Some('\'') | None => out.push_str("'\\''"),
                Some('\\') => out.push_str("'\\\\'"),
                Some('\n') => out.push_str("'\\n'"),
                Some(c) => write!(out, "'{c}'").unwrap(),
            },
            Style::Int(n) => write!(out, "{n}").unwrap(),
            Style::Float => out.push_str("1.5e3"),
        }
    }
}

/// A `"..."` literal whose value is `value`.
fn plain(value: &str, out: &mut String) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `wait = "..."`: a number and a unit, near the edges of what is taken.
#[derive(Arbitrary)]
struct Duration {
    number: Number,
    unit: u8,
}

#[derive(Arbitrary)]
enum Number {
    Small(u8),
    Any(u64),
    Edge(u8),
    Empty,
}

impl Duration {
    fn render(&self, out: &mut String) {
        match &self.number {
            Number::Small(n) => write!(out, "{n}").unwrap(),
            Number::Any(n) => write!(out, "{n}").unwrap(),
            Number::Edge(i) => out.push_str(pick(
                &[
                    "0",
                    "00",
                    "0001",
                    "18446744073709551615",
                    "18446744073709551616",
                    "5124095576030",
                    "5124095576031",
                    "307445734561825",
                    "307445734561826",
                    "18446744073709551",
                    "18446744073709552",
                    "99999999999999999999999999999999",
                    "-1",
                    "+1",
                    "1.5",
                    "1_000",
                    "١",
                    " 1",
                    "1 ",
                ],
                *i,
            )),
            Number::Empty => {}
        }
        out.push_str(pick(
            &[
                "ms", "s", "m", "h", "", "d", "S", "MS", "µs", " s", "sec", "mss", "hh", "ns",
                "s ", "m s",
            ],
            self.unit,
        ));
    }
}

/// A path to a `const` lock name, or what looks like one.
#[derive(Arbitrary)]
struct ConstPath {
    leading: bool,
    segments: Vec<(u8, bool)>,
}

const SEGMENTS: &[&str] = &[
    "BUILD", "LOCK", "DEPLOY", "self", "crate", "super", "Self", "names", "a", "wiat", "sahred",
    "on_busy", "wait", "shared", "dir", "path", "r#type", "r#wait", "_", "x1", "LockName",
    "lockattr", "$crate",
];

impl ConstPath {
    fn render(&self, out: &mut String) {
        if self.leading {
            out.push_str("::");
        }
        if self.segments.is_empty() {
            out.push_str("BUILD");
        }
        for (i, (segment, generic)) in self.segments.iter().enumerate() {
            if i > 0 {
                out.push_str("::");
            }
            out.push_str(pick(SEGMENTS, *segment));
            if *generic {
                out.push_str("::<u8>");
            }
        }
    }
}

/// The text of `crate = "..."`.
#[derive(Arbitrary)]
enum CratePath {
    Known(u8),
    Path(ConstPath),
}

impl CratePath {
    fn text(&self) -> String {
        match self {
            CratePath::Known(i) => pick(
                &[
                    "lockattr",
                    "::lockattr",
                    "my_tool::lockattr",
                    "crate::lockattr",
                    "self",
                    "",
                    "(",
                    ")",
                    "1",
                    "a b",
                    "::",
                    "a::",
                    "a::<T>",
                    "a::b<'x>",
                    "$crate",
                    "r#lockattr",
                    "Self",
                    "super::x",
                    "\"x\"",
                    "a-b",
                    "🦀",
                    "/*",
                    "//",
                    "'a",
                    "'",
                    "\"",
                    "r#",
                    "a::b::c::d",
                    "<T as Tr>::x",
                    "a;b",
                    "{}",
                    "Vec<u8>",
                ],
                *i,
            )
            .to_owned(),
            CratePath::Path(path) => {
                let mut out = String::new();
                path.render(&mut out);
                out
            }
        }
    }
}

/// `on_busy = EXPR`.
#[derive(Arbitrary)]
enum Expr {
    Known(u8),
    Nested(u8),
    Closure(u8),
}

const EXPRS: &[&str] = &[
    "Ok(())",
    "()",
    "0",
    "std::process::exit(0)",
    "return",
    "Err(e)",
    "{ 1 }",
    "|| 1",
    "async {}",
    "None",
    "panic!()",
    "x?",
    "a = b",
    "..",
    "1 +",
    "if a { b }",
    "loop {}",
    "Default::default()",
    "move || ()",
    "yield",
    "break",
    "1, 2",
    "#[attr] 1",
    "match x {}",
    "unsafe {}",
    "const { 1 }",
    "&mut *x",
    "x as u8",
    "x.await",
    "<T as Tr>::f()",
    "[0; 3]",
    "S { a }",
    "'a: loop {}",
    "Ok(false)",
    "Err(Busy)",
    "\"busy\"",
    "return Ok(())",
    "|err| err",
    "|| -> u8 { 1 }",
    "async move || {}",
    "x = 1, wait",
    "1 = 2",
    "!",
    "Self::busy()",
    "self.busy()",
    "env",
    "__lockattr_hold",
    "__lockattr_err",
    "{ let __lockattr_hold = 1; __lockattr_hold }",
    "std::process::exit(75)",
    "todo!()",
    "let x = 1",
];

impl Expr {
    fn render(&self, out: &mut String) {
        match self {
            Expr::Known(i) => out.push_str(pick(EXPRS, *i)),
            Expr::Nested(depth) => {
                let depth = usize::from(*depth);
                out.push_str(&"(".repeat(depth));
                out.push('0');
                out.push_str(&")".repeat(depth));
            }
            Expr::Closure(i) => write!(out, "|| {}", pick(EXPRS, *i)).unwrap(),
        }
    }
}

#[derive(Arbitrary)]
enum Item {
    Fn(Function),
    Fn2(Function),
    Fn3(Function),
    Trailing(Function, u8),
    Two(Function, Function),
    InImpl(Function),
    Other(u8),
    Raw(String),
}

const OTHER_ITEMS: &[&str] = &[
    "",
    "struct S;",
    "struct S { a: u8 }",
    "enum E { A }",
    "impl S { fn f() {} }",
    "trait T { fn f(); }",
    "trait T { fn f() {} }",
    "mod m {}",
    "mod m;",
    "use std::io;",
    "static X: u8 = 0;",
    "const X: u8 = 0;",
    "const fn f() {}",
    "macro_rules! m { () => {} }",
    "extern \"C\" { fn f(); }",
    "|| {}",
    "let x = 1;",
    "fn",
    "fn f",
    "fn f()",
    "fn f() -> ",
    "fn f() -> u8",
    "fn f();",
    "fn f() ()",
    "fn f() []",
    "fn f() {} fn g() {}",
    "fn f() {};",
    "pub",
    "#[test]",
    "#[test] fn",
    "async",
    "async fn",
    "type T = u8;",
    "union U { a: u8 }",
    "f!();",
    "{}",
    "fn f() { } extra",
    "impl Trait for S { fn f(&self) {} }",
    "extern crate std;",
    "fn f() { #![allow(unused)] }",
    "fn f() { #![allow(unused)] #![deny(x)] 1 }",
    "fn main() {}",
    "#[tokio::main] async fn main() {}",
    "unsafe extern \"C\" fn f() {}",
    "default fn f() {}",
    "safe fn f() {}",
    "gen fn f() {}",
    "async gen fn f() {}",
    "fn f() { a b c }",
    "fn f() { let }",
    "fn f() -> impl Future<Output = ()> { async {} }",
    "fn f() -> Pin<Box<dyn Future<Output = ()> + Send>> { Box::pin(async move {}) }",
];

impl Item {
    fn render(&self, out: &mut String) {
        match self {
            Item::Fn(f) | Item::Fn2(f) | Item::Fn3(f) => f.render(out),
            Item::Trailing(f, i) => {
                f.render(out);
                out.push(' ');
                out.push_str(pick(GARBAGE, *i));
            }
            Item::Two(f, g) => {
                f.render(out);
                out.push('\n');
                g.render(out);
            }
            Item::InImpl(f) => {
                out.push_str("impl S {\n");
                f.render(out);
                out.push_str("\n}");
            }
            Item::Other(i) => out.push_str(pick(OTHER_ITEMS, *i)),
            Item::Raw(text) => out.push_str(text),
        }
    }
}

#[derive(Arbitrary)]
struct Function {
    attrs: Vec<u8>,
    vis: u8,
    constness: bool,
    asyncness: bool,
    unsafety: bool,
    abi: u8,
    name: u8,
    generics: Vec<u8>,
    receiver: Option<u8>,
    params: Vec<(u8, u8)>,
    ret: Option<u8>,
    where_clause: Vec<u8>,
    body: Body,
}

const ATTRS: &[&str] = &[
    "#[test]",
    "#[tokio::test]",
    "#[tokio::test(flavor = \"multi_thread\")]",
    "#[::core::prelude::v1::test]",
    "#[must_use]",
    "#[must_use = \"x\"]",
    "#[inline]",
    "#[track_caller]",
    "#[cfg(test)]",
    "#[cfg_attr(test, test)]",
    "#[doc = \"x\"]",
    "/// docs",
    "/** docs */",
    "#[allow(dead_code)]",
    "#[async_trait::async_trait]",
    "#[lockattr::exclusive(\"inner\")]",
    "#[exclusive(\"y\", wait)]",
    "#[tracing::instrument]",
    "#[r#test]",
    "#[test = 1]",
    "#[test()]",
    "#[should_panic]",
    "#[ignore]",
    "#[no_mangle]",
    "#[unsafe(no_mangle)]",
    "#[deprecated]",
    "#![allow(unused)]",
    "#[]",
    "#[a::b::test]",
    "#[test::x]",
    "#[Test]",
    "#[tests]",
];

const VIS: &[&str] = &[
    "",
    "",
    "pub ",
    "pub(crate) ",
    "pub(super) ",
    "pub(self) ",
    "pub(in crate::a) ",
    "pub(in self) ",
    "crate ",
    "pub(x) ",
];

const ABI: &[&str] = &[
    "",
    "",
    "",
    "extern ",
    "extern \"C\" ",
    "extern \"Rust\" ",
    "extern \"x\" ",
];

const NAMES: &[&str] = &[
    "f",
    "main",
    "test",
    "deploy",
    "new",
    "r#fn",
    "r#async",
    "run",
    "_",
    "r#type",
    "__lockattr_hold",
    "é",
    "self_",
    "Self_",
    "lock",
];

const GENERICS: &[&str] = &[
    "T",
    "T: Display",
    "'a",
    "'a: 'b",
    "const N: usize",
    "T = u8",
    "F: Fn() -> u8",
    "E: Into<Error>",
    "T: ?Sized",
    "'b",
    "U: Future<Output = ()>",
    "const C: &'static str",
    "impl",
];

const RECEIVERS: &[&str] = &[
    "self",
    "&self",
    "&mut self",
    "mut self",
    "self: Box<Self>",
    "self: &Self",
    "&'a self",
    "self: Pin<&mut Self>",
    "self: Arc<Self>",
    "&'a mut self",
];

const PATTERNS: &[&str] = &[
    "env",
    "id",
    "n",
    "name",
    "x",
    "field",
    "_",
    "mut env",
    "ref env",
    "(a, b)",
    "Point { x, y }",
    "&x",
    "r#type",
    "mut id",
    "__lockattr_hold",
    "self_",
    "a",
    "T",
    "_env",
];

const TYPES: &[&str] = &[
    "&str",
    "String",
    "u32",
    "impl Display",
    "T",
    "&'a str",
    "Option<impl Future<Output = ()>>",
    "[u8; 4]",
    "fn()",
    "Box<dyn Display>",
    "Self",
    "impl Fn() -> u8",
    "&Path",
    "PathBuf",
    "OsString",
    "&[u8]",
    "(u8, u8)",
    "Vec<String>",
    "!",
    "()",
    "impl AsRef<str>",
    "&mut u8",
    "*const u8",
    "dyn Display",
    "_",
    "impl Future<Output = ()>",
    "&dyn Fn()",
    "u8 + Send",
];

const RETURNS: &[&str] = &[
    "()",
    "!",
    "i32",
    "Result<(), E>",
    "io::Result<()>",
    "Result<u8, Box<dyn Error>>",
    "impl Future<Output = ()>",
    "impl Display",
    "Pin<Box<dyn Future<Output = ()> + Send>>",
    "Option<impl Future<Output = ()>>",
    "(impl Future<Output = ()>,)",
    "[impl Future<Output = ()>; 1]",
    "&'static str",
    "Self",
    "T",
    "impl IntoFuture",
    "*const impl Future<Output = ()>",
    "Box<impl Fn()>",
    "Result<impl Display, E>",
    "bool",
    "Option<u8>",
    "ExitCode",
    "String",
    "impl core::future::Future<Output = u8> + Send",
    "impl Send + Future",
    "BoxFuture<'static, ()>",
    "(impl Display)",
    "&impl Future<Output = ()>",
    "[impl Future<Output = ()>]",
    "Result<(), lockattr::Error>",
    "Result<!, E>",
    "Vec<impl Future<Output = ()>>",
    "dyn Future<Output = ()>",
    "<T as Tr>::Out",
    "fn() -> impl Future<Output = ()>",
    "Option<Option<impl IntoFuture>>",
];

const WHERES: &[&str] = &[
    "T: Display",
    "T: Send + 'static",
    "'a: 'b",
    "Self: Sized",
    "for<'x> F: Fn(&'x u8)",
    "[u8; N]: Sized",
];

#[derive(Arbitrary)]
enum Body {
    Block(Vec<u8>, Vec<u8>),
    Block2(Vec<u8>, Vec<u8>),
    Block3(Vec<u8>, Vec<u8>),
    Semicolon,
    Missing,
    Other(u8),
}

const INNER: &[&str] = &[
    "#![allow(unused)]",
    "#![allow(clippy::all)]",
    "#![deny(warnings)]",
    "#![doc = \"x\"]",
    "//! inner docs",
    "#![cfg(test)]",
    "#![]",
    "#![r#allow(unused)]",
];

const STMTS: &[&str] = &[
    "return;",
    "return Ok(());",
    "x?;",
    "let _ = 1;",
    "Ok(())",
    "async move {}",
    "Box::pin(async move { Ok(()) })",
    "loop {}",
    "todo!()",
    "unsafe {}",
    "fn nested() {}",
    "self.field",
    "work().await;",
    "work().await?",
    "a b c",
    "1",
    "let x = &temp().value;",
    "{ return 1; }",
    "#[allow(unused)] let y = 2;",
    "#![allow(unused)]",
    "let __lockattr_hold = 0;",
    "__lockattr_hold",
    "drop(__lockattr_err);",
    "macro_rules! m { () => {} }",
    "use std::io;",
    "struct S;",
    "impl S {}",
    "'a: loop { break 'a; }",
    "match x { _ => () }",
    "if let Some(x) = y { x } else { return None; }",
    "yield 1;",
    "async { return 1; }",
    "|| return 2;",
    ";",
    ";;",
    "env",
    "Box::pin(async move { work().await })",
    "std::future::ready(())",
    "::core::compile_error!(\"user\");",
    "const { 1 }",
    "gen {}",
    "try { 1 }",
    "become f()",
    "let else",
    "=>",
    "#",
    "#[",
    "$x",
    "'a",
    "\"text\"",
    "b'x'",
    "r#\"raw\"#",
];

const OTHER_BODIES: &[&str] = &[
    "()",
    "[]",
    "= 1;",
    "{} {}",
    "{};",
    "-> u8 {}",
    "where T: X {}",
    "{ } ;",
    "{ }}",
    "",
];

impl Function {
    fn render(&self, out: &mut String) {
        for &attr in &self.attrs {
            out.push_str(pick(ATTRS, attr));
            out.push('\n');
        }
        out.push_str(pick(VIS, self.vis));
        if self.constness {
            out.push_str("const ");
        }
        if self.asyncness {
            out.push_str("async ");
        }
        if self.unsafety {
            out.push_str("unsafe ");
        }
        out.push_str(pick(ABI, self.abi));
        out.push_str("fn ");
        out.push_str(pick(NAMES, self.name));
        if !self.generics.is_empty() {
            out.push('<');
            for &g in &self.generics {
                out.push_str(pick(GENERICS, g));
                out.push_str(", ");
            }
            out.push('>');
        }
        out.push('(');
        if let Some(receiver) = self.receiver {
            out.push_str(pick(RECEIVERS, receiver));
            out.push_str(", ");
        }
        for &(pat, ty) in &self.params {
            write!(out, "{}: {}, ", pick(PATTERNS, pat), pick(TYPES, ty)).unwrap();
        }
        out.push(')');
        if let Some(ret) = self.ret {
            out.push_str(" -> ");
            out.push_str(pick(RETURNS, ret));
        }
        if !self.where_clause.is_empty() {
            out.push_str(" where ");
            for &w in &self.where_clause {
                out.push_str(pick(WHERES, w));
                out.push_str(", ");
            }
        }
        match &self.body {
            Body::Block(inner, stmts) | Body::Block2(inner, stmts) | Body::Block3(inner, stmts) => {
                out.push_str(" {\n");
                for &attr in inner {
                    out.push_str(pick(INNER, attr));
                    out.push('\n');
                }
                for &stmt in stmts {
                    out.push_str(pick(STMTS, stmt));
                    out.push('\n');
                }
                out.push('}');
            }
            Body::Semicolon => out.push(';'),
            Body::Missing => {}
            Body::Other(i) => out.push_str(pick(OTHER_BODIES, *i)),
        }
    }
}
