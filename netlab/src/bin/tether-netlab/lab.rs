//! The lab's networks: namespaces, veth pairs, bridges, NAT routers, and the impairments
//! (loss, rate, delay, cuts, a blocked direct path). Everything it makes carries the
//! [`PREFIX`], and [`Lab`]'s `Drop` takes it all down again, processes first.
//!
//! ```text
//! tnl-pub  100.64.0.1/24 (bridge br0, the "internet"; the relay lives here)
//!  |-- tnl-rA wan 100.64.0.2 --NAT-- LAN 10.0.1.0/24 (bridge brl): tnl-hA 10.0.1.2, tnl-hA2 10.0.1.3
//!  '-- tnl-rB wan 100.64.0.3 --NAT-- LAN 10.0.2.0/24 (bridge brl): tnl-hB 10.0.2.2
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

mod services;

/// Every namespace the lab makes starts with this.
pub(crate) const PREFIX: &str = "tnl-";

/// How the routers translate addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nat {
    /// Port-preserving masquerade: UDP hole punching works.
    Cone,
    /// A random port per destination: hole punching fails, the relay is needed.
    Symmetric,
}

/// A host namespace: its name, address, router and the router's side of its veth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Host {
    /// Home A, first host.
    A,
    /// Home A, second host (same LAN as `A`).
    A2,
    /// Home B.
    B,
}

impl Host {
    pub(crate) fn ns(self) -> String {
        format!("{PREFIX}{}", self.short())
    }

    pub(crate) fn short(self) -> &'static str {
        match self {
            Host::A => "hA",
            Host::A2 => "hA2",
            Host::B => "hB",
        }
    }

    pub(crate) fn ip(self) -> &'static str {
        match self {
            Host::A => "10.0.1.2",
            Host::A2 => "10.0.1.3",
            Host::B => "10.0.2.2",
        }
    }

    fn router(self) -> &'static str {
        match self {
            Host::A | Host::A2 => "rA",
            Host::B => "rB",
        }
    }

    fn router_port(self) -> &'static str {
        match self {
            Host::A => "la1",
            Host::A2 => "la2",
            Host::B => "lb1",
        }
    }
}

/// The public namespace's address (the relay's).
pub(crate) const PUBLIC_IP: &str = "100.64.0.1";
/// The second relay's address (on the public bridge beside [`PUBLIC_IP`]).
pub(crate) const SECOND_RELAY_IP: &str = "100.64.0.4";
/// The address router A maps ports on when it runs miniupnpd ([`Lab::start_upnp`]): not in
/// a reserved range, or miniupnpd refuses to map; it exists only inside the lab's namespaces.
pub(crate) const UPNP_EXTERNAL_IP: &str = "11.0.0.2";
/// Router B's public address.
pub(crate) const ROUTER_B_WAN: &str = "100.64.0.3";

