//! `DeviceRegistry`: every transition from every state, events, trust, revocation, rename,
//! lookups, persistence across reopen, and concurrent readers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use crate::common;

use std::net::SocketAddr;

use redb::ReadableDatabase;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use common::{Device, now, pair, rng, sample_pairing, stranger};
use rand_chacha::ChaCha20Rng;
use tether_identity::{DeviceName, NodeId};
use tether_registry::{
    ConnectionInfo, ConnectionRefused, DeviceRegistry, DeviceState, DisconnectReason,
    MAX_DISCOVERED, NewPairing, PairingSessionId, RegistryError, RegistryEvent, StateKind,
    TrustLevel,
};
use tokio::sync::broadcast::error::TryRecvError;

const SESSION: PairingSessionId = PairingSessionId(7);

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, 1], port))
}

/// States a test can put a device in; `Unknown` is "not in the registry".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Unknown,
    Discovered,
    Pairing,
    Paired,
    Connected,
    Disconnected,
}

const STARTS: [Start; 6] = [
    Start::Unknown,
    Start::Discovered,
    Start::Pairing,
    Start::Paired,
    Start::Connected,
    Start::Disconnected,
];

#[derive(Debug, Clone, Copy)]
enum Op {
    Discovered,
    BeginPairing,
    PairingFailed,
    CompletePairing,
    Connected,
    Disconnected,
}

const OPS: [Op; 6] = [
    Op::Discovered,
    Op::BeginPairing,
    Op::PairingFailed,
    Op::CompletePairing,
    Op::Connected,
    Op::Disconnected,
];

/// What an operation must do from a start state.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Becomes(StateKind),
    Illegal,
    RefusedNotPaired,
}

fn expected(start: Start, op: Op) -> Outcome {
    use Outcome::{Becomes, Illegal, RefusedNotPaired};
    match (start, op) {
        (Start::Unknown | Start::Discovered, Op::Discovered) => Becomes(StateKind::Discovered),
        (Start::Unknown | Start::Discovered, Op::BeginPairing) => Becomes(StateKind::Pairing),
        (Start::Pairing, Op::PairingFailed) => Becomes(StateKind::Discovered),
        (Start::Pairing, Op::CompletePairing) => Becomes(StateKind::Paired),
        (Start::Unknown | Start::Discovered | Start::Pairing, Op::Connected) => RefusedNotPaired,
        (Start::Paired | Start::Disconnected, Op::Connected) => Becomes(StateKind::Connected),
        (Start::Connected, Op::Disconnected) => Becomes(StateKind::Disconnected),
        _ => Illegal,
    }
}

/// Puts a new device into `start`; returns its pairing (for `CompletePairing`).
fn prepare(registry: &DeviceRegistry, rng: &mut ChaCha20Rng, start: Start) -> NewPairing {
    let pairing = sample_pairing(rng, "subject");
    let node = pairing.node_id;
    if start == Start::Unknown {
        return pairing;
    }
    registry.discovered(node, addr(1000)).unwrap();
    if start == Start::Discovered {
        return pairing;
    }
    registry.begin_pairing(node, SESSION).unwrap();
    if start == Start::Pairing {
        return pairing;
    }
    registry.complete_pairing(SESSION, pairing.clone()).unwrap();
    if start == Start::Paired {
        return pairing;
    }
    registry
        .connected(node, ConnectionInfo::direct(addr(2000), now()))
        .unwrap();
    if start == Start::Connected {
        return pairing;
    }
    registry
        .disconnected(node, DisconnectReason::TimedOut)
        .unwrap();
    pairing
}

fn apply(registry: &DeviceRegistry, op: Op, pairing: NewPairing) -> Result<(), RegistryError> {
    let node = pairing.node_id;
    match op {
        Op::Discovered => registry.discovered(node, addr(3000)),
        Op::BeginPairing => registry.begin_pairing(node, SESSION),
        Op::PairingFailed => registry.pairing_failed(node, SESSION),
        Op::CompletePairing => registry.complete_pairing(SESSION, pairing).map(|_| ()),
        Op::Connected => registry.connected(node, ConnectionInfo::direct(addr(4000), now())),
        Op::Disconnected => registry.disconnected(node, DisconnectReason::Closed),
    }
}

