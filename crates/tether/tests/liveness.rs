//! A peer in another process that pairs by word code, then hangs (SIGSTOP) or dies (SIGKILL)
//! without closing anything: requests to it time out, and keep-alive notices it is gone.
//!
//! The peer is this test binary run again with [`child_peer_process`] selected and its data
//! directory in the environment.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::panic
)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Lab, connected_to, disconnected_from, event_within, next_event};
use tether::{
    LibraryAnnounce, NetworkError, NetworkEvent, NetworkMessage, NetworkingConfig,
    NetworkingService, NodeId,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const CHILD_DATA_DIR: &str = "TETHER_TEST_CHILD_DATA_DIR";
const CHILD_DISCOVERY_DIR: &str = "TETHER_TEST_CHILD_DISCOVERY_DIR";
const CODE_LINE: &str = "TETHER-CHILD-CODE ";

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
        let config = NetworkingConfig::local_only(data_dir)
            .with_loopback_discovery(discovery)
            .with_insecure_key_file();
        let service = NetworkingService::start(config).await.unwrap();
        let mut invite = service.start_pairing_as_initiator().unwrap();
        println!("{CODE_LINE}{}", invite.code);
        invite.paired().await.unwrap();
        // Stay until the parent kills us; give up on our own if it never does.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
}

/// The peer process, killed when dropped.
struct ChildPeer {
    process: Child,
    node_id: NodeId,
}

impl ChildPeer {
    /// Starts the peer, pairs `service` with it by the word code it prints, and connects.
    async fn start_and_pair(lab: &Lab, service: &NetworkingService) -> Self {
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args([
                "child_peer_process",
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
        let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
        let code = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                // libtest's "test child_peer_process ... " may share the line.
                if let Some((_, code)) = line.split_once(CODE_LINE) {
                    return code.trim().to_owned();
                }
            }
            panic!("the child exited without showing a code");
        })
        .await
        .unwrap();
        let paired = service.join_pairing(&code).await.unwrap();
        let node_id = paired.device.public_key;
        let mut events = service.subscribe();
        service.device(node_id).unwrap().ping().await.unwrap();
        next_event(&mut events, connected_to(node_id)).await;
        Self { process, node_id }
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
