//! Which test a function is, for `#[test]` written above `#[exclusive]`.

/// A function's name as libtest names the test it may be: its module path
/// without the crate's name, then its own name (`tests::uses_db`).
///
/// The attribute gives this (in test builds) to functions it cannot see a
/// test attribute on: `#[test]` written above `#[exclusive]` is expanded
/// first and leaves no trace. libtest runs every test on a thread named
/// after the test, also with `--test-threads=1`, so the thread's name tells
/// whether the function runs as that test. Looked at only once the lock is
/// found busy: an uncontended call costs nothing more.
#[derive(Debug)]
pub struct TestName {
    module_path: &'static str,
    name: &'static str,
}

impl TestName {
    pub const fn new(module_path: &'static str, name: &'static str) -> TestName {
        TestName { module_path, name }
    }

    pub(crate) fn is_running(&self) -> bool {
        let thread = std::thread::current();
        let Some(running) = thread.name() else {
            return false;
        };
        let name = match self.module_path.split_once("::") {
            Some((_crate, module)) => running
                .strip_prefix(module)
                .and_then(|rest| rest.strip_prefix("::")),
            None => Some(running),
        };
        name == Some(self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::TestName;

    /// Whether `test` is running, asked on a thread named as libtest would.
    fn running_as(thread: &str, test: &'static TestName) -> bool {
        std::thread::Builder::new()
            .name(thread.to_owned())
            .spawn(|| test.is_running())
            .expect("spawn a thread")
            .join()
            .expect("the thread")
    }

    #[test]
    fn a_test_is_known_by_its_threads_name() {
        static TOP: TestName = TestName::new("serial_a", "uses_db");
        static NESTED: TestName = TestName::new("mytool::db::tests", "uses_db");
        assert!(running_as("uses_db", &TOP));
        assert!(running_as("db::tests::uses_db", &NESTED));
        for other in [
            "uses_db_too",
            "tests::uses_db",
            "mytool::db::tests::uses_db",
            "db::tests::uses_db2",
            "db::testsuses_db",
            "main",
        ] {
            assert!(!running_as(other, &NESTED), "{other}");
        }
        assert!(!running_as("db::tests::uses_db", &TOP));
        let unnamed = std::thread::spawn(|| TOP.is_running()).join().unwrap();
        assert!(!unnamed, "a thread without a name runs no test");
    }
}