#[test]
fn every_transition_from_every_state() {
    let device = Device::new();
    let registry = device.registry();
    let mut rng = rng(21);
    for start in STARTS {
        for op in OPS {
            let pairing = prepare(&registry, &mut rng, start);
            let node = pairing.node_id;
            let before = registry.device(&node);
            let mut events = registry.subscribe();
            let result = apply(&registry, op, pairing);
            let case = format!("{op:?} from {start:?}");
            match expected(start, op) {
                Outcome::Becomes(kind) => {
                    result.unwrap_or_else(|error| panic!("{case}: {error}"));
                    let after = registry.device(&node).expect(&case);
                    assert_eq!(after.state.kind(), kind, "{case}");
                    assert!(events.try_recv().is_ok(), "{case}: no event");
                }
                refused => {
                    let error = result.expect_err(&case);
                    match refused {
                        Outcome::Illegal => {
                            let RegistryError::IllegalTransition { node: named, .. } = &error
                            else {
                                panic!("{case}: {error}")
                            };
                            assert_eq!(named, &node, "{case}");
                        }
                        _ => assert!(
                            matches!(
                                error,
                                RegistryError::Refused {
                                    reason: ConnectionRefused::NotPaired,
                                    ..
                                }
                            ),
                            "{case}: {error}"
                        ),
                    }
                    // A refused step changes nothing and says nothing.
                    assert_eq!(registry.device(&node), before, "{case}");
                    assert_eq!(events.try_recv(), Err(TryRecvError::Empty), "{case}");
                }
            }
        }
    }
}

#[test]
fn illegal_transition_error_names_both_states() {
    let device = Device::new();
    let registry = device.registry();
    let node = stranger(1);
    let error = registry
        .disconnected(node, DisconnectReason::Closed)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("device {node}: cannot go from unknown to disconnected")
    );
}

#[test]
fn pairing_sessions_must_match() {
    let device = Device::new();
    let registry = device.registry();
    let pairing = sample_pairing(&mut rng(22), "peer");
    let node = pairing.node_id;
    registry.begin_pairing(node, SESSION).unwrap();
    let other = PairingSessionId(8);
    for result in [
        registry
            .complete_pairing(other, pairing.clone())
            .map(|_| ()),
        registry.pairing_failed(node, other),
    ] {
        assert!(
            matches!(
                result,
                Err(RegistryError::SessionMismatch { current, given, .. })
                    if current == SESSION && given == other
            ),
            "{result:?}"
        );
    }
    assert_eq!(
        registry.device(&node).unwrap().state,
        DeviceState::Pairing { session: SESSION }
    );
}

#[test]
fn failed_pairing_without_discovery_forgets_the_device() {
    let device = Device::new();
    let registry = device.registry();
    let node = stranger(2);
    registry.begin_pairing(node, SESSION).unwrap();
    let mut events = registry.subscribe();
    registry.pairing_failed(node, SESSION).unwrap();
    assert!(registry.device(&node).is_none());
    assert_eq!(
        events.try_recv().unwrap(),
        RegistryEvent::Forgotten { node_id: node }
    );
}

#[test]
fn pairing_whose_info_names_another_key_is_refused() {
    let device = Device::new();
    let registry = device.registry();
    let mut rng = rng(23);
    let mut pairing = sample_pairing(&mut rng, "peer");
    pairing.info.public_key = sample_pairing(&mut rng, "other").node_id;
    registry.begin_pairing(pairing.node_id, SESSION).unwrap();
    let result = registry.complete_pairing(SESSION, pairing);
    assert!(
        matches!(result, Err(RegistryError::NodeMismatch { .. })),
        "{result:?}"
    );
}

