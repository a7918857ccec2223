//! What the parent reads in /proc: a process's descriptors and threads, the
//! members of a process group, and the report written when the run hangs.

use std::fmt::Write as _;
use std::path::Path;

/// Open descriptors and threads of `pid`.
pub fn fds_and_threads(pid: u32) -> Option<(usize, usize)> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let threads = status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()?;
    Some((fds, threads))
}

/// The processes of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut members: Vec<u32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // pid (comm) state ppid pgrp ...: comm may hold spaces.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                == Some(pgid)
        })
        .collect();
    members.sort_unstable();
    members
}

/// `MAJ:MIN` of the device holding `path`, as /proc/locks prints it.
pub fn device_key(path: &Path) -> Option<String> {
    let st = rustix::fs::stat(path).ok()?;
    Some(format!(
        "{:02x}:{:02x}:",
        rustix::fs::major(st.st_dev),
        rustix::fs::minor(st.st_dev)
    ))
}

/// The lines of /proc/locks about files on the lock directory's device,
/// and for every process of the run each thread's state, wait channel,
/// system call and kernel stack.
pub fn hang_report(lock_dir: &Path, groups: &[(usize, u32)]) -> String {
    let mut out = String::new();
    let device = device_key(lock_dir).unwrap_or_default();
    let _ = writeln!(out, "--- /proc/locks (device {device})");
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    for line in locks.lines().filter(|line| line.contains(&device)) {
        let _ = writeln!(out, "{line}");
    }
    for &(slot, pgid) in groups {
        for pid in group_members(pgid) {
            let read = |what: &str| {
                std::fs::read_to_string(format!("/proc/{pid}/{what}"))
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            };
            let _ = writeln!(out, "--- slot {slot}, pid {pid} ({})", read("comm"));
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let tid = task.file_name().to_string_lossy().into_owned();
                let read = |what: &str| {
                    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/{what}"))
                        .unwrap_or_default()
                        .trim()
                        .to_owned()
                };
                let stat = read("stat");
                let state = stat
                    .rfind(')')
                    .and_then(|end| stat[end + 1..].split_whitespace().next())
                    .unwrap_or("?")
                    .to_owned();
                let _ = writeln!(
                    out,
                    "  tid {tid} {} state {state} wchan {} syscall {}",
                    read("comm"),
                    read("wchan"),
                    read("syscall")
                );
                for frame in read("stack").lines() {
                    let _ = writeln!(out, "      {frame}");
                }
            }
        }
    }
    out
}
