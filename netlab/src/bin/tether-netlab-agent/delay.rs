//! A userspace delay line: holds every packet of an NFQUEUE queue for a fixed time, then
//! lets it go (this kernel has no netem). Raw nfnetlink over a netlink socket.
//!
//! The lab sends packets here with `iptables -j NFQUEUE --queue-num N --queue-bypass` (the
//! bypass lets packets through unharmed if this process is gone). With one fixed delay the
//! release order is the arrival order, so a FIFO and one sleeping thread do; every packet due
//! by the time the thread wakes goes out with one batch verdict (the kernel accepts every
//! queued packet up to an id), so a fast link costs a syscall per wake-up, not per packet.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, netlink};
use serde_json::json;

use crate::emit;

/// The queue and the delay.
#[derive(Debug, clap::Args)]
pub(crate) struct DelayArgs {
    /// The NFQUEUE queue number.
    #[arg(long)]
    queue: u16,
    /// Milliseconds each packet is held.
    #[arg(long)]
    ms: u64,
}

const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
#[cfg(test)]
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQNL_MSG_VERDICT_BATCH: u16 = 3;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_META: u8 = 1;
const NFQA_CFG_F_FAIL_OPEN: u32 = 1;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NF_ACCEPT: u32 = 1;
const AF_INET: u16 = 2;

fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut out = Vec::with_capacity(len + 3);
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(len.next_multiple_of(4), 0);
    out
}

fn message(kind: u16, queue: u16, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + attrs.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    out.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | kind).to_ne_bytes());
    out.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // sequence
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    out.extend_from_slice(&[0, 0]); // AF_UNSPEC, version 0
    out.extend_from_slice(&queue.to_be_bytes());
    out.extend_from_slice(attrs);
    out
}

#[cfg(test)]
fn verdict(queue: u16, packet_id: u32) -> Vec<u8> {
    let mut hdr = NF_ACCEPT.to_be_bytes().to_vec();
    hdr.extend_from_slice(&packet_id.to_be_bytes());
    message(NFQNL_MSG_VERDICT, queue, &attr(NFQA_VERDICT_HDR, &hdr))
}

/// Accepts every packet of the queue up to and including `packet_id`.
fn batch_verdict(queue: u16, packet_id: u32) -> Vec<u8> {
    let mut hdr = NF_ACCEPT.to_be_bytes().to_vec();
    hdr.extend_from_slice(&packet_id.to_be_bytes());
    message(
        NFQNL_MSG_VERDICT_BATCH,
        queue,
        &attr(NFQA_VERDICT_HDR, &hdr),
    )
}

/// Releases packets as they fall due: sleeps until the oldest is due, then accepts it and
/// every later one already due with one batch verdict.
fn release(rx: &mpsc::Receiver<(Instant, u32)>, queue: u16, send: impl Fn(&[u8])) {
    let mut waiting = None;
    loop {
        let Some((at, id)) = waiting.take().or_else(|| rx.recv().ok()) else {
            return;
        };
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let now = Instant::now();
        let mut last = id;
        while let Ok((next_at, next_id)) = rx.try_recv() {
            if next_at > now {
                waiting = Some((next_at, next_id));
                break;
            }
            last = next_id;
        }
        send(&batch_verdict(queue, last));
    }
}

/// The packet ids in one buffer of netlink messages; errors the kernel reports are returned
/// as negative errno values.
fn packet_ids(buf: &[u8], ids: &mut Vec<u32>) -> Option<i32> {
    let mut error = None;
    let mut off = 0usize;
    while let Some(header) = buf.get(off..off + 16) {
        let len = u32::from_ne_bytes(header.get(0..4)?.try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(header.get(4..6)?.try_into().ok()?);
        if len < 16 {
            break;
        }
        let body = buf.get(off + 16..off + len).unwrap_or(&[]);
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
            let mut a = 4usize; // after nfgenmsg
            while let Some(ah) = body.get(a..a + 4) {
                let alen = usize::from(u16::from_ne_bytes([
                    ah.first().copied()?,
                    ah.get(1).copied()?,
                ]));
                let akind = u16::from_ne_bytes([ah.get(2).copied()?, ah.get(3).copied()?]) & 0x7fff;
                if alen < 4 {
                    break;
                }
                if akind == NFQA_PACKET_HDR
                    && let Some(id) = body.get(a + 4..a + 8)
                {
                    ids.push(u32::from_be_bytes(id.try_into().ok()?));
                }
                a += alen.next_multiple_of(4);
            }
        } else if kind == NLMSG_ERROR {
            let code = i32::from_ne_bytes(body.get(0..4)?.try_into().ok()?);
            if code != 0 {
                error = Some(code);
            }
        }
        off += len.next_multiple_of(4);
    }
    error
}