#[test]
fn events_follow_a_device_through_its_life() {
    let device = Device::new();
    let registry = device.registry();
    let mut events = registry.subscribe();
    let pairing = sample_pairing(&mut rng(24), "peer");
    let node = pairing.node_id;
    let connection = ConnectionInfo::relayed("https://relay.example.org/", now());

    registry.discovered(node, addr(1)).unwrap();
    registry.begin_pairing(node, SESSION).unwrap();
    registry.complete_pairing(SESSION, pairing).unwrap();
    registry.connected(node, connection.clone()).unwrap();
    registry
        .disconnected(node, DisconnectReason::TimedOut)
        .unwrap();
    registry
        .rename(node, DeviceName::new("kitchen tablet").unwrap())
        .unwrap();
    registry.revoke(node).unwrap();

    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    let changed = |from, to| RegistryEvent::StateChanged {
        node_id: node,
        from,
        to,
    };
    assert_eq!(
        seen,
        vec![
            changed(None, DeviceState::Discovered { addr: addr(1) }),
            changed(
                Some(StateKind::Discovered),
                DeviceState::Pairing { session: SESSION }
            ),
            changed(Some(StateKind::Pairing), DeviceState::Paired),
            changed(
                Some(StateKind::Paired),
                DeviceState::Connected { connection }
            ),
            changed(
                Some(StateKind::Connected),
                DeviceState::Disconnected {
                    reason: DisconnectReason::TimedOut
                }
            ),
            RegistryEvent::Renamed {
                node_id: node,
                name: DeviceName::new("kitchen tablet").unwrap()
            },
            RegistryEvent::Revoked { node_id: node },
        ]
    );
}

#[tokio::test]
async fn events_can_be_awaited() {
    let device = Device::new();
    let registry = device.registry();
    let mut events = registry.subscribe();
    let node = stranger(3);
    let writer = registry.clone();
    thread::spawn(move || writer.discovered(node, addr(9)).unwrap());
    let event = events.recv().await.unwrap();
    assert!(matches!(event, RegistryEvent::StateChanged { node_id, .. } if node_id == node));
}

#[test]
fn blocking_disconnects_refuses_and_persists() {
    let device = Device::new();
    let pairing = sample_pairing(&mut rng(25), "peer");
    let node = pairing.node_id;
    {
        let registry = device.registry();
        pair(&registry, pairing);
        registry
            .connected(node, ConnectionInfo::direct(addr(5), now()))
            .unwrap();
        let mut events = registry.subscribe();
        registry.set_trust(node, TrustLevel::Blocked).unwrap();
        assert_eq!(
            events.try_recv().unwrap(),
            RegistryEvent::TrustChanged {
                node_id: node,
                trust: TrustLevel::Blocked
            }
        );
        assert!(matches!(
            events.try_recv().unwrap(),
            RegistryEvent::StateChanged {
                to: DeviceState::Disconnected {
                    reason: DisconnectReason::Blocked
                },
                ..
            }
        ));
        assert_eq!(
            registry.check_connection(&node).unwrap_err(),
            ConnectionRefused::Blocked
        );
    }
    let registry = device.registry();
    assert_eq!(
        registry.device(&node).unwrap().paired.unwrap().trust,
        TrustLevel::Blocked
    );
    let result = registry.connected(node, ConnectionInfo::direct(addr(5), now()));
    assert!(matches!(
        result,
        Err(RegistryError::Refused {
            reason: ConnectionRefused::Blocked,
            ..
        })
    ));
    registry.set_trust(node, TrustLevel::Trusted).unwrap();
    registry
        .connected(node, ConnectionInfo::direct(addr(5), now()))
        .unwrap();
}