pub(crate) fn ns(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// Runs a command, failing with its stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs a command inside namespace `name` (short name, without the prefix).
pub(crate) fn x(name: &str, args: &[&str]) -> Result<String> {
    let namespace = ns(name);
    let mut all = vec!["netns", "exec", namespace.as_str()];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// Loads an nftables script inside namespace `name`.
pub(crate) fn nft(name: &str, script: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns(name), "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft")?;
    child
        .stdin
        .take()
        .context("nft's stdin")?
        .write_all(script.as_bytes())
        .context("writing to nft")?;
    let output = child.wait_with_output().context("waiting for nft")?;
    if !output.status.success() {
        bail!(
            "nft in {name} failed: {}\n{script}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Our namespaces that exist now (leftovers of a killed run, or this run's).
pub(crate) fn our_namespaces() -> Result<Vec<String>> {
    Ok(run("ip", &["netns", "list"])?
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(PREFIX))
        .map(str::to_owned)
        .collect())
}

/// Kills every process in our namespaces and deletes them. Returns how many it removed.
pub(crate) fn remove_all() -> usize {
    let namespaces = our_namespaces().unwrap_or_default();
    for namespace in &namespaces {
        // Every process in a namespace of ours is ours: agents, relays, delay lines.
        if let Ok(pids) = run("ip", &["netns", "pids", namespace]) {
            for pid in pids.split_whitespace() {
                let _ = run("kill", &["-9", pid]);
            }
        }
    }
    for namespace in &namespaces {
        let _ = run("ip", &["netns", "del", namespace]);
    }
    namespaces.len()
}

/// The lab: its namespaces exist while this lives.
pub(crate) struct Lab {
    /// Where agents keep their data and received files, and the relay its certificate.
    pub(crate) dir: PathBuf,
    /// Relays and delay lines started, to stop with the lab.
    children: Vec<std::process::Child>,
    /// The delay lines' process ids (among `children`).
    delay_pids: Vec<u32>,
}

const NODES: [&str; 6] = ["pub", "rA", "rB", "hA", "hA2", "hB"];

fn veth(ns1: &str, if1: &str, ns2: &str, if2: &str) -> Result<()> {
    run(
        "ip",
        &[
            "-n",
            &ns(ns1),
            "link",
            "add",
            if1,
            "type",
            "veth",
            "peer",
            "name",
            if2,
            "netns",
            &ns(ns2),
        ],
    )?;
    run("ip", &["-n", &ns(ns1), "link", "set", if1, "up"])?;
    run("ip", &["-n", &ns(ns2), "link", "set", if2, "up"])?;
    Ok(())
}

fn router_nat(router: &str, nat: Nat) -> Result<()> {
    let masquerade = match nat {
        Nat::Cone => "masquerade",
        Nat::Symmetric => "masquerade random,fully-random",
    };
    x(router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    nft(
        router,
        &format!(
            r#"table inet nat {{
  chain post_c {{
    type nat hook postrouting priority srcnat;
    oifname "wan" {masquerade}
  }}
}}
table inet labfw {{
  chain forward_c {{
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "brl" oifname "wan" accept
  }}
  chain input_c {{
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state new drop
  }}
}}
"#
        ),
    )
}

impl Lab {
    /// Builds the topology (after removing anything a killed run left).
    pub(crate) fn up(dir: &Path, nat: Nat) -> Result<Self> {
        remove_all();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let lab = Self {
            dir: dir.to_path_buf(),
            children: Vec::new(),
            delay_pids: Vec::new(),
        };
        for node in NODES {
            run("ip", &["netns", "add", &ns(node)])?;
            run("ip", &["-n", &ns(node), "link", "set", "lo", "up"])?;
        }
        // The "internet": a bridge in pub.
        x("pub", &["ip", "link", "add", "br0", "type", "bridge"])?;
        x("pub", &["ip", "link", "set", "br0", "up"])?;
        x("pub", &["ip", "addr", "add", "100.64.0.1/24", "dev", "br0"])?;
        for (router, port, wan) in [("rA", "pA", "100.64.0.2/24"), ("rB", "pB", "100.64.0.3/24")] {
            veth("pub", port, router, "wan")?;
            x("pub", &["ip", "link", "set", port, "master", "br0"])?;
            x(router, &["ip", "addr", "add", wan, "dev", "wan"])?;
            x(router, &["ip", "route", "add", "default", "via", PUBLIC_IP])?;
        }
        // Each home: a LAN bridge in its router. Bridged frames must not pass the router's
        // inet forward hook (br_netfilter is built in here), or mDNS between hosts dies.
        for (router, gateway) in [("rA", "10.0.1.1/24"), ("rB", "10.0.2.1/24")] {
            x(router, &["ip", "link", "add", "brl", "type", "bridge"])?;
            x(router, &["ip", "link", "set", "brl", "up"])?;
            x(router, &["ip", "addr", "add", gateway, "dev", "brl"])?;
        }
        for node in ["pub", "rA", "rB"] {
            x(
                node,
                &[
                    "sysctl",
                    "-qw",
                    "net.bridge.bridge-nf-call-iptables=0",
                    "net.bridge.bridge-nf-call-ip6tables=0",
                    "net.bridge.bridge-nf-call-arptables=0",
                ],
            )?;
        }
        for host in [Host::A, Host::A2, Host::B] {
            lab.attach(host, host.router(), host.ip())?;
        }
        router_nat("rA", nat)?;
        router_nat("rB", nat)?;
        Ok(lab)
    }

    /// Connects `host` to `router`'s LAN bridge with address `ip`.
    fn attach(&self, host: Host, router: &str, ip: &str) -> Result<()> {
        let port = host.router_port();
        veth(router, port, host.short(), "eth0")?;
        x(router, &["ip", "link", "set", port, "master", "brl"])?;
        let gateway = if router == "rA" {
            "10.0.1.1"
        } else {
            "10.0.2.1"
        };
        x(
            host.short(),
            &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
        )?;
        x(
            host.short(),
            &["ip", "route", "add", "default", "via", gateway],
        )?;
        Ok(())
    }

    /// Moves `host` to the other home's LAN, with a new address there (`ip`).
    pub(crate) fn move_host(&self, host: Host, to_router: &str, ip: &str) -> Result<()> {
        let port = host.router_port();
        run("ip", &["-n", &ns(host.router()), "link", "del", port])?;
        self.attach(host, to_router, ip)
    }

    /// Makes `hosts` put single datagrams on the wire: a UDP GSO buffer (up to 64 datagrams
    /// in one packet, which a veth carries whole) is split in software before it leaves. Real
    /// links carry datagrams, and the loss rules then drop datagrams, not bursts of them.
    pub(crate) fn segment(&self, hosts: &[Host]) -> Result<()> {
        for host in hosts {
            x(
                host.short(),
                &["ip", "link", "set", "eth0", "gso_max_segs", "1"],
            )?;
        }
        Ok(())
    }

    /// Drops `percent` % of the packets arriving at each of `hosts` (on two hosts of one
    /// link: `percent` each way).
    ///
    /// The drop is on input, after the sender split its GSO buffers ([`Lab::segment`]): on
    /// output a GSO buffer of many datagrams would be one packet, and a drop a burst.
    pub(crate) fn loss(&self, hosts: &[Host], percent: f64) -> Result<()> {
        let threshold = (percent * 100.0).round() as u32; // out of 10000
        for host in hosts {
            let _ = x(
                host.short(),
                &["nft", "delete", "table", "inet", "tnl_loss"],
            );
            nft(
                host.short(),
                &format!(
                    r#"table inet tnl_loss {{
  chain loss_in {{
    type filter hook input priority -200; policy accept;
    iifname "eth0" counter numgen random mod 10000 < {threshold} counter drop
  }}
}}
"#
                ),
            )?;
        }
        Ok(())
    }

    /// Removes the loss rules on `hosts`.
    pub(crate) fn clear_loss(&self, hosts: &[Host]) -> Result<()> {
        for host in hosts {
            x(
                host.short(),
                &["nft", "delete", "table", "inet", "tnl_loss"],
            )?;
        }
        Ok(())
    }

    /// Packets that arrived at `host` and how many of them the loss rule dropped.
    pub(crate) fn loss_counters(&self, host: Host) -> (u64, u64) {
        let text =
            x(host.short(), &["nft", "list", "table", "inet", "tnl_loss"]).unwrap_or_default();
        let mut counts = text
            .split("packets ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok());
        (counts.next().unwrap_or(0), counts.next().unwrap_or(0))
    }

    /// Shapes both directions of `host`'s link to `rate` (tc syntax, e.g. `100mbit`).
    pub(crate) fn rate(&self, host: Host, rate: &str, burst: &str) -> Result<()> {
        x(
            host.short(),
            &[
                "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", rate, "burst",
                burst, "latency", "50ms",
            ],
        )?;
        x(
            host.router(),
            &[
                "tc",
                "qdisc",
                "replace",
                "dev",
                host.router_port(),
                "root",
                "tbf",
                "rate",
                rate,
                "burst",
                burst,
                "latency",
                "50ms",
            ],
        )?;
        Ok(())
    }

    /// Adds `ms` of delay to each direction of `host`'s link (a userspace delay line).
    pub(crate) fn delay(&mut self, agent: &Path, host: Host, ms: u64) -> Result<()> {
        self.delay_line(agent, host, ms)?;
        for (chain, dir) in [("OUTPUT", "-o"), ("INPUT", "-i")] {
            queue_to_delay_line(host, chain, dir)?;
        }
        Ok(())
    }

    /// Starts a delay line of `ms` on queue 1 in `host`.
    fn delay_line(&mut self, agent: &Path, host: Host, ms: u64) -> Result<()> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &host.ns()])
            .arg(agent)
            .args(["delay", "--queue", "1", "--ms", &ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the delay line")?;
        let stdout = child.stdout.take().context("the delay line's stdout")?;
        // `ip netns exec` execs the agent: the child's pid is the delay line's.
        self.delay_pids.push(child.id());
        self.children.push(child);
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .context("waiting for the delay line")?;
        if !line.contains("ready") {
            bail!("the delay line did not start: {line}");
        }
        Ok(())
    }

    /// CPU time the delay lines have used so far, in seconds (user + system, from
    /// `/proc/PID/stat` in clock ticks of 1/100 s). Its growth over a transfer, divided by the
    /// transfer's time, is the share of a core the delay line needed.
    pub(crate) fn delay_cpu_secs(&self) -> f64 {
        self.delay_pids
            .iter()
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                // After the command name in parentheses: state is field 3, utime 14, stime 15.
                let (_, rest) = stat.rsplit_once(')')?;
                let mut fields = rest.split_whitespace().skip(11);
                let user = fields.next()?.parse::<u64>().ok()?;
                let system = fields.next()?.parse::<u64>().ok()?;
                Some((user + system) as f64 / 100.0)
            })
            .sum()
    }

    /// Adds `ms` of delay to each of `hosts`' incoming packets, with a delay line in each host
    /// (on two hosts of one link: `ms` each way). Unlike [`Lab::delay`], nothing is held on
    /// the sender's way out, where a held packet still counts against the sending socket
    /// (TCP Small Queues, the UDP send buffer) and throttles the sender as a slow NIC would.
    pub(crate) fn delay_inbound(&mut self, agent: &Path, hosts: &[Host], ms: u64) -> Result<()> {
        for host in hosts {
            self.delay_line(agent, *host, ms)?;
            queue_to_delay_line(*host, "INPUT", "-i")?;
        }
        Ok(())
    }

    /// Plain TCP goodput from `from` to `to` (Mbit/s), for reference on a shaped link.
    pub(crate) fn tcp_goodput(&self, agent: &Path, from: Host, to: Host, mib: u64) -> Result<f64> {
        let sink_addr = format!("{}:5201", to.ip());
        let mut sink = Command::new("ip")
            .args(["netns", "exec", &to.ns()])
            .arg(agent)
            .args(["tcp", "--listen", &sink_addr])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the TCP sink")?;
        let stdout = sink.stdout.take().context("the sink's stdout")?;
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        let ready = lines.next().transpose()?.unwrap_or_default();
        if !ready.contains("ready") {
            let _ = sink.kill();
            bail!("the TCP sink did not start: {ready}");
        }
        let sent = Command::new("ip")
            .args(["netns", "exec", &from.ns()])
            .arg(agent)
            .args(["tcp", "--to", &sink_addr, "--mib", &mib.to_string()])
            .status();
        let result = lines.next().transpose()?.unwrap_or_default();
        let _ = sink.kill();
        let _ = sink.wait();
        if !sent.is_ok_and(|status| status.success()) {
            bail!("the TCP reference send failed");
        }
        let value: serde_json::Value =
            serde_json::from_str(&result).with_context(|| format!("the sink said: {result}"))?;
        value["mbit"].as_f64().context("no rate from the sink")
    }

    /// Cuts `host`'s link: every packet in or out of its interface is dropped.
    pub(crate) fn cut(&self, host: Host) -> Result<()> {
        nft(
            host.short(),
            r#"table inet tnl_cut {
  chain cut_out {
    type filter hook output priority -300; policy accept;
    oifname "eth0" drop
  }
  chain cut_in {
    type filter hook input priority -300; policy accept;
    iifname "eth0" drop
  }
}
"#,
        )
    }

    /// Ends a [`Lab::cut`].
    pub(crate) fn restore(&self, host: Host) -> Result<()> {
        x(host.short(), &["nft", "delete", "table", "inet", "tnl_cut"]).map(drop)
    }

    /// Blocks the direct path between the two homes (router A drops everything to and from
    /// router B's public address); the relay stays reachable.
    pub(crate) fn block_direct(&self) -> Result<()> {
        nft(
            "rA",
            &format!(
                r#"table inet tnl_block {{
  chain forward_c {{
    type filter hook forward priority -300; policy accept;
    ip daddr {ROUTER_B_WAN} drop
    ip saddr {ROUTER_B_WAN} drop
  }}
}}
"#
            ),
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        remove_all();
    }
}

/// Sends `host`'s packets of `chain` on eth0 (`dir`: `-i` in, `-o` out) through NFQUEUE 1, the
/// delay line's queue (passed through unharmed while no delay line listens).
fn queue_to_delay_line(host: Host, chain: &str, dir: &str) -> Result<()> {
    x(
        host.short(),
        &[
            "iptables",
            "-t",
            "mangle",
            "-A",
            chain,
            dir,
            "eth0",
            "-j",
            "NFQUEUE",
            "--queue-num",
            "1",
            "--queue-bypass",
        ],
    )?;
    Ok(())
}
