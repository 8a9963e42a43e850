//! The per-transfer cipher: a whole encrypted transfer under each cipher (TCP on 127.0.0.1),
//! the receiver's choice, a receiver that accepts none of the offered ciphers, hostile cipher
//! lists in an offer, and an answer naming a cipher that was not offered.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs,
    clippy::panic
)]

use crate::common;

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use common::{Setup, listen, random_file, send_to, serve_one, transfer, tree_hashes};
use serde_json::{Value, json};
use tether_transfer::{
    CHUNK_SIZE, CipherError, OutgoingTransfer, PeerError, Receiver, RunContext, SendOptions,
    TransferCipher, TransferError,
};
use tether_wire::{Frame, FrameKind, read_frame, write_frame};
use tokio::net::TcpStream;
use uuid::Uuid;

fn control(value: &Value) -> Frame {
    Frame::new(FrameKind::Control, serde_json::to_vec(value).unwrap()).unwrap()
}

/// A file of three and a bit chunks under `cipher`, over two lanes: the report names the
/// cipher on both sides and the bytes arrive intact.
async fn round_trip_under(cipher: TransferCipher) {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let root = src.path().join("share");
    fs::create_dir_all(&root).unwrap();
    random_file(&root.join("blob.bin"), 3 * (256 << 10) + 4321, 11);
    fs::write(root.join("small.txt"), b"small").unwrap();
    let setup = Setup {
        key_seed: Some(21),
        lanes: 2,
        cipher: Some(cipher),
        ..Setup::default()
    };
    let (sent, received) = transfer(&root, dest.path(), &setup).await;
    let sent = sent.unwrap();
    let received = received.unwrap();
    assert_eq!(tree_hashes(&root), tree_hashes(&dest.path().join("share")));
    assert_eq!(sent.cipher, Some(cipher));
    assert_eq!(received.cipher, Some(cipher));
    assert_eq!(received.bytes_verified, sent.bytes_total);
    let json = serde_json::to_value(&received).unwrap();
    assert_eq!(json["cipher"], json!(cipher.name()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_under_aes_256_gcm() {
    round_trip_under(TransferCipher::Aes256Gcm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_under_chacha20_poly1305() {
    round_trip_under(TransferCipher::ChaCha20Poly1305).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_choice_follows_this_cpu_and_plain_has_none() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("a.bin");
    random_file(&file, 100_000, 3);
    for key_seed in [Some(22), None] {
        let dest = tempfile::tempdir().unwrap();
        let setup = Setup {
            key_seed,
            ..Setup::default()
        };
        let (sent, received) = transfer(&file, dest.path(), &setup).await;
        let sent = sent.unwrap();
        let received = received.unwrap();
        let expected = key_seed.map(|_| {
            if TransferCipher::aes_hardware() {
                TransferCipher::Aes256Gcm
            } else {
                TransferCipher::ChaCha20Poly1305
            }
        });
        assert_eq!((sent.cipher, received.cipher), (expected, expected));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cipher_in_common_is_declined_before_any_data() {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let file = src.path().join("a.bin");
    random_file(&file, 100_000, 4);
    let setup = Setup {
        key_seed: Some(23),
        cipher: Some(TransferCipher::Aes256Gcm),
        ..Setup::default()
    };
    let (listener, port) = listen().await;
    let config = setup
        .receiver_config(dest.path())
        .ciphers([TransferCipher::ChaCha20Poly1305]);
    let server = tokio::spawn(serve_one(
        listener,
        Receiver::new(config),
        setup.clone(),
        Arc::new(|_| {}),
    ));
    let sent = send_to(port, &file, &setup).await;
    assert!(
        matches!(sent, Err(TransferError::Peer(PeerError::Declined { .. }))),
        "{sent:?}"
    );
    let received = server.await.unwrap();
    assert!(
        matches!(
            received,
            Err(TransferError::Peer(PeerError::Cipher(
                CipherError::NoneInCommon
            )))
        ),
        "{received:?}"
    );
    assert_eq!(fs::read_dir(dest.path()).unwrap().count(), 0);
}

fn encrypted_offer(ciphers: Value) -> Frame {
    let mut body = json!({
        "version": 3, "transfer_id": Uuid::from_u128(77), "entries": 1,
        "total_bytes": 5, "chunk_size": CHUNK_SIZE, "compression": "none",
        "encrypted": true, "lanes": 1
    });
    if !ciphers.is_null() {
        body["ciphers"] = ciphers;
    }
    control(&json!({"type": "Offer", "body": body}))
}

/// A hostile sender's offer: the receiver answers `Decline` and fails with the cipher error.
async fn refused_offer(ciphers: Value) -> (TransferError, Value) {
    let dest = tempfile::tempdir().unwrap();
    let setup = Setup {
        key_seed: Some(24),
        ..Setup::default()
    };
    let (listener, port) = listen().await;
    let receiver = Receiver::new(setup.receiver_config(dest.path()));
    let server = tokio::spawn(serve_one(listener, receiver, setup, Arc::new(|_| {})));
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    write_frame(&mut stream, &encrypted_offer(ciphers))
        .await
        .unwrap();
    let entry = json!({"id": Uuid::from_u128(1), "path": "f.txt", "kind": "file", "size": 5,
        "mtime_ns": 1, "hash": blake3::hash(b"hello").to_hex().to_string()});
    // The receiver may refuse before reading the manifest; a failed write is fine then.
    let manifest = control(&json!({"type": "Manifest", "body": {"entries": [entry]}}));
    let _ = write_frame(&mut stream, &manifest).await;
    let reply = read_frame(&mut stream).await.unwrap().unwrap();
    let reply: Value = serde_json::from_slice(reply.payload()).unwrap();
    let error = server.await.unwrap().unwrap_err();
    assert_eq!(fs::read_dir(dest.path()).unwrap().count(), 0);
    (error, reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_cipher_lists_are_refused() {
    let cases = [
        (Value::Null, CipherError::Empty),
        (json!([]), CipherError::Empty),
        (json!([9]), CipherError::Unknown(9)),
        (
            json!([2, 2]),
            CipherError::Duplicate(TransferCipher::Aes256Gcm),
        ),
        (
            json!(vec![1; 100_000]),
            CipherError::TooMany { len: 100_000 },
        ),
    ];
    for (ciphers, expected) in cases {
        let (error, reply) = refused_offer(ciphers.clone()).await;
        match error {
            TransferError::Peer(PeerError::Cipher(found)) => assert_eq!(found, expected),
            other => panic!("{ciphers}: {other:?}"),
        }
        assert_eq!(reply["type"], "Decline", "{reply}");
        assert_eq!(reply["body"]["code"], "refused", "{reply}");
    }
}

/// A receiver that answers with a cipher the sender did not offer: the sender aborts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_naming_an_unoffered_cipher_is_a_protocol_error() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("a.bin");
    random_file(&file, 10_000, 5);
    let id = Uuid::from_u128(1);
    let resolver: HashMap<Uuid, PathBuf> = [(id, file)].into();
    for answer in [json!({"cipher": 1}), json!({"cipher": 200}), json!({})] {
        let options = SendOptions::default().ciphers([TransferCipher::Aes256Gcm]);
        let outgoing = OutgoingTransfer::prepare(&resolver, &[id], options)
            .await
            .unwrap();
        let secret = common::transfer_keys(25, true, outgoing.transfer_id());
        let (listener, port) = listen().await;
        let sender = tokio::spawn(async move {
            let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            outgoing
                .send(stream, Vec::new(), RunContext::new().keys(secret))
                .await
        });
        let (mut stream, _) = listener.accept().await.unwrap();
        let offer = read_frame(&mut stream).await.unwrap().unwrap();
        let offer: Value = serde_json::from_slice(offer.payload()).unwrap();
        assert_eq!(offer["body"]["ciphers"], json!([2]));
        assert_eq!(offer["body"]["version"], json!(3));
        let _manifest = read_frame(&mut stream).await.unwrap().unwrap();
        let accept = json!({"type": "Accept", "body": answer});
        write_frame(&mut stream, &control(&accept)).await.unwrap();
        let result = sender.await.unwrap();
        let expected = match answer["cipher"].as_u64() {
            Some(id) => CipherError::NotOffered(id),
            None => CipherError::Mismatch,
        };
        match result {
            Err(TransferError::Peer(PeerError::Cipher(found))) => assert_eq!(found, expected),
            other => panic!("{answer}: {other:?}"),
        }
        // The sender tells the receiver why, and sends no data.
        let mut saw_abort = false;
        while let Ok(Some(frame)) = read_frame(&mut stream).await {
            assert_eq!(frame.kind(), FrameKind::Control);
            let message: Value = serde_json::from_slice(frame.payload()).unwrap();
            saw_abort |= message["type"] == "Abort" && message["body"]["code"] == "protocol";
        }
        assert!(saw_abort);
    }
}