#[test]
fn revocation_deletes_the_record_and_survives_a_restart() {
    let device = Device::new();
    let mut rng = rng(26);
    let pairing = sample_pairing(&mut rng, "lost phone");
    let node = pairing.node_id;
    let keep = sample_pairing(&mut rng, "kept laptop");
    let (removed, kept) = {
        let registry = device.registry();
        let removed = pair(&registry, pairing.clone());
        let kept = pair(&registry, keep);
        registry
            .connected(node, ConnectionInfo::direct(addr(6), now()))
            .unwrap();
        assert_eq!(registry.revoke(node).unwrap().info, removed.info);
        assert!(registry.device(&node).is_none());
        assert!(registry.device_by_id(&removed.info.device_id).is_none());
        assert!(matches!(
            registry.check_connection(&node),
            Err(ConnectionRefused::Revoked { .. })
        ));
        (removed, kept)
    };

    let registry = device.registry();
    assert!(registry.is_revoked(&node));
    assert!(registry.device(&node).is_none());
    assert_eq!(registry.paired_devices(), vec![kept]);
    assert!(matches!(
        registry.check_connection(&node),
        Err(ConnectionRefused::Revoked { .. })
    ));
    let result = registry.connected(node, ConnectionInfo::direct(addr(6), now()));
    assert!(matches!(
        result,
        Err(RegistryError::Refused {
            reason: ConnectionRefused::Revoked { .. },
            ..
        })
    ));
    assert!(matches!(
        registry.revoke(node),
        Err(RegistryError::NotPaired { .. })
    ));
    drop(registry);
    // The record (with the pairing secret) is gone from the file, and the revocation is in it.
    {
        let db = redb::Database::open(device.store_path()).unwrap();
        let txn = db.begin_read().unwrap();
        let devices: redb::TableDefinition<'_, &[u8], &[u8]> =
            redb::TableDefinition::new("paired_devices");
        let revoked: redb::TableDefinition<'_, &[u8], u64> =
            redb::TableDefinition::new("revoked_nodes");
        let key = node.as_bytes().as_slice();
        assert!(txn.open_table(devices).unwrap().get(key).unwrap().is_none());
        assert!(txn.open_table(revoked).unwrap().get(key).unwrap().is_some());
    }

    // Pairing again (with a new code from the user) lifts the revocation, durably.
    let registry = device.registry();
    let repaired = pair(&registry, pairing);
    assert_eq!(repaired.info, removed.info);
    drop(registry);
    let registry = device.registry();
    assert!(!registry.is_revoked(&node));
    assert!(registry.check_connection(&node).is_ok());
}

#[test]
fn rename_and_last_address_persist() {
    let device = Device::new();
    let pairing = sample_pairing(&mut rng(27), "old name");
    let node = pairing.node_id;
    {
        let registry = device.registry();
        pair(&registry, pairing);
        registry
            .rename(node, DeviceName::new("new name").unwrap())
            .unwrap();
        let mut connection = ConnectionInfo::direct(addr(7777), now());
        connection.relay_url = Some("https://relay.example.com/".to_owned());
        registry.connected(node, connection).unwrap();
    }
    let registry = device.registry();
    let paired = registry.device(&node).unwrap().paired.unwrap();
    assert_eq!(paired.info.device_name.as_str(), "new name");
    assert_eq!(paired.addresses[0], addr(7777));
    assert_eq!(paired.addresses.len(), 2);
    assert_eq!(
        paired.relay_url.as_deref(),
        Some("https://relay.example.com/")
    );
    assert!(matches!(
        registry.rename(stranger(4), DeviceName::new("x").unwrap()),
        Err(RegistryError::NotPaired { .. })
    ));
}

