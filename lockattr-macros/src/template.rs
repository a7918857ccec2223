//! Lock names with placeholders: `"deploy-{env}"` locks for the value of
//! the parameter `env`. The rules of `lockattr/src/template.rs` (which
//! builds the name at run time), checked here so that a mistake is a
//! compile error on the literal. Keep the two in step.

use syn::{Error, LitStr};

/// One piece of a template.
pub(crate) enum Piece {
    Fixed(String),
    /// `{param}`: a parameter of the function.
    Param(String),
    /// `{self.field}`: a field of the receiver.
    Field(String),
}

/// Whether a name literal has placeholders at all.
pub(crate) fn has_placeholders(lit: &LitStr) -> bool {
    lit.value().contains(['{', '}'])
}

/// Splits and checks a template: closed, non-empty placeholders naming a
/// parameter or `self.field`; fixed parts of the name's alphabet, not
/// starting the name with `.`; placeholders apart by a `-` or `.` (a byte
/// no escaped value contains, so that two different values never name the
/// same file).
pub(crate) fn parse(lit: &LitStr) -> syn::Result<Vec<Piece>> {
    let text = lit.value();
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let rest = &text[at..];
        let Some(open) = rest.find(['{', '}']) else {
            pieces.push(Piece::Fixed(rest.to_owned()));
            break;
        };
        if rest.as_bytes()[open] == b'}' {
            let here = at + open;
            return Err(error(
                lit,
                here..here + 1,
                "this `}` closes no placeholder; a lock name cannot contain braces",
            ));
        }
        if open > 0 {
            pieces.push(Piece::Fixed(rest[..open].to_owned()));
        }
        let start = at + open;
        let Some(close) = rest[open + 1..].find(['}', '{']).map(|i| open + 1 + i) else {
            return Err(error(
                lit,
                start..text.len(),
                "this `{` is never closed; write a placeholder as `{param}`",
            ));
        };
        if rest.as_bytes()[close] == b'{' {
            return Err(error(
                lit,
                start..at + close,
                "this `{` is never closed; write a placeholder as `{param}`",
            ));
        }
        let inside = &rest[open + 1..close];
        let span = start..at + close + 1;
        pieces.push(placeholder(lit, inside, span)?);
        at += close + 1;
    }
    check(lit, &pieces)?;
    Ok(pieces)
}

fn placeholder(lit: &LitStr, inside: &str, span: std::ops::Range<usize>) -> syn::Result<Piece> {
    if inside.trim().is_empty() {
        return Err(error(
            lit,
            span,
            "this placeholder is empty; name a parameter, as in `{env}`",
        ));
    }
    // An identifier as Rust reads it, raw ones allowed (`{r#type}`); a
    // parameter may be named by the keyword it is (`{type}` for `r#type`).
    let ident = |s: &str| syn::parse_str::<syn::Ident>(s).is_ok();
    if let Some(field) = inside.strip_prefix("self.")
        && ident(field)
    {
        return Ok(Piece::Field(field.to_owned()));
    }
    if ident(inside) || ident(&format!("r#{inside}")) {
        return Ok(Piece::Param(inside.to_owned()));
    }
    Err(error(
        lit,
        span,
        &format!(
            "`{{{inside}}}` is not a placeholder; write a parameter's name, as in `{{env}}`, or `{{self.field}}`"
        ),
    ))
}

fn check(lit: &LitStr, pieces: &[Piece]) -> syn::Result<()> {
    let whole = lit.value();
    let mut fixed_len = 0;
    let mut open: Option<&str> = None;
    for (i, piece) in pieces.iter().enumerate() {
        match piece {
            Piece::Fixed(text) => {
                fixed_len += text.len();
                if i == 0 && text.starts_with('.') {
                    return Err(invalid(lit, "a lock name must not start with `.`"));
                }
                if let Some(bad) = text.chars().find(|&c| !allowed(c)) {
                    return Err(invalid(
                        lit,
                        &format!(
                            "a lock name may contain only ASCII letters, digits, `.`, `_` and `-` outside its placeholders, not {bad:?}"
                        ),
                    ));
                }
                if text.contains(['-', '.']) {
                    open = None;
                }
            }
            Piece::Param(name) | Piece::Field(name) => {
                if let Some(before) = open {
                    return Err(Error::new(
                        lit.span(),
                        format!(
                            "in {whole:?}, the placeholders `{{{before}}}` and `{{{name}}}` must have a `-` or `.` between them, so that two different values never name the same file"
                        ),
                    ));
                }
                open = Some(name);
            }
        }
    }
    if fixed_len > 200 {
        return Err(invalid(lit, "a lock name must be at most 200 bytes long"));
    }
    Ok(())
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-'
}

fn invalid(lit: &LitStr, rule: &str) -> Error {
    Error::new(
        lit.span(),
        format!("invalid lock name: {rule}, as in `\"deploy-{{env}}\"`"),
    )
}

/// An error at the bytes `range` of the literal's value. Stable Rust cannot
/// point inside a literal yet (`Literal::subspan` is unstable), so there
/// the whole literal is underlined, and the message quotes the piece.
fn error(lit: &LitStr, range: std::ops::Range<usize>, message: &str) -> Error {
    let value = lit.value();
    let piece = &value[range.clone()];
    // +1: past the opening quote, when the literal is written plainly.
    let span = lit
        .token()
        .subspan(range.start + 1..range.end + 1)
        .filter(|_| lit.token().to_string().starts_with('"'))
        .unwrap_or_else(|| lit.span());
    Error::new(span, format!("in {value:?}, `{piece}`: {message}"))
}
