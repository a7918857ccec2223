//! Lock names, checked in `const` context so a bad constant fails to compile.

use std::fmt;

/// The longest accepted name, in bytes; `NAME.lock` then stays well under
/// the 255-byte file name limit of Linux file systems.
pub const MAX_NAME_LEN: usize = 200;

/// A checked lock name: 1 to 200 bytes of ASCII letters, digits, `.`, `_`
/// and `-`, not starting with `.`.
///
/// [`LockName::new`] is a `const fn`, so a name declared once as a constant
/// is checked by the compiler, and every `#[exclusive(NAME)]` that names the
/// constant is spelled the same:
///
/// ```
/// use lockattr::LockName;
///
/// const BUILD_DEPLOY: LockName = LockName::new("build-deploy");
/// assert_eq!(BUILD_DEPLOY.as_str(), "build-deploy");
/// ```
///
/// A bad name in a constant is a compile error that names the rule:
///
/// ```compile_fail
/// const BAD: lockattr::LockName = lockattr::LockName::new("../etc/passwd");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LockName(&'static str);

impl LockName {
    /// Checks `name`; in a `const`, a bad name is a compile error.
    ///
    /// # Panics
    ///
    /// When `name` breaks one of the rules; the message says which. In a
    /// `const` item (`const DEPLOY: LockName = LockName::new("...")`) or a
    /// `const { }` block, the panic happens while compiling, so a bad name
    /// never reaches a running program; elsewhere it panics at run time.
    /// For a name from a flag or a file, use [`LockName::parse`], which
    /// returns an error instead.
    #[track_caller]
    pub const fn new(name: &'static str) -> LockName {
        match check(name) {
            Ok(()) => LockName(name),
            Err(rule) => panic!("{}", rule.message()),
        }
    }

    /// Checks `name` without panicking, also in a `const fn`. For a name
    /// made at run time (a `String`), use [`LockName::parse`].
    ///
    /// ```
    /// use lockattr::{LockName, NameError};
    ///
    /// assert!(LockName::try_new("deploy-prod").is_ok());
    /// assert_eq!(LockName::try_new(".hidden"), Err(NameError::LeadingDot));
    /// ```
    ///
    /// # Errors
    ///
    /// The [`NameError`] of the first rule `name` breaks.
    pub const fn try_new(name: &'static str) -> Result<LockName, NameError> {
        match check(name) {
            Ok(()) => Ok(LockName(name)),
            Err(rule) => Err(rule),
        }
    }

    /// A name already checked (or made of checked parts and escaped values).
    pub(crate) const fn checked(name: &'static str) -> LockName {
        LockName(name)
    }

    /// The name as written.
    pub const fn as_str(&self) -> &'static str {
        self.0
    }
}

impl fmt::Debug for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The rule a rejected lock name broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than 200 bytes.
    TooLong,
    /// The name starts with `.` (a hidden file, or `..`).
    LeadingDot,
    /// The name has a byte other than an ASCII letter, digit, `.`, `_`, `-`
    /// (a `/`, a space, a NUL, a non-ASCII letter...).
    BadCharacter,
}

impl NameError {
    /// The rule, as a sentence. The macro crate spells the same rules in
    /// `lockattr-macros/src/args.rs`; keep the two in step.
    pub const fn message(self) -> &'static str {
        match self {
            NameError::Empty => "a lock name must not be empty",
            NameError::TooLong => "a lock name must be at most 200 bytes long",
            NameError::LeadingDot => "a lock name must not start with `.`",
            NameError::BadCharacter => {
                "a lock name may contain only ASCII letters, digits, `.`, `_` and `-`"
            }
        }
    }
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for NameError {}

/// Checks `name` against the rules, at compile time or at run time.
pub(crate) const fn check(name: &str) -> Result<(), NameError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Err(NameError::Empty);
    }
    if bytes.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    if bytes[0] == b'.' {
        return Err(NameError::LeadingDot);
    }
    let mut i = 0;
    while i < bytes.len() {
        if !allowed(bytes[i]) {
            return Err(NameError::BadCharacter);
        }
        i += 1;
    }
    Ok(())
}

/// A byte a lock name may contain.
pub(crate) const fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert_eq!(check("build-deploy"), Ok(()));
        assert_eq!(check("a.b_c-D9"), Ok(()));
        assert_eq!(check(""), Err(NameError::Empty));
        assert_eq!(check(".hidden"), Err(NameError::LeadingDot));
        assert_eq!(check(".."), Err(NameError::LeadingDot));
        assert_eq!(check("a/b"), Err(NameError::BadCharacter));
        assert_eq!(check("a\0b"), Err(NameError::BadCharacter));
        assert_eq!(check("dé"), Err(NameError::BadCharacter));
        assert_eq!(check(&"x".repeat(200)), Ok(()));
        assert_eq!(check(&"x".repeat(201)), Err(NameError::TooLong));
    }
}
