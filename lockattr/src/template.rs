//! Names made at run time: from a template's values (`"deploy-{env}"`),
//! or given whole by a flag or a configuration file.
//!
//! A value is escaped, never trusted. Every byte other than an ASCII letter
//! or digit becomes `_` and two upper-case hex digits (`/` is `_2F`, `.` is
//! `_2E`, `_` itself `_5F`), and an empty value is a lone `_`. So a value
//! cannot leave the lock directory (no `/`), cannot make a hidden or
//! invalid file name (no `.` from a value, and a template cannot start with
//! one), and the escape can be undone, so two different values never share
//! a file. Several placeholders are told apart by the `-` or `.` the
//! template must put between them, a byte no escaped value contains. The
//! whole name must still fit in 200 bytes; a longer one is an error, not a
//! shortened name (shortening could make two values meet).

use crate::error::{About, Error, ErrorKind};
use crate::name::{self, LockName, MAX_NAME_LEN};
use std::collections::HashSet;
use std::fmt::{self, Write};
use std::sync::{Mutex, PoisonError};

/// A lock name being built, on the stack: resolving a template allocates
/// nothing.
pub(crate) struct NameBuf {
    bytes: [u8; MAX_NAME_LEN],
    len: usize,
    /// The name needed more than [`MAX_NAME_LEN`] bytes; how many.
    wanted: usize,
}

impl NameBuf {
    pub(crate) fn new() -> NameBuf {
        NameBuf {
            bytes: [0; MAX_NAME_LEN],
            len: 0,
            wanted: 0,
        }
    }

    fn push(&mut self, byte: u8) {
        self.wanted += 1;
        if self.len < MAX_NAME_LEN {
            self.bytes[self.len] = byte;
            self.len += 1;
        }
    }

    /// A fixed part of a template, checked when the template was.
    pub(crate) fn push_fixed(&mut self, fixed: &str) {
        fixed.bytes().for_each(|byte| self.push(byte));
    }

    /// A value's bytes, escaped; an empty value is a lone `_`.
    pub(crate) fn push_value(&mut self, value: &[u8]) {
        if value.is_empty() {
            self.push(b'_');
        }
        self.push_escaped(value);
    }

    fn push_escaped(&mut self, value: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for &byte in value {
            if byte.is_ascii_alphanumeric() {
                self.push(byte);
            } else {
                self.push(b'_');
                self.push(HEX[usize::from(byte >> 4)]);
                self.push(HEX[usize::from(byte & 15)]);
            }
        }
    }

    /// A value as its `Display` writes it, escaped as it is written.
    pub(crate) fn push_display(&mut self, value: &dyn fmt::Display) {
        let start = self.wanted;
        let _ = write!(Escaper(self), "{value}");
        if self.wanted == start {
            self.push(b'_'); // an empty value
        }
    }

    /// The name, or why there is none: too long.
    pub(crate) fn finish(&self, template: &str) -> Result<&str, Error> {
        if self.wanted > MAX_NAME_LEN {
            let text = format!(
                "the lock name made from `{template}` is {} bytes long, more than the {MAX_NAME_LEN} \
                 a lock name may have (each byte of a value other than a letter or digit takes \
                 three); use shorter values",
                self.wanted
            );
            return Err(Error::other(
                ErrorKind::Config,
                About::named(Some(template)),
                text,
            ));
        }
        // Only ASCII letters, digits and the template's checked characters.
        Ok(std::str::from_utf8(&self.bytes[..self.len]).expect("ASCII"))
    }
}

/// Escapes what `Display` writes, as it writes it.
struct Escaper<'a>(&'a mut NameBuf);

impl Write for Escaper<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.push_escaped(text.as_bytes());
        Ok(())
    }
}

