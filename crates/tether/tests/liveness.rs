//! A peer in another process that pairs by word code, then hangs (SIGSTOP) or dies (SIGKILL)
//! without closing anything: requests to it time out, keep-alive notices it is gone, and a
//! pull from it ends within seconds, saying the peer went silent. Killed and started again on
//! a new port, it is reached again at once.
//!
//! The peer is this test binary run again with [`child_peer_process`] selected and its data
//! directory in the environment.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::panic
)]

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::protocols::{ECHO_ALPN, Echo};
use common::{Lab, connected_to, disconnected_from, event_within, next_event};
use tether::errors::{PeerSilent, TransferError};
use tether::{
    Decision, DeviceInfo, LibraryAnnounce, NetworkError, NetworkEvent, NetworkMessage,
    NetworkingConfig, NetworkingService, NodeId, PullOptions, ShareProvider, SharedEntry,
    TransferConsent, TransferEvent, TransferOffer, TransferOptions, Uuid, error_chain,
};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const CHILD_DATA_DIR: &str = "TETHER_TEST_CHILD_DATA_DIR";
const CHILD_DISCOVERY_DIR: &str = "TETHER_TEST_CHILD_DISCOVERY_DIR";
/// A file the child shares under every entry id (for a pull), when set.
const CHILD_SHARED_FILE: &str = "TETHER_TEST_CHILD_SHARED_FILE";
/// A file the child sends to the device it paired with, at 1 MiB/s, when set.
const CHILD_PUSHED_FILE: &str = "TETHER_TEST_CHILD_PUSHED_FILE";
/// Set when the child starts again on a data directory that is already paired: it pings the
/// device it paired with (so it dials first), says [`RESTARTED_LINE`] and stays.
const CHILD_RESTARTED: &str = "TETHER_TEST_CHILD_RESTARTED";
const CODE_LINE: &str = "TETHER-CHILD-CODE ";
const RESTARTED_LINE: &str = "TETHER-CHILD-RESTARTED";

/// Not a test of its own: the body of the peer process the other tests start, stop and kill.
/// Without its environment variables it returns at once.
#[test]
fn child_peer_process() {
    let (Some(data_dir), Some(discovery)) = (
        std::env::var_os(CHILD_DATA_DIR),
        std::env::var_os(CHILD_DISCOVERY_DIR),
    ) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut config = NetworkingConfig::local_only(data_dir)
            .with_loopback_discovery(discovery)
            .with_insecure_key_file();
        if let Some(file) = std::env::var_os(CHILD_SHARED_FILE) {
            config = config.with_share_provider(ShareOne(file.into()));
        }
        let service = NetworkingService::start(config).await.unwrap();
        service.register_protocol(Echo::default()).unwrap();
        if std::env::var_os(CHILD_RESTARTED).is_some() {
            let paired = service.paired_devices();
            service
                .device(paired[0].node_id)
                .unwrap()
                .ping()
                .await
                .unwrap();
            println!("{RESTARTED_LINE}");
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
        let mut invite = service.start_pairing_as_initiator().unwrap();
        println!("{CODE_LINE}{}", invite.code);
        let paired = invite.paired().await.unwrap();
        if let Some(file) = std::env::var_os(CHILD_PUSHED_FILE) {
            let options = TransferOptions::default().rate_limit(Some(1 << 20));
            let handle = service
                .share_with_device(paired.device.public_key, &[file.into()], options)
                .await
                .unwrap();
            let _ = handle.finish().await;
        }
        // Stay until the parent kills us; give up on our own if it never does.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
}

/// Shares one file with every paired device, whatever entry id it asks for.
#[derive(Debug)]
struct ShareOne(std::path::PathBuf);

impl ShareProvider for ShareOne {
    fn resolve(&self, _from: &DeviceInfo, _entry_id: Uuid) -> Option<SharedEntry> {
        Some(SharedEntry::new(&self.0))
    }
}

/// Accepts every offer.
#[derive(Debug)]
struct AcceptAll;

impl TransferConsent for AcceptAll {
    fn decide<'a>(
        &'a self,
        _offer: &'a TransferOffer,
    ) -> std::pin::Pin<Box<dyn Future<Output = Decision> + Send + 'a>> {
        Box::pin(async { Decision::Accept })
    }
}

