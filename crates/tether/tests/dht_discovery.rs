//! Discovery on the BitTorrent Mainline DHT, against a testnet of real Mainline nodes the test
//! starts (`n0_mainline::Testnet`: the first node gets an empty bootstrap list, the others the
//! first one's 127.0.0.1 address, so no built-in public bootstrap node is ever asked). Every
//! service is given those 127.0.0.1 nodes as its only bootstrap list (`DhtConfig::bootstrap`
//! replaces the DHT client's built-in nodes) and has no LAN, loopback or DNS discovery. The
//! time to re-find is printed with `--nocapture`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stderr
)]

use crate::common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Lab, pair_by_ticket};
use iroh::EndpointId;
use iroh::endpoint_info::EndpointInfo;
use n0_future::task::AbortOnDropHandle;
use n0_mainline::{MutableItem, SigningKey, Testnet};
use serde_bencode::value::Value;
use tether::{DhtConfig, NetworkMessage, NetworkingConfig, NetworkingService, NodeId, Ping};
use tokio::net::UdpSocket;

/// Mainline nodes in the testnet.
const TESTNET_NODES: usize = 4;

async fn testnet() -> (Testnet, Vec<SocketAddr>) {
    let testnet = Testnet::new(TESTNET_NODES).await.unwrap();
    let bootstrap = testnet
        .bootstrap
        .iter()
        .map(|addr| addr.parse::<SocketAddr>().unwrap())
        .collect::<Vec<_>>();
    assert!(bootstrap.iter().all(|addr| addr.ip().is_loopback()));
    (testnet, bootstrap)
}

/// A local-only service whose only discovery is the DHT joined through `bootstrap`.
fn dht_only(lab: &Lab, name: &str, bootstrap: &[SocketAddr]) -> NetworkingConfig {
    let mut config = lab.config(name);
    config.loopback_discovery = None;
    let mut dht = DhtConfig::with_bootstrap(bootstrap.iter().copied());
    // No relay on loopback: the record must name the direct address.
    dht.publish_ip_addrs = true;
    config.transport.dht = Some(dht);
    config
}

async fn start(config: NetworkingConfig) -> NetworkingService {
    let service = NetworkingService::start(config).await.unwrap();
    let diag = service.diagnostics();
    assert!(diag.local_only && !diag.mdns && diag.global_discovery.is_none());
    assert!(diag.loopback_discovery.is_none());
    assert!(diag.dht.is_some(), "the DHT was turned off");
    service
}

async fn ping(
    from: &NetworkingService,
    to: &NetworkingService,
) -> Result<(), tether::NetworkError> {
    let reply = from
        .device(to.node_id())
        .unwrap()
        .send_message(NetworkMessage::Ping(Ping { timestamp_ms: 1 }))
        .await?;
    assert!(matches!(reply, NetworkMessage::Pong(_)), "{reply:?}");
    Ok(())
}

/// Pings until an answer comes (at most 60 s); how long that took.
async fn refind(from: &NetworkingService, to: &NetworkingService) -> Duration {
    let started = Instant::now();
    loop {
        match ping(from, to).await {
            Ok(()) => return started.elapsed(),
            Err(error) => assert!(
                started.elapsed() < Duration::from_secs(60),
                "never re-found: {error}"
            ),
        }
    }
}

fn seen_on_the_dht(service: &NetworkingService, node: NodeId) -> bool {
    service.diagnostics().discovered.contains(&(node, "dht"))
}

fn endpoint_id(node: NodeId) -> EndpointId {
    EndpointId::from_bytes(node.as_bytes()).unwrap()
}

