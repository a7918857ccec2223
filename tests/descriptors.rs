//! The registry keeps a lock file's descriptor open between holds (re-locking
//! it is cheaper than reopening), but only for a bounded number of files.

mod common;

use lockattr::{Lock, LockName};

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

// One test, in this order: only the first 64 lock files of a process keep
// their descriptor, so the many-names part must come after the kept one.
#[test]
fn descriptors_are_kept_for_few_files_and_bounded_for_many() {
    a_kept_descriptor_is_one_per_file_and_reused();
    many_distinct_names_do_not_exhaust_descriptors();
}

fn many_distinct_names_do_not_exhaust_descriptors() {
    let dir = common::shared_dir("many-names");
    let dir = common::leak(dir.to_str().expect("utf-8 temp dir"));
    let before = open_descriptors();
    for i in 0..1000 {
        let name = LockName::try_new(common::leak(format!("name-{i}"))).expect("a valid name");
        let guard = Lock::new(name)
            .dir(dir)
            .acquire()
            .expect("uncontended lock");
        drop(guard);
    }
    let kept = open_descriptors() - before;
    // Other tests of this binary run meanwhile; give them some room, but far
    // less than one descriptor per name.
    assert!(
        kept <= 64 + 16,
        "{kept} descriptors left open after locking 1000 names"
    );
    std::fs::remove_dir_all(dir).ok();
}

fn a_kept_descriptor_is_one_per_file_and_reused() {
    let dir = common::shared_dir("kept");
    let lock =
        Lock::new(LockName::new("kept")).dir(common::leak(dir.to_str().expect("utf-8 temp dir")));
    let path = lock.path().expect("a path");
    for _ in 0..100 {
        drop(lock.acquire().expect("uncontended lock"));
    }
    assert_eq!(
        common::descriptors_on(&path),
        1,
        "one descriptor kept between holds"
    );
    let outer = lock.acquire().expect("lock");
    let inner = lock.acquire().expect("re-entry on the same thread");
    assert_eq!(common::descriptors_on(&path), 1, "re-entry opens nothing");
    drop((inner, outer));
    std::fs::remove_dir_all(dir).ok();
}
