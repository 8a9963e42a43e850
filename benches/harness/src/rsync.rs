//! `rsync` over a local TCP socket: an `rsync --daemon` on 127.0.0.1 with its configuration in
//! the run's work directory, one writable module, and `rsync -a` clients copying into it.
//! When `rsync` is missing it is installed from Debian with `apt-get` (when the harness runs as
//! root), else the part that needs it is skipped with the reason.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Whether `rsync` runs; installs it with `apt-get` when it does not and this process may.
pub(crate) fn available() -> Result<()> {
    if runs() {
        return Ok(());
    }
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        bail!("`rsync` is not installed (and this is not root, so not installed by the harness)");
    }
    eprintln!("tether-bench: installing rsync with apt-get");
    for args in [&["update"][..], &["install", "-y", "rsync"][..]] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .context("`apt-get` could not run")?;
        if !status.success() {
            bail!("`apt-get {}` failed ({status})", args.join(" "));
        }
    }
    if runs() {
        Ok(())
    } else {
        bail!("`rsync` still does not run after `apt-get install rsync`")
    }
}

fn runs() -> bool {
    Command::new("rsync")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A running `rsync --daemon` on 127.0.0.1; stopped on drop.
pub(crate) struct Rsyncd {
    child: Child,
    port: u16,
    target: PathBuf,
}

impl Rsyncd {
    /// Starts a daemon whose module `target` writes into `dir`/target, as the owner of `dir`.
    pub(crate) fn start(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let target = dir.join("target");
        std::fs::create_dir_all(&target)?;
        let owner = std::fs::metadata(dir)?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let config = dir.join("rsyncd.conf");
        std::fs::write(
            &config,
            format!(
                "use chroot = no\nuid = {}\ngid = {}\npid file = {}\nlog file = {}\n\
                 [target]\n  path = {}\n  read only = no\n",
                owner.uid(),
                owner.gid(),
                dir.join("rsyncd.pid").display(),
                dir.join("rsyncd.log").display(),
                target.display(),
            ),
        )?;
        let child = Command::new("rsync")
            .arg("--daemon")
            .arg("--no-detach")
            .arg(format!("--config={}", config.display()))
            .arg("--address=127.0.0.1")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting `rsync --daemon`")?;
        let daemon = Self {
            child,
            port,
            target,
        };
        daemon.wait_listening()?;
        Ok(daemon)
    }

    fn wait_listening(&self) -> Result<()> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline {
                bail!("`rsync --daemon` is not listening on {addr} after 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Where the module writes.
    pub(crate) fn target(&self) -> &Path {
        &self.target
    }

    /// `rsync -a source/ rsync://127.0.0.1:port/target/`; its seconds.
    pub(crate) fn copy(&self, source: &Path) -> Result<f64> {
        let started = Instant::now();
        let out = Command::new("rsync")
            .arg("-a")
            .arg(format!("{}/", source.display()))
            .arg(format!("rsync://127.0.0.1:{}/target/", self.port))
            .stdin(Stdio::null())
            .output()
            .context("`rsync` could not run")?;
        let seconds = started.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!(
                "`rsync -a` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(seconds)
    }

    /// Empties the module's directory.
    pub(crate) fn clear(&self) -> Result<()> {
        std::fs::remove_dir_all(&self.target)?;
        std::fs::create_dir_all(&self.target)?;
        Ok(())
    }
}

impl Drop for Rsyncd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
