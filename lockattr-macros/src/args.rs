//! The attribute's arguments: one or more names (or `path = "..."`), then
//! options.

use crate::template::{self, Piece};
use proc_macro2::Span;
use quote::{ToTokens, quote};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::{Error, Expr, LitStr, Token};

mod kw {
    syn::custom_keyword!(on_busy);
    syn::custom_keyword!(wait);
    syn::custom_keyword!(shared);
    syn::custom_keyword!(dir);
    syn::custom_keyword!(path);
}

const OPTIONS: &str = "`on_busy = EXPR`, `wait`, `wait = \"DUR\"`, `shared`, `dir = \"/abs/dir\"`, `crate = \"path\"`";

/// Which lock: a name, a name with placeholders, a `const` name, or a file.
pub(crate) enum Target {
    Name(LitStr),
    Template(LitStr, Vec<Piece>),
    Const(syn::Path),
    File(LitStr),
}

/// The options, by name, for "did you mean" suggestions.
const OPTION_NAMES: [&str; 6] = ["on_busy", "wait", "shared", "dir", "crate", "path"];

/// `on_busy = EXPR`: the value to return when busy; or a closure of one
/// argument, `on_busy = |err| ...`, called with the busy `lockattr::Error`.
/// Any closure is taken as the second: a closure to return as the value
/// needs parentheses or a block, `on_busy = (|x| x)`.
pub(crate) enum OnBusy {
    Value(Expr),
    Closure(syn::ExprClosure),
}

pub(crate) enum Wait {
    Forever,
    /// Milliseconds.
    For(u64),
}

