//! Two network namespaces a test makes for itself, joined by a veth pair with multicast on, so
//! that mDNS runs between two processes without a single packet on the host's interfaces.
//!
//! A process cannot move one task into a namespace, so the test re-runs its own binary (or the
//! `tether` command) inside each namespace with `ip netns exec`. The children coordinate
//! through files in a directory both can read. Dropping the [`Netns`] kills every process
//! still inside its namespaces and deletes them, also when the test fails.
//!
//! Needs root and `ip`; [`Netns::create`] says why not otherwise, and the test skips.
//! Namespaces of a test process that died without cleaning up (killed by a timeout) are
//! deleted by the next [`Netns::create`].
//!
//! Shared by the facade's and the command's tests (`#[path]`): it depends on std only.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Set in a child: the directory the children share.
pub(crate) const CHILD_DIR_ENV: &str = "TETHER_NETNS_CHILD_DIR";
/// Set in a child: the host's network namespace, which the child must not be in.
pub(crate) const HOST_NETNS_ENV: &str = "TETHER_NETNS_HOST";

/// Every namespace these tests make starts with this, then the test process's pid.
const PREFIX: &str = "tether-t";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One of the two namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    A,
    B,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// Two namespaces, `A` at 10.77.0.1/24 and `B` at 10.77.0.2/24 on a veth pair.
pub(crate) struct Netns {
    names: [String; 2],
    children: Mutex<Vec<Child>>,
}

impl Netns {
    /// Creates the two namespaces, or says why it cannot (not root, no `ip`, no netns
    /// support): the caller then skips its test.
    pub(crate) fn create() -> Result<Self, String> {
        let uid = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
            });
        if uid.as_deref() != Some("0") {
            return Err(format!(
                "needs root to create network namespaces (effective uid {})",
                uid.unwrap_or_else(|| "unknown".into())
            ));
        }
        match Command::new("ip").arg("-V").output() {
            Ok(out) if out.status.success() => {}
            _ => return Err("needs the `ip` command (iproute2)".into()),
        }
        remove_stale();
        let tag = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let netns = Self {
            names: [format!("{tag}a"), format!("{tag}b")],
            children: Mutex::default(),
        };
        let [a, b] = &netns.names;
        for name in [a, b] {
            run(&["netns", "add", name])
                .map_err(|e| format!("cannot create a network namespace: {e}"))?;
            run(&["-n", name, "link", "set", "lo", "up"])?;
        }
        run(&[
            "-n", a, "link", "add", "lan0", "type", "veth", "peer", "name", "lan1", "netns", b,
        ])?;
        for (name, dev, side) in [(a, "lan0", Side::A), (b, "lan1", Side::B)] {
            let cidr = format!("{}/24", Self::addr(side));
            run(&["-n", name, "addr", "add", &cidr, "dev", dev])?;
            run(&["-n", name, "link", "set", dev, "multicast", "on", "up"])?;
            // The veth is this namespace's only way out: mDNS (224.0.0.251) and everything
            // else leave through it, to the other namespace and nowhere else.
            run(&["-n", name, "route", "add", "default", "dev", dev])?;
        }
        Ok(netns)
    }

    /// The address of `side`'s end of the veth pair.
    pub(crate) fn addr(side: Side) -> Ipv4Addr {
        match side {
            Side::A => Ipv4Addr::new(10, 77, 0, 1),
            Side::B => Ipv4Addr::new(10, 77, 0, 2),
        }
    }

    /// The namespace's name.
    pub(crate) fn name(&self, side: Side) -> &str {
        &self.names[side.index()]
    }

    /// A command that runs `program` inside `side`'s namespace, told (through the
    /// environment) which directory the children share and which namespace is the host's.
    pub(crate) fn command(&self, side: Side, program: impl AsRef<OsStr>, dir: &Path) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", self.name(side)])
            .arg(program)
            .env(CHILD_DIR_ENV, dir)
            .env(HOST_NETNS_ENV, current_netns());
        command
    }

    /// Runs the `#[ignore]`d test `test` of this test binary inside `side`'s namespace, its
    /// output in `dir/<log>.log`. Returns the child's index for [`Netns::wait`].
    pub(crate) fn spawn_test(&self, side: Side, test: &str, dir: &Path, log: &str) -> usize {
        let exe = std::env::current_exe().unwrap();
        let out = std::fs::File::create(dir.join(format!("{log}.log"))).unwrap();
        let err = out.try_clone().unwrap();
        let mut command = self.command(side, exe, dir);
        command
            .args([
                "--exact",
                test,
                "--nocapture",
                "--ignored",
                "--test-threads=1",
            ])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        self.adopt(command.spawn().unwrap())
    }

    /// Keeps `child` so that it is killed when the namespaces go; returns its index.
    pub(crate) fn adopt(&self, child: Child) -> usize {
        let mut children = self.children.lock().unwrap();
        children.push(child);
        children.len() - 1
    }

    /// Waits for child `index` to end; kills it and returns `Err` after `within`.
    pub(crate) fn wait(&self, index: usize, within: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + within;
        loop {
            {
                let mut children = self.children.lock().unwrap();
                let child = &mut children[index];
                if let Some(status) = child.try_wait().unwrap() {
                    return Ok(status);
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("child {index} did not finish within {within:?}"));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for name in &self.names {
            kill_all_in(name);
        }
        for child in self
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in &self.names {
            if let Err(error) = run(&["netns", "del", name]) {
                eprintln!("netns: could not delete {name}: {error}");
            }
        }
    }
}

/// In a child started by [`Netns::spawn_test`]: the shared directory; `None` when this
/// process is not such a child (the test was run by hand: it then does nothing).
///
/// Panics when the process is still in the host's network namespace, so that nothing a child
/// does (mDNS above all) can reach the host's interfaces.
pub(crate) fn child_dir() -> Option<PathBuf> {
    let dir = std::env::var_os(CHILD_DIR_ENV)?;
    let host = std::env::var(HOST_NETNS_ENV).expect("the parent names the host's namespace");
    let here = current_netns();
    assert!(
        !here.is_empty() && here != host,
        "refusing to run: this child is in the host's network namespace ({here})"
    );
    Some(PathBuf::from(dir))
}

/// Writes `text` to `path` at once (through a temporary file and a rename), so that a reader
/// never sees half of it.
pub(crate) fn publish(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `ip netns identify`-like: the inode of this process's network namespace.
fn current_netns() -> String {
    std::fs::read_link("/proc/self/ns/net")
        .map(|link| link.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Kills every process inside namespace `name`: only processes these tests started are ever
/// inside it.
fn kill_all_in(name: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
}

/// Deletes namespaces left by test processes that no longer run.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next() else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            kill_all_in(name);
            let _ = run(&["netns", "del", name]);
        }
    }
}