pub(crate) fn run(args: &DelayArgs) -> Result<()> {
    let delay = Duration::from_millis(args.ms);
    let queue = args.queue;
    let fd: Arc<OwnedFd> = Arc::new(
        rustix::net::socket(
            AddressFamily::NETLINK,
            SocketType::RAW,
            Some(netlink::NETFILTER),
        )
        .context("a netfilter netlink socket")?,
    );
    rustix::net::bind(&fd, &netlink::SocketAddrNetlink::new(0, 0)).context("binding netlink")?;
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size_force(&fd, 16 << 20);
    let mut cmd = vec![NFQNL_CFG_CMD_BIND, 0];
    cmd.extend_from_slice(&AF_INET.to_be_bytes());
    rustix::net::send(
        &fd,
        &message(NFQNL_MSG_CONFIG, queue, &attr(NFQA_CFG_CMD, &cmd)),
        SendFlags::empty(),
    )
    .context("binding the queue")?;
    let mut params = 0u32.to_be_bytes().to_vec();
    params.push(NFQNL_COPY_META);
    let mut attrs = attr(NFQA_CFG_PARAMS, &params);
    attrs.extend(attr(NFQA_CFG_QUEUE_MAXLEN, &16384u32.to_be_bytes()));
    attrs.extend(attr(NFQA_CFG_MASK, &NFQA_CFG_F_FAIL_OPEN.to_be_bytes()));
    attrs.extend(attr(NFQA_CFG_FLAGS, &NFQA_CFG_F_FAIL_OPEN.to_be_bytes()));
    rustix::net::send(
        &fd,
        &message(NFQNL_MSG_CONFIG, queue, &attrs),
        SendFlags::empty(),
    )
    .context("configuring the queue")?;

    let (tx, rx) = mpsc::channel::<(Instant, u32)>();
    let release_fd = Arc::clone(&fd);
    std::thread::spawn(move || {
        release(&rx, queue, |message| {
            let _ = rustix::net::send(&release_fd, message, SendFlags::empty());
        });
    });
    emit(&json!({"event": "ready", "queue": queue, "ms": args.ms}));
    let mut buf = vec![0u8; 1 << 20];
    let mut ids = Vec::new();
    loop {
        let n = match rustix::net::recv(&fd, &mut buf[..], RecvFlags::empty()) {
            Ok((n, _)) => n,
            // The kernel dropped messages for a full socket buffer: those packets fail open.
            Err(rustix::io::Errno::NOBUFS | rustix::io::Errno::INTR) => continue,
            Err(error) => return Err(error).context("reading the queue"),
        };
        let now = Instant::now();
        ids.clear();
        if let Some(code) = packet_ids(buf.get(..n).unwrap_or(&[]), &mut ids) {
            tracing::warn!(code, "netlink reported an error");
        }
        for id in ids.drain(..) {
            if tx.send((now + delay, id)).is_err() {
                anyhow::bail!("the release thread ended");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    /// A packet message as the kernel sends it: nfgenmsg, then a PACKET_HDR attribute (id,
    /// hw protocol, hook) among others.
    fn packet(queue: u16, id: u32) -> Vec<u8> {
        let mut hdr = id.to_be_bytes().to_vec();
        hdr.extend_from_slice(&0x0800u16.to_be_bytes());
        hdr.push(3); // hook
        let mut attrs = attr(9, &[1, 2, 3, 4, 5]); // some other attribute first
        attrs.extend(attr(NFQA_PACKET_HDR, &hdr));
        message(NFQNL_MSG_PACKET, queue, &attrs)
    }

    #[test]
    fn packet_ids_are_read_from_every_message_in_a_buffer() {
        let mut buf = packet(1, 7);
        buf.extend(packet(1, 0xdead_beef));
        let mut ids = Vec::new();
        assert_eq!(packet_ids(&buf, &mut ids), None);
        assert_eq!(ids, vec![7, 0xdead_beef]);
    }

    #[test]
    fn kernel_errors_are_reported_and_truncated_input_is_ignored() {
        let mut error = Vec::new();
        error.extend_from_slice(&20u32.to_ne_bytes());
        error.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        error.extend_from_slice(&[0; 10]);
        error.extend_from_slice(&(-1i32).to_ne_bytes());
        let mut ids = Vec::new();
        assert_eq!(packet_ids(&error, &mut ids), Some(-1));
        let whole = packet(1, 9);
        for cut in 0..whole.len() {
            ids.clear();
            let _ = packet_ids(&whole[..cut], &mut ids);
            assert!(ids.is_empty() || ids == vec![9]);
        }
    }

    #[test]
    fn packets_due_together_go_out_with_one_batch_verdict_for_the_last() {
        let (tx, rx) = mpsc::channel();
        let now = Instant::now();
        for id in [1, 2, 3] {
            tx.send((now, id)).unwrap();
        }
        tx.send((now + Duration::from_millis(200), 4)).unwrap();
        drop(tx);
        let sent = std::cell::RefCell::new(Vec::new());
        release(&rx, 7, |message| sent.borrow_mut().push(message.to_vec()));
        assert_eq!(
            sent.into_inner(),
            vec![batch_verdict(7, 3), batch_verdict(7, 4)]
        );
        assert_eq!(
            &batch_verdict(7, 3)[4..6],
            &((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT_BATCH).to_ne_bytes()
        );
    }

    #[test]
    fn a_verdict_accepts_the_packet_by_id() {
        let verdict = verdict(3, 42);
        assert_eq!(verdict.len(), 16 + 4 + 12);
        assert_eq!(&verdict[18..20], &3u16.to_be_bytes());
        assert_eq!(&verdict[24..28], &NF_ACCEPT.to_be_bytes());
        assert_eq!(&verdict[28..32], &42u32.to_be_bytes());
    }
}