pub(crate) struct Args {
    /// In the order written; several are all taken, in one global order.
    pub(crate) targets: Vec<Target>,
    pub(crate) on_busy: Option<OnBusy>,
    pub(crate) wait: Option<Wait>,
    pub(crate) shared: bool,
    pub(crate) dir: Option<LitStr>,
    pub(crate) krate: Option<syn::Path>,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Args> {
        let targets = vec![parse_target(input)?];
        let mut args = Args {
            targets,
            on_busy: None,
            wait: None,
            shared: false,
            dir: None,
            krate: None,
        };
        let mut seen: Vec<String> = Vec::new();
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            if another_name(input) {
                let at = input.span();
                let target = parse_target(input)?;
                if !seen.is_empty() {
                    return Err(Error::new(
                        at,
                        "lock names come first, then the options, as in `#[exclusive(\"artifacts\", \"deploy-{env}\", wait)]`",
                    ));
                }
                if matches!(target, Target::File(_)) || matches!(args.targets[0], Target::File(_)) {
                    return Err(Error::new(
                        at,
                        "`path = ...` names one whole file and cannot go with other lock names",
                    ));
                }
                args.targets.push(target);
                continue;
            }
            let lookahead = input.lookahead1();
            let key_span = input.span();
            let key = if lookahead.peek(kw::on_busy) {
                input.parse::<kw::on_busy>()?;
                if !input.peek(Token![=]) {
                    return Err(Error::new(
                        key_span,
                        "expected `on_busy = EXPR`, the value to return when the lock is busy",
                    ));
                }
                input.parse::<Token![=]>()?;
                if input.is_empty() || input.peek(Token![,]) {
                    return Err(Error::new(
                        key_span,
                        "expected a value after `on_busy =`, as in `on_busy = Ok(())`",
                    ));
                }
                args.on_busy = Some(on_busy(input.parse()?)?);
                "on_busy"
            } else if lookahead.peek(kw::wait) {
                input.parse::<kw::wait>()?;
                args.wait = Some(if input.peek(Token![=]) {
                    input.parse::<Token![=]>()?;
                    Wait::For(duration(&string(
                        input,
                        "a duration, as in `wait = \"30s\"`",
                    )?)?)
                } else {
                    Wait::Forever
                });
                "wait"
            } else if lookahead.peek(kw::shared) {
                input.parse::<kw::shared>()?;
                if input.peek(Token![=]) {
                    return Err(Error::new(
                        key_span,
                        "`shared` takes no value: write `shared` to take the lock shared, or leave it out",
                    ));
                }
                args.shared = true;
                "shared"
            } else if lookahead.peek(kw::dir) {
                input.parse::<kw::dir>()?;
                input.parse::<Token![=]>()?;
                let dir = string(input, "a directory, as in `dir = \"/run/lock\"`")?;
                absolute(&dir, "dir")?;
                if let Target::File(_) = args.targets[0] {
                    return Err(Error::new(
                        key_span,
                        "`dir` cannot go with `path = ...`, which names the whole file",
                    ));
                }
                args.dir = Some(dir);
                "dir"
            } else if lookahead.peek(Token![crate]) {
                input.parse::<Token![crate]>()?;
                input.parse::<Token![=]>()?;
                let path = string(
                    input,
                    "the path of the lockattr crate, as in `crate = \"my_tool::lockattr\"`",
                )?;
                // A module path (`my_tool::lockattr`): it goes into `use`
                // and `::` paths, where generic arguments cannot.
                let parsed = path.parse_with(syn::Path::parse_mod_style);
                args.krate = Some(parsed.map_err(|_| {
                    Error::new(
                        path.span(),
                        "`crate` takes the module path of the lockattr crate, as in `crate = \"my_tool::lockattr\"`",
                    )
                })?);
                "crate"
            } else if input.peek(kw::path) {
                let text = match args.targets[0] {
                    Target::File(_) => format!(
                        "`path` is given twice; each option may be given once (accepted options: {OPTIONS})"
                    ),
                    _ => "`path = ...` replaces the lock name: give either a name or `path`, as in `#[exclusive(path = \"/run/lock/tool.lock\")]`".to_owned(),
                };
                return Err(Error::new(key_span, text));
            } else if let Some(err) = name_equals(input, false) {
                return Err(err);
            } else if input.peek(syn::Ident) {
                let ident: syn::Ident = input.parse()?;
                let mut text = match nearest_option(&ident.to_string()) {
                    Some(option) => format!(
                        "unknown option `{ident}`; did you mean `{option}`? (accepted options: {OPTIONS})"
                    ),
                    None => format!("unknown option `{ident}`; accepted options: {OPTIONS}"),
                };
                let bare = !input.peek(Token![=]) && unquoted(&ident.clone().into()).is_some();
                if bare && nearest_option(&ident.to_string()).is_none() {
                    text.push_str(&format!(
                        "; or, if `{ident}` is another lock name, it goes in quotes: `\"{}\"`",
                        ident.unraw()
                    ));
                }
                return Err(Error::new(ident.span(), text));
            } else {
                // Not an identifier: syn's "expected one of ..." lists them.
                return Err(lookahead.error());
            };
            if seen.iter().any(|s| s == key) {
                return Err(Error::new(
                    key_span,
                    format!(
                        "`{key}` is given twice; each option may be given once (accepted options: {OPTIONS})"
                    ),
                ));
            }
            seen.push(key.to_owned());
        }
        Ok(args)
    }
}

