// Every `Lock` builder returns a new `Lock` and leaves the one it is called
// on unchanged (`Lock` is `Copy`), so calling one for its effect is a bug:
// `lock.shared();` would leave `lock` exclusive.
#![deny(unused_must_use)]

use lockattr::{Lock, LockName};
use std::time::Duration;

fn main() {
    let lock = Lock::new(LockName::new("ui-builder"));
    lock.shared();
    lock.wait();
    lock.wait_for(Duration::from_secs(5));
    lock.dir("/run/lock/mytool");
    Lock::new(LockName::new("ui-builder"));
    Lock::at_path("/run/lock/ui-builder.lock");
    lock.in_dir("/run/lock/mytool");
    Lock::at_file("/run/lock/ui-builder.lock");
    lockattr::lend();
    let _guard = lock.acquire();
}