/// Pairs a desk and a phone, restarts the desk on a new port; the desk's new address.
async fn pair_and_restart(
    lab: &Lab,
    bootstrap: &[SocketAddr],
) -> (NetworkingService, NetworkingService) {
    let desk = start(dht_only(lab, "desk", bootstrap)).await;
    let phone = start(dht_only(lab, "phone", bootstrap)).await;
    pair_by_ticket(&desk, &phone).await;
    ping(&phone, &desk).await.unwrap();
    // The desk goes away and comes back on another port; nothing but the DHT says where.
    let old = desk.addr();
    desk.shutdown().await;
    drop(desk);
    let desk = start(dht_only(lab, "desk", bootstrap)).await;
    assert_ne!(old.direct, desk.addr().direct, "the restart kept the port");
    (desk, phone)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paired_devices_refind_each_other_on_the_dht_after_a_restart() {
    let lab = Lab::new();
    let (testnet, bootstrap) = testnet().await;
    let (desk, phone) = pair_and_restart(&lab, &bootstrap).await;

    let took = refind(&phone, &desk).await;
    eprintln!("phone re-found the restarted desk through the DHT in {took:?}");
    assert!(seen_on_the_dht(&phone, desk.node_id()));
    // And the other way: the restarted desk finds the phone by node id.
    let took = refind(&desk, &phone).await;
    eprintln!("desk reached the phone in {took:?}");

    // What the desk published: its address, signed by its key, and nothing else (no relay
    // here, no user data, so no pairing slot even while a code is shown).
    let _invite = desk.start_pairing_as_initiator().unwrap();
    let key = *desk.node_id().as_bytes();
    let item = testnet.nodes[0]
        .get_mutable_most_recent(&key, None)
        .await
        .unwrap()
        .expect("the desk's record is on the DHT");
    let packet = iroh_dns::pkarr::SignedPacket::from_parts_unchecked(
        item.key(),
        item.signature(),
        iroh_dns::pkarr::Timestamp::from_micros(u64::try_from(item.seq()).unwrap()),
        item.value(),
    )
    .unwrap();
    // The packet verifies against the desk's key.
    iroh_dns::pkarr::SignedPacket::from_bytes(packet.as_bytes()).unwrap();
    let info = EndpointInfo::from_pkarr_signed_packet(&packet).unwrap();
    assert_eq!(info.endpoint_id, endpoint_id(desk.node_id()));
    assert_eq!(
        info.ip_addrs().copied().collect::<Vec<_>>(),
        desk.addr().direct
    );
    assert_eq!(info.relay_urls().count(), 0);
    assert_eq!(info.user_data(), None);
    assert_eq!(packet.all_txt_records().len(), desk.addr().direct.len());
    desk.shutdown().await;
    phone.shutdown().await;
}

/// A hostile node in the DHT answers every lookup of the desk's record with a forged, newer
/// one pointing at a decoy socket: once with a signature that does not verify against the
/// desk's key, once signed by the attacker's own key (a record stored under the desk's
/// target). The phone ignores both, finds the desk's genuine record, and never sends a
/// packet to the decoy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_does_not_verify_against_the_device_key_is_ignored() {
    let lab = Lab::new();
    let (_testnet, mut bootstrap) = testnet().await;
    let decoy = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let decoy_addr = decoy.local_addr().unwrap();
    // The desk's key is known before it starts: its data directory is made now.
    let desk_id = {
        let desk = start(dht_only(&lab, "desk", &bootstrap)).await;
        let id = desk.node_id();
        desk.shutdown().await;
        id
    };
    let hostile = HostileNode::start(desk_id, decoy_addr).await;
    bootstrap.push(hostile.addr);

    let (desk, phone) = pair_and_restart(&lab, &bootstrap).await;
    assert_eq!(desk.node_id(), desk_id);
    let took = refind(&phone, &desk).await;
    eprintln!("phone re-found the desk past the forged records in {took:?}");
    assert!(seen_on_the_dht(&phone, desk_id));
    assert!(
        hostile.forged.load(Ordering::SeqCst) > 0,
        "no lookup of the desk's record reached the hostile node"
    );
    let mut buf = [0u8; 2048];
    assert!(
        decoy.try_recv_from(&mut buf).is_err(),
        "the phone sent a packet to the forged record's address"
    );
    desk.shutdown().await;
    phone.shutdown().await;
}

/// A Mainline node (KRPC over UDP on 127.0.0.1) that answers pings and node searches like
/// any node, and every `get` of `victim`'s record with a forged mutable item.
struct HostileNode {
    addr: SocketAddr,
    /// How many forged records it served.
    forged: Arc<AtomicUsize>,
    _task: AbortOnDropHandle<()>,
}