/// The pieces of a template: fixed text and placeholders, in order.
#[derive(Debug)]
pub(crate) enum Piece<'a> {
    Fixed(&'a str),
    Placeholder(&'a str),
}

/// Splits a template and checks it as the attribute does at compile time:
/// closed, non-empty placeholders; fixed parts of the name's alphabet, not
/// starting the name with `.`; placeholders apart by a `-` or `.`.
pub(crate) fn parse(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            Some(at) if rest.as_bytes()[at] == b'}' => {
                return Err(format!(
                    "a `}}` at byte {} closes no placeholder",
                    offset(template, rest) + at
                ));
            }
            Some(at) => {
                if at > 0 {
                    pieces.push(Piece::Fixed(&rest[..at]));
                }
                let after = &rest[at + 1..];
                let close = after.find('}').ok_or_else(|| {
                    format!(
                        "the `{{` at byte {} is never closed",
                        offset(template, rest) + at
                    )
                })?;
                let name = &after[..close];
                if name.is_empty() || name.contains('{') {
                    return Err(format!(
                        "the placeholder at byte {} is empty; write a parameter's name, as in \
                         `{{env}}`",
                        offset(template, rest) + at
                    ));
                }
                pieces.push(Piece::Placeholder(name));
                rest = &after[close + 1..];
            }
            None => {
                pieces.push(Piece::Fixed(rest));
                rest = "";
            }
        }
    }
    check_pieces(&pieces)?;
    Ok(pieces)
}

fn offset(whole: &str, part: &str) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