#[test]
fn a_devices_own_renames_apply_newest_first_until_renamed_here() {
    let device = Device::new();
    let pairing = sample_pairing(&mut rng(28), "old name");
    let node = pairing.node_id;
    let name = |s: &str| DeviceName::new(s).unwrap();
    {
        let registry = device.registry();
        pair(&registry, pairing);
        assert_eq!(
            registry.apply_own_rename(node, name("desk"), 20).unwrap(),
            Some(name("desk"))
        );
        // Older or equal stamps (a replay, a late update) change nothing.
        assert_eq!(
            registry.apply_own_rename(node, name("old"), 19).unwrap(),
            None
        );
        assert_eq!(
            registry.apply_own_rename(node, name("again"), 20).unwrap(),
            None
        );
        registry.told_name(node, 5).unwrap();
        registry.told_name(node, 3).unwrap();
    }
    // Durable, and the person's own rename here wins over the device's later ones.
    let registry = device.registry();
    let paired = registry.device(&node).unwrap().paired.unwrap();
    assert_eq!(paired.info.device_name.as_str(), "desk");
    assert_eq!(paired.names.changed_ms, 20);
    assert_eq!(paired.names.told_ms, 5);
    assert!(!paired.names.named_here);
    registry.rename(node, name("my desk")).unwrap();
    assert_eq!(
        registry.apply_own_rename(node, name("office"), 30).unwrap(),
        None
    );
    let paired = registry.device(&node).unwrap().paired.unwrap();
    assert_eq!(paired.info.device_name.as_str(), "my desk");
    assert_eq!(paired.names.changed_ms, 30);
    assert!(matches!(
        registry.apply_own_rename(stranger(5), name("x"), 1),
        Err(RegistryError::NotPaired { .. })
    ));
}

#[test]
fn the_auto_accept_mark_persists_and_goes_with_unpairing() {
    let device = Device::new();
    let pairing = sample_pairing(&mut rng(29), "laptop");
    let node = pairing.node_id;
    {
        let registry = device.registry();
        let paired = pair(&registry, pairing.clone());
        assert!(!paired.auto_accept, "a new pairing is not marked");
        registry.set_auto_accept(node, true).unwrap();
    }
    let registry = device.registry();
    assert!(registry.device(&node).unwrap().paired.unwrap().auto_accept);
    registry.set_auto_accept(node, false).unwrap();
    drop(registry);
    let registry = device.registry();
    assert!(!registry.device(&node).unwrap().paired.unwrap().auto_accept);

    // Unpaired and paired again, the device starts unmarked.
    registry.set_auto_accept(node, true).unwrap();
    registry.revoke(node).unwrap();
    assert!(matches!(
        registry.set_auto_accept(node, true),
        Err(RegistryError::NotPaired { .. })
    ));
    let repaired = pair(&registry, pairing);
    assert!(!repaired.auto_accept);
}

#[test]
fn a_storage_quota_is_counted_persistently_and_refuses_what_does_not_fit() {
    let device = Device::new();
    let pairing = sample_pairing(&mut rng(31), "phone");
    let node = pairing.node_id;
    let kib = 1024;
    {
        let registry = device.registry();
        pair(&registry, pairing.clone());
        // No quota of its own and no default: anything fits, and is counted.
        assert_eq!(
            registry.charge_storage(node, 600 * kib, None).unwrap(),
            Ok(())
        );
        registry.set_quota(node, Some(1024 * kib)).unwrap();
    }
    // After a restart the quota and the count are still there.
    let registry = device.registry();
    let paired = registry.device(&node).unwrap().paired.unwrap();
    assert_eq!(
        (paired.quota, paired.stored_bytes),
        (Some(1024 * kib), 600 * kib)
    );
    let refused = registry.charge_storage(node, 600 * kib, None).unwrap();
    assert_eq!(
        refused.map_err(|r| (r.quota, r.used)),
        Err((1024 * kib, 600 * kib))
    );
    assert_eq!(
        registry.charge_storage(node, 424 * kib, None).unwrap(),
        Ok(())
    );
    // The device's own quota wins over a larger default.
    assert!(
        registry
            .charge_storage(node, 1, Some(u64::MAX))
            .unwrap()
            .is_err()
    );
    registry.reset_stored_bytes(node).unwrap();
    assert_eq!(
        registry.charge_storage(node, 600 * kib, None).unwrap(),
        Ok(())
    );
    // Without its own quota, the default applies.
    registry.set_quota(node, None).unwrap();
    assert!(
        registry
            .charge_storage(node, 500 * kib, Some(1024 * kib))
            .unwrap()
            .is_err()
    );
    // Unpaired and paired again, it starts with no quota and nothing counted.
    registry.revoke(node).unwrap();
    assert!(registry.charge_storage(node, 1, None).is_err());
    let repaired = pair(&registry, pairing);
    assert_eq!((repaired.quota, repaired.stored_bytes), (None, 0));
}

