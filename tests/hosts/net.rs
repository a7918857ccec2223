//! Hosts in network namespaces, for the many-hosts tests (`tests/hosts.rs`)
//! and benchmarks (`bench/benches/pg.rs`, which includes this file): a
//! server namespace running a private PostgreSQL cluster
//! (`tests/pg/cluster`), and host namespaces each joined to it by a veth
//! pair of its own, like runners on a network with a database server. A
//! process started with [`Net::command`] runs in a host namespace, and in a
//! UTS namespace of its own with that host's name, so that lockattr's
//! messages name a host that is not the machine's.
//!
//! Every name is unique per run (`lockattr-PID-N-...`), the addresses are
//! private ones that exist only inside these namespaces, and everything is
//! removed on drop, also when a test panics. What a SIGKILLed run could not
//! remove, the next run removes ([`sweep_stale`]). Standard library only.
#![allow(dead_code)] // the tests and the benchmarks use different parts

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The server's port. Nothing else listens in a namespace of our own.
pub const PORT: u16 = 5432;

/// A server namespace with a running cluster, and hosts linked to it.
pub struct Net {
    id: String,
    /// Namespaces made so far, the server's first: removed on drop.
    made: Vec<String>,
    cluster: Option<PathBuf>,
    script: PathBuf,
    pub server: String,
    pub hosts: Vec<Host>,
}

/// One host: its namespace, its name, and the link to the server.
pub struct Host {
    pub netns: String,
    pub hostname: String,
    pub address: String,
    /// The server's address on this host's link.
    pub server_address: String,
    /// `LOCKATTR_URL` for a process on this host.
    pub url: String,
    /// This link's interface in the server's namespace, and in the host's.
    server_end: String,
    host_end: String,
}

/// Where a link is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// The server's end of the host's link goes down: the host's interface
    /// stays up and what it sends is lost, as when a switch or router
    /// between the two dies. Neither side is told.
    ServerEnd,
    /// The host's own interface goes down (`ip link set eth0 down` on the
    /// runner): its routes to the server go away with it.
    HostEnd,
}

/// Why hosts in namespaces cannot be made here, if they cannot: not root,
/// or a tool or PostgreSQL missing.
pub fn missing() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some(
            "needs root (network namespaces, veth pairs, a server run as `postgres`)".to_owned(),
        );
    }
    for tool in ["ip", "unshare", "hostname", "runuser"] {
        if !sh(&format!("command -v {tool}")) {
            return Some(format!("`{tool}` is not installed (iproute2, util-linux)"));
        }
    }
    if !sh("ls /usr/lib/postgresql/*/bin/initdb || [ -x \"$(pg_config --bindir)/initdb\" ]") {
        return Some("no PostgreSQL server is installed (apt-get install postgresql)".to_owned());
    }
    None
}