/// The peer process, killed when dropped.
struct ChildPeer {
    process: Child,
    node_id: NodeId,
}

impl ChildPeer {
    /// Starts the peer, pairs `service` with it by the word code it prints, and connects.
    async fn start_and_pair(lab: &Lab, service: &NetworkingService) -> Self {
        Self::start_sharing(lab, service, None).await
    }

    /// Like [`Self::start_and_pair`], the peer sharing `shared` (if any) under every entry id.
    async fn start_sharing(
        lab: &Lab,
        service: &NetworkingService,
        shared: Option<&std::path::Path>,
    ) -> Self {
        let mut command = Command::new(std::env::current_exe().unwrap());
        if let Some(shared) = shared {
            command.env(CHILD_SHARED_FILE, shared);
        }
        Self::start_command(lab, service, command).await
    }

    /// Like [`Self::start_and_pair`], the peer sending `pushed` to `service` once paired.
    async fn start_pushing(
        lab: &Lab,
        service: &NetworkingService,
        pushed: &std::path::Path,
    ) -> Self {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.env(CHILD_PUSHED_FILE, pushed);
        Self::start_command(lab, service, command).await
    }

    async fn start_command(lab: &Lab, service: &NetworkingService, command: Command) -> Self {
        let (process, mut lines) = spawn_peer(lab, command);
        let code = after_marker(&mut lines, CODE_LINE).await.trim().to_owned();
        let paired = service.join_pairing(&code).await.unwrap();
        let node_id = paired.device.public_key;
        let mut events = service.subscribe();
        service.device(node_id).unwrap().ping().await.unwrap();
        next_event(&mut events, connected_to(node_id)).await;
        Self { process, node_id }
    }

    /// Kills the peer (SIGKILL) and starts it again on its data directory and a new port; it
    /// dials this device first. Returns once it has reached this device.
    async fn restart(&mut self, lab: &Lab) {
        self.process.kill().await.unwrap();
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.env(CHILD_RESTARTED, "1");
        let (process, mut lines) = spawn_peer(lab, command);
        after_marker(&mut lines, RESTARTED_LINE).await;
        self.process = process;
    }

    /// Freezes the peer (SIGSTOP) and waits until the kernel reports it stopped.
    async fn freeze(&self) {
        let pid = self.pid();
        rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
        let stopped = tokio::task::spawn_blocking(move || {
            rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::UNTRACED)
        });
        let (_, status) = tokio::time::timeout(Duration::from_secs(5), stopped)
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(status.stopped(), "{status:?}");
    }

    fn pid(&self) -> rustix::process::Pid {
        let raw = i32::try_from(self.process.id().unwrap()).unwrap();
        rustix::process::Pid::from_raw(raw).unwrap()
    }
}

/// Runs `command` (this test binary) as the peer process on the lab's child directories.
fn spawn_peer(lab: &Lab, mut command: Command) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut process = command
        .args([
            "liveness::child_peer_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DATA_DIR, lab.data_dir("child"))
        .env(CHILD_DISCOVERY_DIR, lab.discovery_dir())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = BufReader::new(process.stdout.take().unwrap()).lines();
    (process, lines)
}

/// What follows `marker` on the first line of the child's output that holds it (libtest's
/// "test child_peer_process ... " may share the line), within 20 s.
async fn after_marker(lines: &mut Lines<BufReader<ChildStdout>>, marker: &str) -> String {
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some((_, rest)) = line.split_once(marker) {
                return rest.to_owned();
            }
        }
        panic!("the child exited before saying {marker:?}");
    })
    .await
    .unwrap()
}

