//! The outbox in `secrets.redb`: entries sealed, oldest first, numbers never given twice,
//! bounded (one more is refused), kept across a reopen of the file, refused for a revoked
//! device, and added to a store of schema version 2 by the migration.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use crate::common;

use common::{Device, pair, rng, sample_pairing};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use tether_registry::{
    ConnectionRefused, DeviceRegistry, MAX_OUTBOX, MAX_OUTBOX_BODY, RegistryError, SCHEMA_VERSION,
};

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("tether_meta");
const OUTBOX: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("outbox");

fn bodies(registry: &DeviceRegistry) -> Vec<(u64, String)> {
    registry
        .outbox()
        .unwrap()
        .into_iter()
        .map(|entry| (entry.id, String::from_utf8(entry.body).unwrap()))
        .collect()
}

#[test]
fn entries_are_sealed_updated_removed_and_survive_a_reopen() {
    let device = Device::new();
    let (desk, phone) = {
        let registry = device.registry();
        let mut rng = rng(27);
        let desk = pair(&registry, sample_pairing(&mut rng, "desk")).node_id;
        let phone = pair(&registry, sample_pairing(&mut rng, "phone")).node_id;
        assert_eq!(registry.queue_outbox(desk, b"photos 1").unwrap(), 1);
        assert_eq!(registry.queue_outbox(phone, b"photos 2").unwrap(), 2);
        assert_eq!(registry.queue_outbox(desk, b"photos 3").unwrap(), 3);
        assert!(registry.update_outbox(1, desk, b"photos 1, tried").unwrap());
        assert!(registry.remove_outbox(3).unwrap());
        assert!(!registry.remove_outbox(3).unwrap(), "removed already");
        assert!(!registry.update_outbox(3, desk, b"gone").unwrap());
        (desk, phone)
    };
    // The same file opened again.
    let registry = device.registry();
    let entries = registry.outbox().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!((entries[0].id, entries[0].node_id), (1, desk));
    assert_eq!((entries[1].id, entries[1].node_id), (2, phone));
    assert_eq!(
        bodies(&registry),
        [
            (1, "photos 1, tried".to_owned()),
            (2, "photos 2".to_owned())
        ]
    );
    // The last number is not given again, although its entry is gone.
    assert_eq!(registry.queue_outbox(desk, b"photos 4").unwrap(), 4);
    // Nothing readable on disk: the bodies are sealed (the node id inside an entry too, see
    // the unit test; the paired devices' table has them as keys).
    drop(registry);
    let bytes = std::fs::read(device.store_path()).unwrap();
    assert!(!bytes.windows(6).any(|w| w == b"photos"));
    // An entry moved to another number no longer opens: the store is reported corrupt.
    {
        let db = redb::Database::open(device.store_path()).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(OUTBOX).unwrap();
            let value = table.get(1).unwrap().unwrap().value().to_vec();
            table.insert(9, value.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let error = device.registry().outbox().unwrap_err();
    assert!(error.to_string().contains("outbox entry 9"), "{error}");
}

#[test]
fn the_outbox_is_bounded_and_refuses_long_entries_and_revoked_devices() {
    let device = Device::new();
    let registry = device.registry();
    let mut rng = rng(28);
    let desk = pair(&registry, sample_pairing(&mut rng, "desk")).node_id;
    let error = registry
        .queue_outbox(desk, &vec![b'x'; MAX_OUTBOX_BODY + 1])
        .unwrap_err();
    assert!(
        matches!(error, RegistryError::OutboxEntryTooLong { .. }),
        "{error}"
    );
    for _ in 0..MAX_OUTBOX {
        registry.queue_outbox(desk, b"x").unwrap();
    }
    let error = registry.queue_outbox(desk, b"one more").unwrap_err();
    assert!(
        matches!(error, RegistryError::OutboxFull { max: MAX_OUTBOX }),
        "{error}"
    );
    assert_eq!(registry.outbox().unwrap().len(), MAX_OUTBOX);
    // Room again once one leaves.
    assert!(registry.remove_outbox(5).unwrap());
    registry.queue_outbox(desk, b"one more").unwrap();
    // A revoked device gets nothing queued; an unknown one neither.
    registry.revoke(desk).unwrap();
    let error = registry.queue_outbox(desk, b"x").unwrap_err();
    assert!(
        matches!(
            error,
            RegistryError::Refused {
                reason: ConnectionRefused::Revoked { .. },
                ..
            }
        ),
        "{error}"
    );
    let stranger = sample_pairing(&mut rng, "stranger").node_id;
    assert!(registry.queue_outbox(stranger, b"x").is_err());
}

#[test]
fn a_store_of_schema_version_2_gets_an_empty_outbox_and_keeps_its_history() {
    let device = Device::new();
    let paired = {
        let registry = device.registry();
        let paired = pair(&registry, sample_pairing(&mut rng(4), "desk"));
        registry.append_history(paired.node_id, b"sent").unwrap();
        paired
    };
    // What version 2 wrote: no outbox table, version 2.
    {
        let db = redb::Database::open(device.store_path()).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(OUTBOX).unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", 2)
            .unwrap();
        txn.commit().unwrap();
    }
    let registry = device.registry();
    assert_eq!(registry.paired_devices(), std::slice::from_ref(&paired));
    assert_eq!(registry.history(None, 10).unwrap().len(), 1);
    assert!(registry.outbox().unwrap().is_empty());
    assert_eq!(registry.queue_outbox(paired.node_id, b"first").unwrap(), 1);
    drop(registry);
    let db = redb::Database::open(device.store_path()).unwrap();
    let txn = db.begin_read().unwrap();
    let version = txn.open_table(META).unwrap().get("schema_version").unwrap();
    assert_eq!(version.unwrap().value(), SCHEMA_VERSION);
}
