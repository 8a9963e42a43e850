//! The servers the lab runs in its namespaces: relays in the public namespace and a UPnP /
//! NAT-PMP / PCP gateway on router A.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::{Lab, PUBLIC_IP, SECOND_RELAY_IP, UPNP_EXTERNAL_IP, nft, ns, run, x};

impl Lab {
    /// Starts the lab's relay in the public namespace; returns its URL and certificate file.
    pub(crate) fn start_relay(&mut self, agent: &Path) -> Result<(String, PathBuf)> {
        self.start_relay_at(agent, PUBLIC_IP, "relay")
    }

    /// Starts a second relay on [`SECOND_RELAY_IP`] (added to the public bridge): a second
    /// server for iroh's net report to ask, so the NAT type can be told (mapping varies by
    /// destination or not).
    pub(crate) fn start_second_relay(&mut self, agent: &Path) -> Result<(String, PathBuf)> {
        x(
            "pub",
            &[
                "ip",
                "addr",
                "add",
                &format!("{SECOND_RELAY_IP}/24"),
                "dev",
                "br0",
            ],
        )?;
        self.start_relay_at(agent, SECOND_RELAY_IP, "relay2")
    }

    /// Starts a relay on `ip` in the public namespace, its files named after `name`.
    fn start_relay_at(&mut self, agent: &Path, ip: &str, name: &str) -> Result<(String, PathBuf)> {
        let cert = self.dir.join(format!("{name}.pem"));
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns("pub")])
            .arg(agent)
            .args(["relay", "--bind", ip, "--cert-out"])
            .arg(&cert)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting the relay")?;
        let stdout = child.stdout.take().context("the relay's stdout")?;
        self.children.push(child);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .context("waiting for the relay")?;
        let ready: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("the relay said: {line}"))?;
        let url = ready["url"]
            .as_str()
            .context("the relay gave no URL")?
            .to_owned();
        Ok((url, cert))
    }

    /// Runs `miniupnpd` (UPnP IGD, NAT-PMP, PCP) on router A, answering home A's LAN, with
    /// [`UPNP_EXTERNAL_IP`] as the address it maps ports on: miniupnpd refuses to map on a
    /// reserved address such as the lab's 100.64.0.0/24 ("Port forwarding is impossible"), so
    /// router A's WAN gets that address too. Its nftables chains (table `inet filter`, where
    /// miniupnpd adds its DNAT and forward rules) are made here; router A's forward filter
    /// then lets DNAT'd packets through. `skipped: ...` when miniupnpd is not installed.
    pub(crate) fn start_upnp(&mut self) -> Result<()> {
        if run("sh", &["-c", "command -v miniupnpd"]).is_err() {
            bail!("skipped: miniupnpd is not installed (apt-get install miniupnpd-nftables)");
        }
        x(
            "rA",
            &[
                "ip",
                "addr",
                "add",
                &format!("{UPNP_EXTERNAL_IP}/24"),
                "dev",
                "wan",
            ],
        )?;
        nft(
            "rA",
            r#"table inet filter {
  chain forward {
    type filter hook forward priority 0; policy accept;
    jump miniupnpd
  }
  chain miniupnpd {
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd
  }
  chain prerouting_miniupnpd {
  }
  chain postrouting_miniupnpd {
  }
}
"#,
        )?;
        x(
            "rA",
            &[
                "nft",
                "insert",
                "rule",
                "inet",
                "labfw",
                "forward_c",
                "ct",
                "status",
                "dnat",
                "accept",
            ],
        )?;
        let conf = self.dir.join("miniupnpd.conf");
        std::fs::write(
            &conf,
            format!(
                "ext_ifname=wan\next_ip={UPNP_EXTERNAL_IP}\nlistening_ip=brl\nenable_natpmp=yes\n\
                 enable_upnp=yes\nsecure_mode=yes\nsystem_uptime=yes\n\
                 uuid=3f1c8b52-3e0e-4d6e-9c1a-2b7a6c3f7a10\n\
                 allow 1024-65535 10.0.1.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n"
            ),
        )?;
        let log = std::fs::File::create(self.dir.join("miniupnpd.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &ns("rA"), "miniupnpd", "-d", "-f"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting miniupnpd")?;
        self.children.push(child);
        // It listens within milliseconds; give it a moment before a client asks.
        std::thread::sleep(std::time::Duration::from_millis(300));
        Ok(())
    }
}