fn check_pieces(pieces: &[Piece<'_>]) -> Result<(), String> {
    let mut fixed_len = 0;
    // The last placeholder with no `-` or `.` after it yet.
    let mut open: Option<&str> = None;
    for (i, piece) in pieces.iter().enumerate() {
        match *piece {
            Piece::Fixed(text) => {
                fixed_len += text.len();
                if i == 0 && text.starts_with('.') {
                    return Err(name::NameError::LeadingDot.message().to_owned());
                }
                if !text.bytes().all(name::allowed) {
                    return Err(name::NameError::BadCharacter.message().to_owned());
                }
                if text.contains(['-', '.']) {
                    open = None;
                }
            }
            Piece::Placeholder(name) => {
                if let Some(before) = open {
                    return Err(separate(before, name));
                }
                open = Some(name);
            }
        }
    }
    if fixed_len > MAX_NAME_LEN {
        return Err(name::NameError::TooLong.message().to_owned());
    }
    Ok(())
}

fn separate(before: &str, after: &str) -> String {
    format!(
        "placeholders `{{{before}}}` and `{{{after}}}` must have a `-` or `.` between them, so \
         that two different values never name the same file"
    )
}

impl LockName {
    /// A name known only at run time (from a flag or a configuration file),
    /// checked by the same rules as [`LockName::new`]; the error says which
    /// name broke which rule. Each distinct name is kept for the life of
    /// the process (as its lock is), so parsing one twice costs no memory.
    ///
    /// ```
    /// let name = lockattr::LockName::parse("deploy-prod")?;
    /// assert_eq!(name.as_str(), "deploy-prod");
    /// let err = lockattr::LockName::parse("../etc/passwd").unwrap_err();
    /// assert!(err.to_string().contains("../etc/passwd"));
    /// # Ok::<(), lockattr::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] when the name breaks a rule.
    pub fn parse(name: &str) -> Result<LockName, Error> {
        match name::check(name) {
            Ok(()) => Ok(intern(name)),
            Err(rule) => {
                let text = format!("invalid lock name `{}`: {rule}", name.escape_debug());
                Err(Error::other(ErrorKind::Config, About::NOTHING, text))
            }
        }
    }

    /// The name `#[exclusive("deploy-{env}")]` would lock for these values:
    /// each `{placeholder}` is replaced by its value, escaped (see the
    /// crate's docs: "Names from arguments"), so a value can never escape
    /// the lock directory and two different values never share a file.
    ///
    /// ```
    /// use lockattr::LockName;
    ///
    /// let prod = LockName::from_template("deploy-{env}", &[("env", &"prod")])?;
    /// assert_eq!(prod.as_str(), "deploy-prod");
    /// let odd = LockName::from_template("deploy-{env}", &[("env", &"../eu/1")])?;
    /// assert_eq!(odd.as_str(), "deploy-_2E_2E_2Feu_2F1");
    /// # Ok::<(), lockattr::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for a bad template, a placeholder without a
    /// value, or a name longer than 200 bytes.
    pub fn from_template(
        template: &str,
        values: &[(&str, &dyn fmt::Display)],
    ) -> Result<LockName, Error> {
        let config = |text: String| {
            let text = format!("lock name template `{template}`: {text}");
            Error::other(ErrorKind::Config, About::NOTHING, text)
        };
        let pieces = parse(template).map_err(config)?;
        let mut buf = NameBuf::new();
        for piece in pieces {
            match piece {
                Piece::Fixed(text) => buf.push_fixed(text),
                Piece::Placeholder(name) => {
                    let (_, value) = values
                        .iter()
                        .find(|(key, _)| *key == name)
                        .ok_or_else(|| config(format!("no value for `{{{name}}}`")))?;
                    buf.push_display(*value);
                }
            }
        }
        buf.finish(template).map(intern)
    }
}

/// The one `LockName` of each distinct run-time name.
pub(crate) fn intern(name: &str) -> LockName {
    LockName::checked(keep(name))
}

/// The one `&'static str` of each distinct string made at run time (names
/// and directories): kept for the life of the process, as the lock that
/// uses it is, so making the same one again costs no memory.
pub(crate) fn keep(text: &str) -> &'static str {
    static KEPT: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
    let kept = kept.get_or_insert_with(HashSet::new);
    match kept.get(text) {
        Some(&text) => text,
        None => {
            let text: &'static str = Box::leak(text.into());
            kept.insert(text);
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(value: &[u8]) -> String {
        let mut buf = NameBuf::new();
        buf.push_fixed("t-");
        buf.push_value(value);
        buf.finish("t-{v}").unwrap().to_owned()
    }

    #[test]
    fn values_are_escaped_reversibly_into_the_name_alphabet() {
        assert_eq!(escaped(b"prod"), "t-prod");
        assert_eq!(escaped(b""), "t-_");
        assert_eq!(escaped(b"."), "t-_2E");
        assert_eq!(escaped(b"../x"), "t-_2E_2E_2Fx");
        assert_eq!(escaped(b"a_b"), "t-a_5Fb");
        assert_eq!(escaped(b"\0\xff"), "t-_00_FF");
        for name in [escaped(b"../x"), escaped(b""), escaped(b"\xff\xfe")] {
            assert_eq!(name::check(&name), Ok(()), "{name}");
        }
    }

    #[test]
    fn display_values_are_escaped_as_written() {
        let mut buf = NameBuf::new();
        buf.push_display(&format_args!("{}/{}", "a", 7));
        assert_eq!(buf.finish("{v}").unwrap(), "a_2F7");
        let mut empty = NameBuf::new();
        empty.push_display(&"");
        assert_eq!(empty.finish("{v}").unwrap(), "_");
    }

    #[test]
    fn too_long_is_an_error() {
        let mut buf = NameBuf::new();
        buf.push_value(&[b'/'; 70]);
        let err = buf.finish("x-{v}").unwrap_err();
        assert!(err.to_string().contains("210 bytes"), "{err}");
    }

    #[test]
    fn templates_are_checked() {
        assert!(parse("deploy-{env}").is_ok());
        assert!(parse("{a}-{b}.{c}").is_ok());
        assert!(parse("deploy-{env").unwrap_err().contains("never closed"));
        assert!(parse("deploy-{}").unwrap_err().contains("empty"));
        assert!(
            parse("deploy}")
                .unwrap_err()
                .contains("closes no placeholder")
        );
        assert!(
            parse("{a}{b}")
                .unwrap_err()
                .contains("must have a `-` or `.`")
        );
        assert!(
            parse("{a}_{b}")
                .unwrap_err()
                .contains("must have a `-` or `.`")
        );
        assert!(parse(".{a}").unwrap_err().contains("start with `.`"));
        assert!(parse("a/{b}").unwrap_err().contains("may contain only"));
    }
}
