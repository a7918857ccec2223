//! Fuzzing `#[lockattr::exclusive]`: the macro crate's own modules,
//! compiled here as a plain library (proc-macro2 runs in its fallback mode
//! outside a compiler), and one check that both fuzz targets and the
//! corpus replay test (`tests/corpus.rs`, stable) run on every input.
//!
//! The check: the entry point returns, never panics, and gives either
//! - compile errors followed by the item exactly as it came in, or
//! - a function with the item's attributes, visibility and signature, whose
//!   body still holds every token of the user's body, in order; and when
//!   the item parsed as a `syn::ItemFn`, so does the expansion.

include!(concat!(env!("OUT_DIR"), "/macro_modules.rs"));

pub mod generate;

use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};
use quote::ToTokens;
use std::panic::{self, AssertUnwindSafe};
use std::str::FromStr;
use std::sync::{Mutex, mpsc};
use std::thread;
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Signature, Visibility};

/// What an input came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Rewritten into a function that takes the lock.
    Expanded,
    /// Compile errors, then the item unchanged.
    Refused,
    /// Not tokens rustc could hand the macro (not UTF-8, does not lex).
    Unlexable,
}

/// The text target's input: the attribute's arguments on the first line,
/// the item on the following ones.
pub fn check_text(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::Unlexable;
    };
    let (args, item) = text.split_once('\n').unwrap_or((text, ""));
    check_source(args, item)
}

/// The structured target's input: bytes to a [`generate::Case`] as
/// `fuzz_target!` makes it, then [`check_source`].
pub fn check_structured(data: &[u8]) -> Outcome {
    use arbitrary::{Arbitrary, Unstructured};
    match generate::Case::arbitrary_take_rest(Unstructured::new(data)) {
        Ok(case) => check_source(&case.args(), &case.item()),
        Err(_) => Outcome::Unlexable,
    }
}

/// Lexes both as a compiler would, then [`check`]s.
pub fn check_source(args: &str, item: &str) -> Outcome {
    let (args, item) = (args.to_owned(), item.to_owned());
    on_big_stack(
        move || match (TokenStream::from_str(&args), TokenStream::from_str(&item)) {
            (Ok(args), Ok(item)) => check(args, item),
            _ => Outcome::Unlexable,
        },
    )
}

/// The attribute's output for source text, for looking at an input.
pub fn expansion(args: &str, item: &str) -> Option<String> {
    let (args, item) = (args.to_owned(), item.to_owned());
    on_big_stack(move || {
        let (args, item) = (
            TokenStream::from_str(&args).ok()?,
            TokenStream::from_str(&item).ok()?,
        );
        Some(expand::exclusive(args, item).to_string())
    })
}

/// Runs `f` on one long-lived thread with a 256 MiB stack (a thread per
/// input costs more than most inputs). syn parses by recursive descent, so
/// an `on_busy` expression nested a thousand deep (700 is fine), or a
/// return type nested two hundred deep (150 is fine), overflows the stack
/// of rustc running the macro: a limit of every syn-based macro, reported
/// once. Inputs of a few KiB nest deeper than that, and the fuzzer would
/// find nothing else while they overflow.
fn on_big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    type Job = Box<dyn FnOnce() + Send>;
    static WORKER: Mutex<Option<mpsc::Sender<Job>>> = Mutex::new(None);
    let (answer, answered) = mpsc::channel();
    let job: Job = Box::new(move || {
        // Under libFuzzer a panic aborts before it unwinds; in the replay
        // test it comes back to the caller's thread.
        let _ = answer.send(panic::catch_unwind(AssertUnwindSafe(f)));
    });
    {
        let mut worker = WORKER
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let jobs = worker.get_or_insert_with(|| {
            let (jobs, queue) = mpsc::channel::<Job>();
            thread::Builder::new()
                .name("check".to_owned())
                .stack_size(256 << 20)
                .spawn(move || queue.into_iter().for_each(|job| job()))
                .expect("a thread for the checks");
            jobs
        });
        jobs.send(job).expect("the checking thread is running");
    }
    match answered.recv().expect("the checking thread answers") {
        Ok(value) => value,
        Err(panic) => panic::resume_unwind(panic),
    }
}

