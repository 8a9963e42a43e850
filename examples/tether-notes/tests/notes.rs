//! The notes protocol end to end: two real local-only services (127.0.0.1, no relays, no
//! mDNS) paired by word code through a discovery directory of the test's own.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::time::Duration;

use tether::{DeviceName, NetworkError, NetworkingConfig, NetworkingService};
use tether_example_notes::{MAX_NOTE_LEN, NotesClient, NotesError, NotesServer};

struct Lab {
    root: tempfile::TempDir,
}

impl Lab {
    fn new() -> Self {
        Self {
            root: tempfile::tempdir().unwrap(),
        }
    }

    async fn start(&self, name: &str) -> NetworkingService {
        let config = NetworkingConfig::local_only(self.root.path().join(name))
            .with_device_name(DeviceName::new(name).unwrap())
            .with_loopback_discovery(self.root.path().join("discovery"))
            .with_insecure_key_file();
        NetworkingService::start(config).await.unwrap()
    }
}

async fn pair(initiator: &NetworkingService, joiner: &NetworkingService) {
    let mut invite = initiator.start_pairing_as_initiator().unwrap();
    let joined = joiner.join_pairing(&invite.code).await.unwrap();
    let accepted = tokio::time::timeout(Duration::from_secs(10), invite.paired())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(joined.verification_code, accepted.verification_code);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paired_device_leaves_notes_and_reads_them_back() {
    let lab = Lab::new();
    let laptop = lab.start("laptop").await;
    let phone = lab.start("phone").await;
    pair(&laptop, &phone).await;
    let notes = NotesServer::default();
    laptop.register_protocol(notes.clone()).unwrap();

    let client = NotesClient::connect(&phone, laptop.node_id())
        .await
        .unwrap();
    let first = client.add("buy milk").await.unwrap();
    assert_eq!(first.count, 1);
    assert_eq!(first.hash, *blake3::hash(b"buy milk").as_bytes());
    let second = client.add("call grandma ☎").await.unwrap();
    assert_eq!(second.count, 2);
    assert_eq!(client.list().await.unwrap(), ["buy milk", "call grandma ☎"]);
    // The server filed them under the phone's authenticated key.
    assert_eq!(
        notes.notes_from(&phone.node_id()),
        ["buy milk", "call grandma ☎"]
    );
    assert_eq!(notes.total(), 2);

    // The server checks what it is sent, whatever the client does.
    let refused = client.request(&[0x01, 0xff, 0xfe]).await;
    assert!(
        matches!(refused, Err(NotesError::Refused(_))),
        "{refused:?}"
    );
    let refused = client.request(&[0x7f]).await;
    assert!(
        matches!(refused, Err(NotesError::Refused(_))),
        "{refused:?}"
    );
    let too_long = "x".repeat(MAX_NOTE_LEN + 1);
    assert!(matches!(
        client.add(&too_long).await,
        Err(NotesError::TooLong)
    ));
    assert_eq!(notes.total(), 2);

    client.close();
    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_that_are_not_paired_leave_no_notes() {
    let lab = Lab::new();
    let laptop = lab.start("laptop").await;
    let phone = lab.start("phone").await;
    let stranger = lab.start("stranger").await;
    pair(&laptop, &phone).await;
    let notes = NotesServer::default();
    laptop.register_protocol(notes.clone()).unwrap();

    // Never paired: the stranger's own service will not even dial.
    let refused = NotesClient::connect(&stranger, laptop.node_id()).await;
    assert!(
        matches!(
            refused,
            Err(NotesError::Network(NetworkError::DeviceNotPaired(_)))
        ),
        "{refused:?}"
    );

    // Paired, then unpaired on the laptop: the laptop's gate closes the connection before
    // the notes handler runs.
    laptop.unpair(phone.node_id()).unwrap();
    let outcome = match NotesClient::connect(&phone, laptop.node_id()).await {
        Ok(client) => client.add("let me in").await.map(drop),
        Err(error) => Err(error),
    };
    match outcome {
        Err(NotesError::Network(NetworkError::Refused { code, .. })) => {
            assert_eq!(code, tether::gate::CLOSE_REVOKED);
        }
        other => panic!("the unpaired phone was not refused: {other:?}"),
    }
    assert_eq!(notes.total(), 0);

    laptop.shutdown().await;
    phone.shutdown().await;
    stranger.shutdown().await;
}