fn on_busy(expr: Expr) -> syn::Result<OnBusy> {
    let Expr::Closure(closure) = expr else {
        return Ok(OnBusy::Value(expr));
    };
    if closure.inputs.len() != 1 {
        let takes = match closure.inputs.len() {
            0 => "none".to_owned(),
            n => n.to_string(),
        };
        let (begin, end) = (&closure.inputs_begin, &closure.inputs_end);
        return Err(Error::new_spanned(
            quote!(#begin #end),
            format!(
                "an `on_busy` closure takes one argument, the busy `lockattr::Error`, as in `on_busy = |err| ...`; this one takes {takes}"
            ),
        ));
    }
    if let Some(asyncness) = &closure.asyncness {
        return Err(Error::new_spanned(
            asyncness,
            "an `on_busy` closure is called, not awaited: remove `async`",
        ));
    }
    Ok(OnBusy::Closure(closure))
}

fn parse_target(input: ParseStream<'_>) -> syn::Result<Target> {
    let expected = "expected a lock name, as in `#[exclusive(\"build-deploy\")]`, a `const` made with `lockattr::LockName::new`, or `path = \"/abs/file.lock\"`";
    if input.is_empty() {
        return Err(Error::new(Span::call_site(), expected));
    }
    if input.peek(LitStr) {
        let name = string(input, "a lock name, as in `\"build-deploy\"`")?;
        if template::has_placeholders(&name) {
            let pieces = template::parse(&name)?;
            return Ok(Target::Template(name, pieces));
        }
        check_name(&name)?;
        return Ok(Target::Name(name));
    }
    if input.peek(kw::path) {
        let key = input.parse::<kw::path>()?;
        if !input.peek(Token![=]) {
            return Err(Error::new(key.span, "expected `path = \"/abs/file.lock\"`"));
        }
        input.parse::<Token![=]>()?;
        let file = string(
            input,
            "an absolute file path, as in `path = \"/run/lock/tool.lock\"`",
        )?;
        absolute(&file, "path")?;
        return Ok(Target::File(file));
    }
    if let Some(err) = name_equals(input, true) {
        return Err(err);
    }
    let option = input.peek(kw::on_busy)
        || input.peek(kw::wait)
        || input.peek(kw::shared)
        || input.peek(kw::dir)
        || input.peek(Token![crate]);
    if !option && (input.peek(syn::Ident) || input.peek(Token![::]) || input.peek(Token![Self])) {
        let path: syn::Path = input.parse()?;
        if let Some(word) = unquoted(&path) {
            return Err(Error::new_spanned(
                &path,
                format!(
                    "a lock name goes in quotes: write `\"{word}\"`; or, to name a constant, declare it in upper case with `lockattr::LockName::new`, as in `const {upper}: lockattr::LockName = lockattr::LockName::new(\"{word}\");`",
                    upper = word.to_ascii_uppercase(),
                ),
            ));
        }
        // Generic arguments (`X<u8>`) would land where only an expression
        // path fits; a lock name's constant needs none.
        if let Some(segment) = path.segments.iter().find(|s| !s.arguments.is_none()) {
            return Err(Error::new_spanned(
                segment,
                "a lock name's constant is a plain path, as in `BUILD_DEPLOY` or `Self::NAME`, without generic arguments",
            ));
        }
        return Ok(Target::Const(path));
    }
    Err(Error::new(input.span(), expected))
}

/// `name = "x"`, as proc-lock writes it: an error that says to give the
/// name first, without `name =`.
fn name_equals(input: ParseStream<'_>, first: bool) -> Option<Error> {
    let fork = input.fork();
    let key: syn::Ident = fork.parse().ok()?;
    if key != "name" || !fork.peek(Token![=]) {
        return None;
    }
    let eq: Token![=] = fork.parse().ok()?;
    let (example, end) = match fork.parse::<LitStr>() {
        Ok(lit) => (lit.token().to_string(), lit.to_token_stream()),
        Err(_) => ("\"build-deploy\"".to_owned(), eq.to_token_stream()),
    };
    let text = match first {
        true => {
            format!("the lock name comes first, without `name =`, as in `#[exclusive({example})]`")
        }
        false => format!(
            "a lock name is written without `name =`: write `{example}`, before the options"
        ),
    };
    Some(Error::new_spanned(quote!(#key #end), text))
}

/// A single identifier without upper-case letters, such as `build_deploy`,
/// where a lock name goes: taken as a name whose quotes were forgotten
/// (`"build_deploy"`, as written: `_` is as valid as `-`), never as a
/// constant. Constants are upper case (rustc's `non_upper_case_globals`
/// lint), and rustc's own "cannot find value" would not say what to write;
/// a path (`Self::NAME`, `names::DEPLOY`) or a word with an upper-case
/// letter is a constant, resolved by rustc.
fn unquoted(path: &syn::Path) -> Option<String> {
    let word = path.get_ident()?.unraw().to_string();
    (!word.chars().any(|c| c.is_ascii_uppercase())).then_some(word)
}

/// After a comma: another lock name rather than an option? A string, or a
/// path to a `const` that is neither an option keyword nor followed by `=`,
/// nor a lower-case word: that is an unknown option (`blocking`) or a name
/// without its quotes, and its error says both.
fn another_name(input: ParseStream<'_>) -> bool {
    if input.peek(LitStr) {
        return true;
    }
    let fork = input.fork();
    let Ok(path) = fork.parse::<syn::Path>() else {
        return false;
    };
    if fork.peek(Token![=]) {
        return false;
    }
    match path.get_ident().map(ToString::to_string) {
        Some(word) => unquoted(&path).is_none() && !OPTION_NAMES.contains(&word.as_str()),
        None => true,
    }
}

/// The option `word` is most likely a typo of, if any.
fn nearest_option(word: &str) -> Option<&'static str> {
    OPTION_NAMES
        .iter()
        .map(|option| (edit_distance(word, option), *option))
        .filter(|&(distance, option)| distance <= 2 && distance < option.len())
        .min()
        .map(|(_, option)| option)
}

/// Levenshtein distance, for short words.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

fn string(input: ParseStream<'_>, what: &str) -> syn::Result<LitStr> {
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        if !lit.suffix().is_empty() {
            return Err(Error::new(
                lit.span(),
                format!(
                    "unexpected suffix `{}` after the string; expected {what}",
                    lit.suffix()
                ),
            ));
        }
        Ok(lit)
    } else {
        Err(Error::new(input.span(), format!("expected {what}")))
    }
}

/// The rules of `LockName::new` in `lockattr/src/name.rs`, checked here so
/// that the error points at the literal. Keep the two in step.
fn check_name(lit: &LitStr) -> syn::Result<()> {
    let name = lit.value();
    let rule = if name.is_empty() {
        "a lock name must not be empty"
    } else if name.len() > 200 {
        "a lock name must be at most 200 bytes long"
    } else if name.starts_with('.') {
        "a lock name must not start with `.`"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        "a lock name may contain only ASCII letters, digits, `.`, `_` and `-`"
    } else {
        return Ok(());
    };
    Err(Error::new(
        lit.span(),
        format!("invalid lock name: {rule}, as in `\"build-deploy\"`"),
    ))
}

fn absolute(lit: &LitStr, option: &str) -> syn::Result<()> {
    let value = lit.value();
    if !value.starts_with('/') {
        return Err(Error::new(
            lit.span(),
            format!(
                "`{option}` must be an absolute path (starting with `/`), so every caller reaches the same file"
            ),
        ));
    }
    if value.contains('\0') {
        return Err(Error::new(
            lit.span(),
            format!("`{option}` must not contain a NUL byte"),
        ));
    }
    if option == "path" && value.ends_with('/') {
        return Err(Error::new(
            lit.span(),
            "`path` must name a file, not a directory; use `dir = ...` for a directory",
        ));
    }
    Ok(())
}

/// `"250ms"`, `"30s"`, `"5m"`, `"1h"` in milliseconds; zero, overflow and
/// anything else are errors on the literal.
fn duration(lit: &LitStr) -> syn::Result<u64> {
    let text = lit.value();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    let scale: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => 0,
    };
    if number.is_empty() || scale == 0 {
        return Err(Error::new(
            lit.span(),
            "expected a duration: a whole number then `ms`, `s`, `m` or `h`, as in `\"250ms\"`, `\"30s\"`, `\"5m\"`",
        ));
    }
    let ms = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale));
    match ms {
        Some(0) => Err(Error::new(
            lit.span(),
            "a wait of zero never waits; drop `wait = ...` to try once, or give a positive duration",
        )),
        Some(ms) => Ok(ms),
        None => Err(Error::new(
            lit.span(),
            "this duration is too long; give at most a few years, as in `\"24h\"`, or `wait` to wait without limit",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let lit = |s: &str| LitStr::new(s, Span::call_site());
        assert_eq!(duration(&lit("250ms")).unwrap(), 250);
        assert_eq!(duration(&lit("30s")).unwrap(), 30_000);
        assert_eq!(duration(&lit("5m")).unwrap(), 300_000);
        assert_eq!(duration(&lit("1h")).unwrap(), 3_600_000);
        for bad in [
            "",
            "s",
            "30",
            "1.5s",
            "-1s",
            "30 s",
            "0s",
            "99999999999999999999h",
            "5d",
        ] {
            assert!(duration(&lit(bad)).is_err(), "{bad:?} should be refused");
        }
    }
}