/// Runs the attribute on `args` and `item` and panics, with both in the
/// message, if the result breaks the contract in the crate docs.
pub fn check(args: TokenStream, item: TokenStream) -> Outcome {
    let input = || format!("#[exclusive({args})]\n{item}");
    let output = expand::exclusive(args.clone(), item.clone());
    let out: Vec<TokenTree> = output.clone().into_iter().collect();
    let original: Vec<TokenTree> = item.clone().into_iter().collect();
    assert!(!out.is_empty(), "empty expansion of\n{}", input());

    // Refused: compile_error!s, then the item as it came in.
    if out.len() > original.len() {
        let (errors, rest) = out.split_at(out.len() - original.len());
        if same(rest, &original) && compile_errors(errors) {
            return Outcome::Refused;
        }
    }
    assert!(
        !out.iter().take(6).any(|tt| is_ident(tt, "compile_error")),
        "compile error without the item unchanged after it: input\n{}\noutput\n{output}",
        input()
    );

    // Expanded: a function with the item's outside and the user's tokens.
    let was = syn::parse2::<Shape>(item.clone()).unwrap_or_else(|err| {
        panic!(
            "expanded an item that is not a function with a body ({err}): input\n{}\noutput\n{output}",
            input()
        )
    });
    let got = syn::parse2::<Shape>(output.clone()).unwrap_or_else(|err| {
        panic!(
            "the expansion is not a function ({err}): input\n{}\noutput\n{output}",
            input()
        )
    });
    assert!(
        was.sig.constness.is_none(),
        "expanded a `const fn`: input\n{}",
        input()
    );
    // As syn prints them: it puts lifetimes before the other generic
    // parameters, so `<T, 'a>` (an error) comes out as `<'a, T>`.
    assert!(
        leaves(got.outside()) == leaves(was.outside()),
        "the expansion changed the attributes, visibility or signature: input\n{}\noutput\n{output}",
        input()
    );
    assert!(
        subsequence(&leaves(was.body.stream()), &leaves(got.body.stream())),
        "the expansion lost or reordered tokens of the body: input\n{}\noutput\n{output}",
        input()
    );
    // And it takes the lock: the body calls into lockattr's runtime, which
    // the item as it came in never does.
    assert!(
        leaves(got.body.stream()).iter().any(|leaf| leaf == "__private"),
        "the expansion does not call lockattr (the item unchanged?): input\n{}\noutput\n{output}",
        input()
    );
    if syn::parse2::<syn::ItemFn>(item.clone()).is_ok()
        && !misplaced_path(&args)
        && !keyword_field(&args)
        && let Err(err) = syn::parse2::<syn::ItemFn>(output.clone())
    {
        panic!(
            "the item is a function but the expansion does not parse as one ({err}): input\n{}\noutput\n{output}",
            input()
        );
    }
    Outcome::Expanded
}

/// Whether an argument is a path that the macro accepts but writes where
/// it does not parse: a `const` name with type-style generics (`X<u8>`,
/// `F(u8)`), which goes where an expression goes, or a `crate = "..."` with
/// any generics (`"a::<u8>"`), which goes into a `use`. Known and left as
/// they are: rustc's parser then points at the user's tokens (for `X<u8>`
/// it suggests `X::<u8>`).
fn misplaced_path(args: &TokenStream) -> bool {
    let mut chunks = vec![TokenStream::new()];
    for tt in args.clone() {
        match &tt {
            TokenTree::Punct(p) if p.as_char() == ',' => chunks.push(TokenStream::new()),
            _ => chunks.last_mut().unwrap().extend([tt]),
        }
    }
    chunks.into_iter().any(|chunk| {
        let const_name = syn::parse2::<syn::Path>(chunk.clone()).is_ok()
            && syn::parse2::<syn::ExprPath>(chunk.clone()).is_err();
        let crate_path = syn::parse2::<CrateValue>(chunk).is_ok_and(|value| {
            value.0.parse::<syn::Path>().is_ok()
                && value.0.parse_with(syn::Path::parse_mod_style).is_err()
        });
        const_name || crate_path
    })
}

/// Whether a name has a `{self.FIELD}` placeholder whose field is a
/// keyword (`{self.fn}`, `{self._}`): the macro writes `self.fn`, which does
/// not parse. Known and left as it is: rustc says "expected identifier,
/// found keyword `fn`" at the literal.
fn keyword_field(args: &TokenStream) -> bool {
    args.clone().into_iter().any(|tt| {
        let TokenTree::Literal(lit) = tt else {
            return false;
        };
        let Ok(lit) = syn::parse2::<syn::LitStr>(TokenTree::Literal(lit).into()) else {
            return false;
        };
        lit.value().split("{self.").skip(1).any(|rest| {
            let field = rest.split('}').next().unwrap_or_default();
            syn::parse_str::<syn::Ident>(field).is_err()
        })
    })
}

/// `crate = "..."`.
struct CrateValue(syn::LitStr);

impl Parse for CrateValue {
    fn parse(input: ParseStream<'_>) -> syn::Result<CrateValue> {
        input.parse::<syn::Token![crate]>()?;
        input.parse::<syn::Token![=]>()?;
        input.parse().map(CrateValue)
    }
}