fn announce() -> NetworkMessage {
    NetworkMessage::LibraryAnnounce(LibraryAnnounce {
        libraries: Vec::new(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_a_hung_peer_times_out() {
    let lab = Lab::new();
    let mut config = lab.config("survivor");
    // Keep-alive stays out of the way: only the request's own timeout can end it.
    config.keepalive_interval = Duration::from_secs(60);
    config.request_timeout = Duration::from_millis(300);
    let survivor = NetworkingService::start(config).await.unwrap();
    let mut child = ChildPeer::start_and_pair(&lab, &survivor).await;
    let device = survivor.device(child.node_id).unwrap();
    assert_eq!(
        device.send_message(announce()).await.unwrap(),
        NetworkMessage::Ack
    );

    child.freeze().await;
    let mut events = survivor.subscribe();
    let timed = std::time::Instant::now();
    let answer = device.send_message(announce()).await;
    assert!(
        matches!(answer, Err(NetworkError::TimedOut { after, .. }) if after == Duration::from_millis(300)),
        "{answer:?}"
    );
    // The timeout makes the survivor ping the link at once; unanswered, the link is closed
    // long before the next keep-alive (60 s) would have looked, so the next send redials.
    let event = event_within(
        &mut events,
        Duration::from_secs(20),
        disconnected_from(child.node_id),
    )
    .await;
    assert!(
        event.is_some(),
        "a link whose request timed out and whose probe went unanswered stays open"
    );
    println!(
        "figures: a hung peer's link closed {:?} after the request was sent (request timeout 300 ms)",
        timed.elapsed()
    );
    child.process.kill().await.unwrap();
    survivor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_notices_a_killed_peer() {
    let lab = Lab::new();
    let mut config = lab.config("survivor");
    config.keepalive_interval = Duration::from_millis(300);
    config.request_timeout = Duration::from_millis(500);
    let survivor = NetworkingService::start(config).await.unwrap();
    let mut child = ChildPeer::start_and_pair(&lab, &survivor).await;
    let mut events = survivor.subscribe();

    // SIGKILL: no close frame, no goodbye; the peer just stops answering.
    let killed = std::time::Instant::now();
    child.process.kill().await.unwrap();
    // Keep-alive gives up within 1.25 × 300 ms + 500 ms of the peer's last word; the reason
    // says it was keep-alive (not QUIC's own idle timeout). The time is printed, not asserted.
    let event = event_within(
        &mut events,
        Duration::from_secs(30),
        disconnected_from(child.node_id),
    )
    .await;
    match event {
        Some(NetworkEvent::Disconnected { reason, .. }) => {
            assert!(reason.contains("keep-alive"), "{reason}");
            println!(
                "figures: keep-alive (300 ms, request timeout 500 ms) noticed the killed peer {:?} after the kill",
                killed.elapsed()
            );
        }
        other => panic!("no disconnect after the peer was killed: {other:?}"),
    }
    assert!(survivor.connection_info(child.node_id).is_none());
    survivor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_from_a_killed_peer_ends_within_seconds_saying_it_went_silent() {
    let lab = Lab::new();
    let mut config = lab.config("puller");
    // The keep-alive and the stall bound stay out of the way: only the link's in-use probe
    // can end the pull early.
    config.keepalive_interval = Duration::from_secs(60);
    config.transfer_stall_timeout = Duration::from_secs(60);
    let puller = NetworkingService::start(config).await.unwrap();
    let shared = lab.root.path().join("big.bin");
    std::fs::write(&shared, vec![7u8; 8 << 20]).unwrap();
    let mut child = ChildPeer::start_sharing(&lab, &puller, Some(&shared)).await;

    // 1 MiB/s: the kill comes while the file is on its way.
    let options = PullOptions::default().rate_limit(Some(1 << 20));
    let mut handle = puller
        .request_file(
            child.node_id,
            Uuid::from_bytes([1; 16]),
            &lab.root.path().join("in"),
            options,
        )
        .await
        .unwrap();
    loop {
        match handle.events.recv().await {
            Some(TransferEvent::Progress(progress)) if progress.bytes_done >= 1 << 20 => break,
            Some(_) => {}
            None => panic!("the pull ended before a MiB arrived"),
        }
    }
    // SIGKILL: no close frame; QUIC alone would notice after its 30 s idle timeout.
    let killed = std::time::Instant::now();
    child.process.kill().await.unwrap();
    let _events = handle.take_events();
    let ended = tokio::time::timeout(Duration::from_secs(60), handle.finish())
        .await
        .expect("the pull ended");
    let noticed = killed.elapsed();
    println!("figures: a pull noticed its killed sharer {noticed:?} after the kill");
    let Err(NetworkError::Transfer(error)) = ended else {
        panic!("{ended:?}");
    };
    assert!(error.is_resumable(), "{error:?}");
    let TransferError::Link(io) = &error else {
        panic!("{error:?}");
    };
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut, "{io:?}");
    assert!(
        io.get_ref()
            .is_some_and(|inner| inner.downcast_ref::<PeerSilent>().is_some()),
        "{io:?}"
    );
    assert!(error_chain(&error).contains("went silent"), "{error:?}");
    // Loose: 1 s of silence and 2 s for the ping's answer, on a shared machine.
    assert!(noticed < Duration::from_secs(15), "{noticed:?}");
    puller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_from_a_killed_sender_fails_within_seconds_saying_it_went_silent() {
    let lab = Lab::new();
    let inbox = lab.root.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let mut config = lab
        .config("receiver")
        .with_receive_dir(&inbox)
        .with_consent(AcceptAll);
    config.keepalive_interval = Duration::from_secs(60);
    config.transfer_stall_timeout = Duration::from_secs(60);
    let receiver = NetworkingService::start(config).await.unwrap();
    let mut events = receiver.subscribe();
    let pushed = lab.root.path().join("big.bin");
    std::fs::write(&pushed, vec![9u8; 8 << 20]).unwrap();
    let mut child = ChildPeer::start_pushing(&lab, &receiver, &pushed).await;

    let started = event_within(&mut events, Duration::from_secs(60), |event| {
        matches!(event, NetworkEvent::IncomingTransfer {
            event: TransferEvent::Progress(progress), ..
        } if progress.bytes_done >= 1 << 20)
    })
    .await;
    assert!(started.is_some(), "no MiB arrived");
    // SIGKILL: no close frame; QUIC alone would notice after its 30 s idle timeout.
    let killed = std::time::Instant::now();
    child.process.kill().await.unwrap();
    let failed = event_within(&mut events, Duration::from_secs(60), |event| {
        matches!(event, NetworkEvent::TransferFailed { .. })
    })
    .await;
    let noticed = killed.elapsed();
    println!("figures: a receiver noticed its killed sender {noticed:?} after the kill");
    let Some(NetworkEvent::TransferFailed {
        reason, resumable, ..
    }) = failed
    else {
        panic!("{failed:?}");
    };
    assert!(resumable, "{reason}");
    assert!(reason.contains("went silent"), "{reason}");
    assert!(noticed < Duration::from_secs(15), "{noticed:?}: {reason}");
    receiver.shutdown().await;
}

/// A peer killed and started again on a new port dials this device first, while this side
/// still holds the old connection to its dead process. A new connection to it (a third-party
/// protocol here) must reach the new process at once, not time out dialling the dead address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_reached_at_once_on_its_new_port() {
    let lab = Lab::new();
    let mut config = lab.config("desk");
    // Keep-alive stays out of the way: nothing but the restart may end the old link.
    config.keepalive_interval = Duration::from_secs(60);
    let desk = NetworkingService::start(config).await.unwrap();
    let mut child = ChildPeer::start_and_pair(&lab, &desk).await;
    echo_once(&desk, child.node_id).await.unwrap();

    child.restart(&lab).await;
    let started = std::time::Instant::now();
    let echoed = tokio::time::timeout(Duration::from_secs(15), echo_once(&desk, child.node_id))
        .await
        .unwrap_or_else(|_| panic!("no connection to the restarted peer in 15 s"));
    println!("reached the restarted peer in {:?}", started.elapsed());
    echoed.unwrap_or_else(|error| panic!("{}", error_chain(&error)));
}

/// Opens an echo connection to `peer` and has one stream echoed.
async fn echo_once(service: &NetworkingService, peer: NodeId) -> Result<(), NetworkError> {
    let connection = service.connect_protocol(peer, ECHO_ALPN).await?;
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(b"hello").await.unwrap();
    send.finish().unwrap();
    assert_eq!(recv.read_to_end(64).await.unwrap(), b"hello");
    connection.close(0u32.into(), b"done");
    Ok(())
}