#[test]
fn lookups_by_node_and_device_id() {
    let device = Device::new();
    let registry = device.registry();
    let mut rng = rng(28);
    let paired: Vec<_> = (0..10)
        .map(|i| pair(&registry, sample_pairing(&mut rng, &format!("d{i}"))))
        .collect();
    for device in &paired {
        assert_eq!(
            registry.device(&device.node_id).unwrap().paired.as_ref(),
            Some(device)
        );
        assert_eq!(
            registry
                .device_by_id(&device.info.device_id)
                .unwrap()
                .node_id,
            device.node_id
        );
    }
    assert!(registry.device(&stranger(5)).is_none());
    assert_eq!(registry.devices().len(), 10);
}

#[test]
fn readers_run_while_a_writer_pairs() {
    let device = Device::new();
    let registry = device.registry();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let registry = registry.clone();
            let done = done.clone();
            thread::spawn(move || {
                let mut last = 0;
                let mut reads = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let devices = registry.paired_devices();
                    assert!(devices.len() >= last, "a paired device disappeared");
                    last = devices.len();
                    for paired in &devices {
                        // A device listed as paired is fully there.
                        let view = registry.device(&paired.node_id).unwrap();
                        assert!(view.state.is_paired());
                        assert!(registry.check_connection(&paired.node_id).is_ok());
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let mut rng = rng(29);
    let nodes: Vec<NodeId> = (0..40)
        .map(|i| pair(&registry, sample_pairing(&mut rng, &format!("d{i}"))).node_id)
        .collect();
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
    assert_eq!(registry.paired_devices().len(), nodes.len());
}

#[test]
fn relay_urls_are_bounded() {
    let device = Device::new();
    let registry = device.registry();
    let pairing = sample_pairing(&mut rng(30), "peer").with_relay_url("");
    registry.begin_pairing(pairing.node_id, SESSION).unwrap();
    assert!(matches!(
        registry.complete_pairing(SESSION, pairing),
        Err(RegistryError::RelayUrl { .. })
    ));
}

#[test]
fn spoofed_discoveries_are_capped_and_lost_ones_forgotten() {
    let device = Device::new();
    let registry = device.registry();
    let mut rng = rng(77);
    let paired = pair(&registry, sample_pairing(&mut rng, "phone"));
    let first = stranger(1_000);
    registry.discovered(first, addr(1)).unwrap();
    // A flood of made-up endpoint ids: the registry keeps at most the cap.
    for seed in 0..(MAX_DISCOVERED as u64 + 500) {
        registry
            .discovered(stranger(2_000 + seed), addr(2))
            .unwrap();
    }
    let discovered = registry
        .devices()
        .iter()
        .filter(|d| matches!(d.state, DeviceState::Discovered { .. }))
        .count();
    assert_eq!(discovered, MAX_DISCOVERED);
    assert!(registry.device(&first).is_none(), "the oldest stayed");
    assert!(
        registry.device(&paired.node_id).is_some(),
        "a paired device was pushed out"
    );

    // Lost: forgotten; a paired device is never forgotten this way.
    let last = stranger(2_000 + MAX_DISCOVERED as u64 + 499);
    assert!(registry.forget_discovered(last));
    assert!(registry.device(&last).is_none());
    assert!(!registry.forget_discovered(paired.node_id));
    assert!(registry.device(&paired.node_id).is_some());
}
