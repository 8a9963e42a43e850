//! Tether's network lab: real devices on networks that look like their users' networks.
//!
//! Two binaries. `tether-netlab` builds the lab out of Linux network namespaces (a "public"
//! namespace with a real iroh relay, two homes behind their own NAT routers, one home with two
//! hosts on a LAN bridge), shapes and breaks links (nftables loss and cuts, `tc tbf` rate
//! limits, a userspace delay line) and runs the scenarios of issue 10. `tether-netlab-agent`
//! runs inside a namespace as one of three things: a Tether device driven over stdin/stdout
//! ([`protocol`]), the relay server, or the delay line.
//!
//! Every address the lab uses lives inside namespaces it created; nothing leaves the machine.
//! Run it with `cargo xtask netlab` (as root).

pub mod protocol;
