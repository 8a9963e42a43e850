//! The transfer history in `secrets.redb`: newest first, filtered by device, bounded (the
//! oldest entries dropped on insert), kept across a restart, and added to a store of schema
//! version 1 by the migration.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use crate::common;

use common::{Device, pair, rng, sample_pairing};
use redb::{ReadableDatabase, TableDefinition};
use tether_identity::NodeId;
use tether_registry::{DeviceRegistry, MAX_HISTORY_BODY, RegistryError, SCHEMA_VERSION};

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("tether_meta");
const HISTORY: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("transfer_history");

fn two_nodes() -> (NodeId, NodeId) {
    let mut rng = rng(21);
    (
        sample_pairing(&mut rng, "a").node_id,
        sample_pairing(&mut rng, "b").node_id,
    )
}

fn bodies(registry: &DeviceRegistry, node: Option<NodeId>, limit: usize) -> Vec<(u64, String)> {
    registry
        .history(node, limit)
        .unwrap()
        .into_iter()
        .map(|entry| (entry.id, String::from_utf8(entry.body).unwrap()))
        .collect()
}

#[test]
fn the_newest_entries_are_kept_up_to_the_cap_and_survive_a_restart() {
    let device = Device::new();
    let (a, b) = two_nodes();
    {
        let registry = device.registry();
        registry.set_history_cap(3);
        for (i, node) in [a, b, a, b, a].into_iter().enumerate() {
            let id = registry
                .append_history(node, format!("photos {i}").as_bytes())
                .unwrap();
            assert_eq!(id, i as u64 + 1);
        }
        // The two oldest were dropped as the fourth and fifth came.
        assert_eq!(
            bodies(&registry, None, 10),
            [
                (5, "photos 4".to_owned()),
                (4, "photos 3".to_owned()),
                (3, "photos 2".to_owned())
            ]
        );
        assert_eq!(
            bodies(&registry, Some(a), 10),
            [(5, "photos 4".to_owned()), (3, "photos 2".to_owned())]
        );
        assert_eq!(bodies(&registry, Some(b), 1), [(4, "photos 3".to_owned())]);
        assert_eq!(bodies(&registry, None, 0), []);
    }
    // The same file opened again: the entries, and numbering goes on after the newest.
    let registry = device.registry();
    assert_eq!(
        bodies(&registry, None, 10)
            .into_iter()
            .map(|(id, _)| id)
            .collect::<Vec<_>>(),
        [5, 4, 3]
    );
    assert_eq!(registry.append_history(b, b"after").unwrap(), 6);
    assert_eq!(registry.history(None, 10).unwrap().len(), 4);
    // Nothing readable on disk: the body and the node id are sealed.
    drop(registry);
    let bytes = std::fs::read(device.store_path()).unwrap();
    assert!(!bytes.windows(6).any(|w| w == b"photos"));
    assert!(!bytes.windows(32).any(|w| w == a.as_bytes()));
}

#[test]
fn an_entry_longer_than_the_bound_is_refused() {
    let device = Device::new();
    let registry = device.registry();
    let (a, _) = two_nodes();
    let error = registry
        .append_history(a, &vec![b'x'; MAX_HISTORY_BODY + 1])
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::HistoryEntryTooLong { .. }),
        "{error}"
    );
    registry
        .append_history(a, &vec![b'x'; MAX_HISTORY_BODY])
        .unwrap();
    assert_eq!(registry.history(Some(a), 5).unwrap().len(), 1);
}

#[test]
fn a_store_of_schema_version_1_gets_an_empty_history_and_keeps_its_devices() {
    let device = Device::new();
    let paired = {
        let registry = device.registry();
        let mut rng = rng(4);
        pair(&registry, sample_pairing(&mut rng, "desk"))
    };
    // What version 1 wrote: no history table, version 1.
    {
        let db = redb::Database::open(device.store_path()).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(HISTORY).unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let registry = device.registry();
    assert_eq!(registry.paired_devices(), std::slice::from_ref(&paired));
    assert!(registry.history(None, 10).unwrap().is_empty());
    registry.append_history(paired.node_id, b"first").unwrap();
    drop(registry);
    let db = redb::Database::open(device.store_path()).unwrap();
    let txn = db.begin_read().unwrap();
    let version = txn.open_table(META).unwrap().get("schema_version").unwrap();
    assert_eq!(version.unwrap().value(), SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 3);
}