fn sh(script: &str) -> bool {
    Command::new("sh")
        .args(["-c", script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Removes the namespaces of runs that ended without dropping their `Net`
/// (SIGKILLed, or a test binary aborted): those named `lockattr-PID-...`
/// whose PID no longer runs. What still runs in them (their server and its
/// backends, a runner) is stopped first: SIGQUIT, the server's immediate
/// shutdown that also frees its shared memory, then SIGKILL for what is
/// left after 5 s. A live PID's namespaces are left alone, whoever that
/// process is now. Returns the names removed.
pub fn sweep_stale() -> Vec<String> {
    let Ok(list) = Command::new("ip").args(["netns", "list"]).output() else {
        return Vec::new();
    };
    let mut swept = Vec::new();
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        // "NAME" or "NAME (id: N)"
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix("lockattr-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let inside = || {
            Command::new("ip")
                .args(["netns", "pids", name])
                .output()
                .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
                .unwrap_or_default()
        };
        for signal in ["-QUIT", "-KILL"] {
            let pids = inside();
            if pids.trim().is_empty() {
                break;
            }
            for pid in pids.split_whitespace() {
                let _ = run("kill", &[signal, pid]);
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while !inside().trim().is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        match run("ip", &["netns", "del", name]) {
            Ok(()) => swept.push(name.to_owned()),
            Err(err) => eprintln!("cannot remove a stale namespace: {err}"),
        }
    }
    swept
}

/// Runs a command to its end; its stderr on failure.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("{program}: {err}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

impl Net {
    /// A server and `hosts` hosts. `script` is `tests/pg/cluster`; the
    /// cluster's files go in a new directory in `parent`, which the
    /// `postgres` user must be able to reach.
    pub fn start(hosts: usize, script: &Path, parent: &Path) -> Result<Net, String> {
        assert!((1..=60).contains(&hosts), "1 to 60 hosts per server");
        for name in sweep_stale() {
            eprintln!("removed network namespace {name}, left by a run that was killed");
        }
        static RUNS: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let n = RUNS.fetch_add(1, Ordering::Relaxed);
        let id = format!("lockattr-{pid}-{n}");
        let mut net = Net {
            server: format!("{id}-srv"),
            made: Vec::new(),
            cluster: None,
            script: script.to_owned(),
            hosts: Vec::new(),
            id,
        };
        // 10.A.B.0/24, one /30 per link: private, and only ever configured
        // inside these namespaces, so two runs cannot meet even if they
        // chose the same.
        let (a, b) = (1 + pid % 250, (pid / 250 + n) % 256);
        net.add_netns(&net.server.clone())?;
        for k in 0..hosts {
            let host = Host {
                netns: format!("{}-h{k}", net.id),
                hostname: format!("runner-{k}"),
                address: format!("10.{a}.{b}.{}", 4 * k + 2),
                server_address: format!("10.{a}.{b}.{}", 4 * k + 1),
                url: String::new(),
                server_end: format!("h{k}"),
                host_end: "eth0".to_owned(),
            };
            net.add_netns(&host.netns)?;
            net.link(&host)?;
            let url = format!(
                "postgres://postgres@{}:{PORT}/postgres",
                host.server_address
            );
            net.hosts.push(Host { url, ..host });
        }
        let dir = parent.join(&net.id);
        net.cluster = Some(dir.clone());
        let addresses: Vec<&str> = net
            .hosts
            .iter()
            .map(|host| host.server_address.as_str())
            .collect();
        run(
            "bash",
            &[
                &net.script.to_string_lossy(),
                "start",
                &dir.to_string_lossy(),
                &PORT.to_string(),
                &addresses.join(","),
                &net.server,
            ],
        )?;
        Ok(net)
    }

    fn add_netns(&mut self, name: &str) -> Result<(), String> {
        run("ip", &["netns", "add", name])?;
        self.made.push(name.to_owned());
        run("ip", &["-n", name, "link", "set", "lo", "up"])
    }

    fn link(&self, host: &Host) -> Result<(), String> {
        run(
            "ip",
            &[
                "link",
                "add",
                &host.server_end,
                "netns",
                &self.server,
                "type",
                "veth",
                "peer",
                "name",
                &host.host_end,
                "netns",
                &host.netns,
            ],
        )?;
        let ends = [
            (&self.server, &host.server_end, &host.server_address),
            (&host.netns, &host.host_end, &host.address),
        ];
        for (netns, end, address) in ends {
            let address = format!("{address}/30");
            run("ip", &["-n", netns, "addr", "add", &address, "dev", end])?;
            run("ip", &["-n", netns, "link", "set", end, "up"])?;
        }
        Ok(())
    }

    /// `program` to be run on host `k`, under that host's name; add its
    /// arguments and environment to the command.
    pub fn command(&self, k: usize, program: &Path) -> Command {
        let host = &self.hosts[k];
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &host.netns, "unshare", "--uts", "--"])
            .args(["sh", "-c", "hostname \"$0\" && exec \"$@\"", &host.hostname])
            .arg(program);
        cmd
    }

    /// Cuts host `k`'s link to the server.
    pub fn cut(&self, k: usize, cut: Cut) -> Result<(), String> {
        let (netns, end) = self.end(k, cut);
        run("ip", &["-n", netns, "link", "set", end, "down"])
    }

    /// Mends what [`Net::cut`] did.
    pub fn mend(&self, k: usize, cut: Cut) -> Result<(), String> {
        let (netns, end) = self.end(k, cut);
        run("ip", &["-n", netns, "link", "set", end, "up"])
    }

    fn end(&self, k: usize, cut: Cut) -> (&str, &str) {
        let host = &self.hosts[k];
        match cut {
            Cut::ServerEnd => (&self.server, &host.server_end),
            Cut::HostEnd => (&host.netns, &host.host_end),
        }
    }

    /// The cluster's server log, for a failing test's message.
    pub fn server_log(&self) -> String {
        let Some(dir) = &self.cluster else {
            return String::new();
        };
        std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let mut failures = Vec::new();
        if let Some(dir) = self.cluster.take() {
            let script = self.script.to_string_lossy();
            if let Err(err) = run("bash", &[&script, "stop", &dir.to_string_lossy()]) {
                failures.push(err);
            }
            if let Err(err) = std::fs::remove_dir_all(&dir) {
                failures.push(format!("remove {}: {err}", dir.display()));
            }
        }
        // A namespace's veth ends go with it, and their peers with them.
        for netns in self.made.drain(..).rev() {
            if let Err(err) = run("ip", &["netns", "del", &netns]) {
                failures.push(err);
            }
        }
        if !failures.is_empty() {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "cleaning up {}: {}",
                self.id,
                failures.join("; ")
            );
        }
    }
}