impl HostileNode {
    async fn start(victim: NodeId, decoy: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let victim_key = *victim.as_bytes();
        let target = *MutableItem::target_from_key(&victim_key, None).as_bytes();
        let value = forged_record(victim, decoy);
        let attacker = SigningKey::from_bytes(&[0xa1; 32]);
        let forged = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&forged);
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                let (len, from) = socket.recv_from(&mut buf).await.unwrap();
                let Some(query) = Query::parse(&buf[..len]) else {
                    continue;
                };
                let mut answer = BTreeMap::from([(b"id".to_vec(), bytes(&[0x42; 20]))]);
                match query.method.as_slice() {
                    b"get" if query.target.as_deref() == Some(&target[..]) => {
                        // Newer than anything the desk published.
                        let seq = now_micros() + 3_600_000_000;
                        let signed = MutableItem::new(&attacker, &value, seq, None);
                        let substitute = count.fetch_add(1, Ordering::SeqCst) % 2 == 1;
                        // The desk's key with the attacker's signature, or the attacker's
                        // own key (a valid signature, for another key) at the desk's target.
                        let key = if substitute {
                            *signed.key()
                        } else {
                            victim_key
                        };
                        answer.insert(b"token".to_vec(), bytes(b"tok"));
                        answer.insert(b"k".to_vec(), bytes(&key));
                        answer.insert(b"sig".to_vec(), bytes(signed.signature()));
                        answer.insert(b"seq".to_vec(), Value::Int(seq));
                        answer.insert(b"v".to_vec(), bytes(&value));
                    }
                    b"get" | b"get_peers" => {
                        answer.insert(b"token".to_vec(), bytes(b"tok"));
                        answer.insert(b"nodes".to_vec(), bytes(b""));
                    }
                    b"find_node" => {
                        answer.insert(b"nodes".to_vec(), bytes(b""));
                    }
                    _ => {}
                }
                let reply = Value::Dict(
                    [
                        (b"t".to_vec(), bytes(&query.transaction)),
                        (b"y".to_vec(), bytes(b"r")),
                        (b"r".to_vec(), Value::Dict(answer.into_iter().collect())),
                    ]
                    .into_iter()
                    .collect(),
                );
                let reply = serde_bencode::to_bytes(&reply).unwrap();
                let _ = socket.send_to(&reply, from).await;
            }
        });
        Self {
            addr,
            forged,
            _task: AbortOnDropHandle::new(task),
        }
    }
}

/// What the hostile node needs of a KRPC query.
struct Query {
    transaction: Vec<u8>,
    method: Vec<u8>,
    target: Option<Vec<u8>>,
}

impl Query {
    fn parse(datagram: &[u8]) -> Option<Self> {
        let Ok(Value::Dict(message)) = serde_bencode::from_bytes::<Value>(datagram) else {
            return None;
        };
        let text = |value: Option<&Value>| match value {
            Some(Value::Bytes(bytes)) => Some(bytes.clone()),
            _ => None,
        };
        if text(message.get(&b"y"[..])).as_deref() != Some(b"q") {
            return None;
        }
        let target = match message.get(&b"a"[..]) {
            Some(Value::Dict(arguments)) => text(arguments.get(&b"target"[..])),
            _ => None,
        };
        Some(Self {
            transaction: text(message.get(&b"t"[..]))?,
            method: text(message.get(&b"q"[..]))?,
            target,
        })
    }
}

fn bytes(data: &[u8]) -> Value {
    Value::Bytes(data.to_vec())
}

fn now_micros() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_micros()).unwrap()
}

/// A well-formed address record for `victim` (the DNS packet its own record would be, under
/// its name) that names `decoy` as its only address. Checked: were its signature not
/// verified, it would send the phone to the decoy.
fn forged_record(victim: NodeId, decoy: SocketAddr) -> Vec<u8> {
    use simple_dns::rdata::{RData, TXT};
    use simple_dns::{CLASS, Name, Packet, ResourceRecord};
    let id = endpoint_id(victim);
    let info = EndpointInfo::new(id).with_ip_addrs(vec![decoy]);
    let name = format!("_iroh.{}", id.to_z32());
    let mut packet = Packet::new_reply(0);
    let txts = info.to_txt_strings();
    for txt in &txts {
        let mut record = TXT::new();
        record.add_string(txt).unwrap();
        packet.answers.push(ResourceRecord::new(
            Name::new_unchecked(&name),
            CLASS::IN,
            30,
            RData::TXT(record),
        ));
    }
    let encoded = packet.build_bytes_vec_compressed().unwrap();
    // Read as the desk's record (signature not checked), it points at the decoy.
    let unchecked = iroh_dns::pkarr::SignedPacket::from_parts_unchecked(
        victim.as_bytes(),
        &[0; 64],
        iroh_dns::pkarr::Timestamp::from_micros(1),
        &encoded,
    )
    .unwrap();
    let read = EndpointInfo::from_pkarr_signed_packet(&unchecked).unwrap();
    assert_eq!(read.endpoint_id, id);
    assert_eq!(read.ip_addrs().copied().collect::<Vec<_>>(), vec![decoy]);
    encoded
}
