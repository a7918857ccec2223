//! Where a lock file lives: `DIR/NAME.lock`, and which DIR.

use crate::error::{About, Error, ErrorKind};
use rustix::fs::{FileType, Mode};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The lock's file, as the attribute's options describe it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// `NAME.lock` in `dir`, or in the default directory.
    Named {
        name: &'static str,
        dir: Option<&'static str>,
    },
    /// `path = "..."`: exactly this file.
    Path(&'static str),
    /// Names made at each call (a template, several names): only where
    /// their files live.
    Names { dir: Option<&'static str> },
}

impl Place {
    /// The lock's name; `None` for a lock given by its path.
    pub(crate) fn name(&self) -> Option<&'static str> {
        match *self {
            Place::Named { name, .. } => Some(name),
            Place::Path(_) | Place::Names { .. } => None,
        }
    }

    /// The name a database lock's key is made from: the name, or for a lock
    /// given by its path, the path.
    #[cfg(feature = "postgres")]
    pub(crate) fn key_name(&self) -> &'static str {
        match *self {
            Place::Named { name, .. } => name,
            Place::Path(path) => path,
            Place::Names { .. } => "",
        }
    }

    /// Resolves the lock file's path. Relative directories are refused: two
    /// callers in different working directories would lock different files.
    pub(crate) fn resolve(&self) -> Result<PathBuf, Error> {
        let name = self.name();
        let (dir, file) = match *self {
            Place::Path(path) => {
                return absolute(name, Path::new(path), "path").map(Path::to_owned);
            }
            Place::Named {
                name,
                dir: Some(dir),
            } => (absolute(Some(name), Path::new(dir), "dir")?, name),
            Place::Named { name, dir: None } => (default_dir(Some(name))?, name),
            Place::Names { .. } => {
                let text = "names made at each call have no single file".to_owned();
                return Err(Error::other(ErrorKind::Config, About::NOTHING, text));
            }
        };
        let mut path = dir.join(file);
        path.as_mut_os_string().push(".lock");
        Ok(path)
    }
}

/// The directory of `name`'s file for a lock of `place`.
pub(crate) fn dir_of(place: &Place, name: &str) -> Result<&'static Path, Error> {
    match *place {
        Place::Named { dir: Some(dir), .. } | Place::Names { dir: Some(dir) } => {
            absolute(Some(name), Path::new(dir), "dir")
        }
        _ => default_dir(Some(name)),
    }
}

/// Calls `with` on `DIR/NAME.lock`, made on the stack when it fits.
pub(crate) fn with_file<T>(dir: &Path, name: &str, with: impl FnOnce(&Path) -> T) -> T {
    use std::os::unix::ffi::OsStrExt;
    let dir = dir.as_os_str().as_bytes();
    // `dir = "/run/lock/"` names `/run/lock/x.lock`, as `Path::join` would.
    let sep: &[u8] = if dir.ends_with(b"/") { b"" } else { b"/" };
    let mut buf = [0u8; 512];
    let len = dir.len() + sep.len() + name.len() + ".lock".len();
    if len > buf.len() {
        let mut path = Path::new(std::ffi::OsStr::from_bytes(dir)).join(name);
        path.as_mut_os_string().push(".lock");
        return with(&path);
    }
    let mut at = 0;
    for part in [dir, sep, name.as_bytes(), b".lock"] {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    with(Path::new(std::ffi::OsStr::from_bytes(&buf[..len])))
}

fn absolute<'p>(name: Option<&str>, path: &'p Path, option: &str) -> Result<&'p Path, Error> {
    let problem = if !path.is_absolute() {
        "is relative; give an absolute path so every caller, whatever its working directory, \
         reaches the same file"
    } else if path.as_os_str().as_encoded_bytes().contains(&0) {
        "contains a NUL byte, which no file name can"
    } else {
        return Ok(path);
    };
    let text = format!("the {option} {} {problem}", path.display());
    let about = About::named(name);
    Err(Error::other(ErrorKind::Config, about, text))
}

static DIR: OnceLock<PathBuf> = OnceLock::new();

/// The default directory, decided once per process: the one given to
/// [`set_default_dir`], else `$LOCKATTR_DIR` if set and not empty, else
/// `/run/lock` if it is a world-writable sticky directory, else `/tmp`.
/// Never a per-user directory such as `$TMPDIR` or `$XDG_RUNTIME_DIR`:
/// every user of the host must reach the same file.
pub(crate) fn default_dir(name: Option<&str>) -> Result<&'static Path, Error> {
    let dir = DIR.get_or_init(|| match std::env::var_os("LOCKATTR_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ if is_shared_sticky_dir(Path::new("/run/lock")) => PathBuf::from("/run/lock"),
        _ => PathBuf::from("/tmp"),
    });
    absolute(name, dir, "directory in LOCKATTR_DIR")
}

/// Pins this process's default lock directory to `dir`, whatever
/// `LOCKATTR_DIR` says, so that the environment cannot split a tool's
/// callers between two directories. Call it before the first lock.
///
/// # Errors
///
/// [`ErrorKind::Config`] when `dir` is relative, or when an earlier lock
/// already settled the default directory on another one.
pub fn set_default_dir(dir: impl Into<PathBuf>) -> Result<(), Error> {
    let dir = dir.into();
    absolute(None, &dir, "default directory")?;
    let settled = DIR.get_or_init(|| dir.clone());
    if *settled != dir {
        let text = format!(
            "the default directory is already {}, settled by an earlier lock of this process; \
             call `set_default_dir({})` before the first lock",
            settled.display(),
            dir.display()
        );
        return Err(Error::other(ErrorKind::Config, About::NOTHING, text));
    }
    Ok(())
}

fn is_shared_sticky_dir(dir: &Path) -> bool {
    rustix::fs::stat(dir).is_ok_and(|st| {
        let mode = Mode::from_raw_mode(st.st_mode);
        FileType::from_raw_mode(st.st_mode) == FileType::Directory
            && mode.contains(Mode::SVTX | Mode::WOTH)
    })
}

#[cfg(test)]
mod tests {
    use super::with_file;
    use std::path::Path;

    #[test]
    fn a_trailing_slash_in_the_directory_is_not_doubled() {
        let path = |dir: &str| with_file(Path::new(dir), "x", Path::to_path_buf);
        assert_eq!(path("/run/lock/"), Path::new("/run/lock/x.lock"));
        assert_eq!(path("/run/lock"), Path::new("/run/lock/x.lock"));
        assert_eq!(path("/"), Path::new("/x.lock"));
        let long = format!("/{}/", "d".repeat(600));
        assert_eq!(path(&long), Path::new(&long).join("x.lock"));
    }
}