/// A function as the macro sees it: outer attributes, visibility,
/// signature, a body in braces and nothing after it.
struct Shape {
    attrs: Vec<Attribute>,
    vis: Visibility,
    sig: Signature,
    body: Group,
}

impl Parse for Shape {
    fn parse(input: ParseStream<'_>) -> syn::Result<Shape> {
        let shape = Shape {
            attrs: input.call(Attribute::parse_outer)?,
            vis: input.parse()?,
            sig: input.parse()?,
            body: input.parse()?,
        };
        if shape.body.delimiter() != Delimiter::Brace {
            return Err(syn::Error::new(shape.body.span(), "expected braces"));
        }
        Ok(shape)
    }
}

impl Shape {
    fn outside(&self) -> TokenStream {
        let Shape {
            attrs, vis, sig, ..
        } = self;
        quote::quote!(#(#attrs)* #vis #sig)
    }
}

/// Whether `trees` is one or more `::core::compile_error! { "..." }` (or
/// `compile_error!(..)` by another path) and nothing else.
fn compile_errors(mut trees: &[TokenTree]) -> bool {
    let mut count = 0;
    while !trees.is_empty() {
        let Some(at) = trees.iter().position(|tt| is_ident(tt, "compile_error")) else {
            return false;
        };
        // The path before it: `::`, `core`/`std`, `::` in any arrangement.
        let path_ok = trees[..at].iter().all(|tt| match tt {
            TokenTree::Punct(p) => p.as_char() == ':',
            TokenTree::Ident(i) => i == "core" || i == "std",
            _ => false,
        });
        let call_ok = matches!(trees.get(at + 1), Some(TokenTree::Punct(p)) if p.as_char() == '!')
            && matches!(trees.get(at + 2), Some(TokenTree::Group(g))
                if g.delimiter() != Delimiter::None
                    && matches!(&g.stream().into_iter().collect::<Vec<_>>()[..],
                        [TokenTree::Literal(lit)] if lit.to_string().len() > 2));
        if !path_ok || !call_ok {
            return false;
        }
        // `compile_error!(..);` may end with a semicolon.
        let mut end = at + 3;
        if matches!(trees.get(end), Some(TokenTree::Punct(p)) if p.as_char() == ';') {
            end += 1;
        }
        trees = &trees[end..];
        count += 1;
    }
    count > 0
}

fn is_ident(tt: &TokenTree, name: &str) -> bool {
    matches!(tt, TokenTree::Ident(i) if i == name)
}

/// The same tokens, ignoring spans and punctuation spacing.
fn same(a: &[TokenTree], b: &[TokenTree]) -> bool {
    let flat = |trees: &[TokenTree]| leaves(trees.iter().cloned().collect());
    flat(a) == flat(b)
}

/// Every token, depth first, with a group as its opening and closing
/// delimiter around its contents.
fn leaves(tokens: TokenStream) -> Vec<String> {
    let mut out = Vec::new();
    flatten(tokens, &mut out);
    out
}

fn flatten(tokens: TokenStream, out: &mut Vec<String>) {
    for tt in tokens {
        match tt {
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("«", "»"),
                };
                out.push(open.to_owned());
                flatten(group.stream(), out);
                out.push(close.to_owned());
            }
            other => out.push(other.to_token_stream().to_string()),
        }
    }
}

/// Whether `needle` occurs in `haystack` in order, other tokens between.
fn subsequence(needle: &[String], haystack: &[String]) -> bool {
    let mut rest = haystack.iter();
    needle.iter().all(|token| rest.any(|t| t == token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_compile_errors() {
        let errors: Vec<TokenTree> = TokenStream::from_str(
            r#"::core::compile_error! { "a" } ::core::compile_error! { "b" }"#,
        )
        .unwrap()
        .into_iter()
        .collect();
        assert!(compile_errors(&errors));
        assert!(!compile_errors(&errors[..errors.len() - 1]));
        let not: Vec<TokenTree> = TokenStream::from_str("fn compile_error() {}")
            .unwrap()
            .into_iter()
            .collect();
        assert!(!compile_errors(&not));
    }

    #[test]
    fn panics_come_back_and_the_thread_goes_on() {
        let panic = panic::catch_unwind(|| on_big_stack(|| panic!("boom"))).unwrap_err();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"boom"));
        assert_eq!(on_big_stack(|| 2 + 2), 4);
    }

    #[test]
    fn subsequences() {
        let v = |s: &str| leaves(TokenStream::from_str(s).unwrap());
        assert!(subsequence(&v("a { b } c"), &v("x a y { z b } c")));
        assert!(!subsequence(&v("a b"), &v("b a")));
        assert!(!subsequence(&v("{ a }"), &v("{ } a")));
    }
}
