//! `TransportConfig::quic` reaches the endpoint: the receiver's windows are the credit a
//! sender gets, seen by writing to a stream the receiver never reads until a write blocks.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use n0_future::future::now_or_never;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tether_identity::NetworkIdentity;
use tether_iroh::{AdmitAll, QuicTuning, Transport, TransportConfig};

const ALPN: &[u8] = b"tether-test/tuning/1";

async fn bind(seed: u64, quic: QuicTuning) -> Transport {
    let mut config = TransportConfig::local_only();
    config.quic = quic;
    Transport::bind(
        &NetworkIdentity::generate(&mut ChaCha20Rng::seed_from_u64(seed)),
        &config,
        vec![ALPN.to_vec()],
        Arc::new(AdmitAll),
    )
    .await
    .unwrap()
}

/// How many bytes a sender can put on one stream to a receiver tuned with `receiver`, which
/// accepts the connection and never reads: writes go on until flow control blocks one.
async fn credit_given_by(receiver: QuicTuning) -> usize {
    let server = bind(1, receiver).await;
    let client = bind(2, QuicTuning::default()).await;
    let server_ep = server.endpoint().clone();
    let accepted = tokio::spawn(async move {
        let conn = server_ep.accept().await.unwrap().await.unwrap();
        conn.closed().await;
    });
    let conn = client.connect(&server.addr(), ALPN).await.unwrap();
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let chunk = vec![7u8; 16 << 10];
    let mut written = 0;
    // A write with no credit left is pending (it waits for the receiver to read), never an error.
    while let Some(result) = now_or_never(send.write(&chunk)) {
        written += result.unwrap();
        assert!(
            written <= QuicTuning::MAX_WINDOW as usize,
            "no flow control?"
        );
    }
    conn.close(0u32.into(), b"done");
    accepted.await.unwrap();
    client.close().await;
    server.close().await;
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receivers_stream_window_is_the_senders_credit() {
    let tuning = QuicTuning::default().with_windows(64 << 10, 1 << 20, 1 << 20);
    assert_eq!(credit_given_by(tuning).await, 64 << 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_window_caps_a_stream_below_its_own_window() {
    let tuning = QuicTuning::default().with_windows(64 << 10, 32 << 10, 1 << 20);
    assert_eq!(credit_given_by(tuning).await, 32 << 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_windows_are_tethers_not_quinns() {
    let default = QuicTuning::default();
    assert_eq!(
        credit_given_by(default).await,
        default.stream_receive_window as usize
    );
    assert_eq!(
        credit_given_by(QuicTuning::quinn_defaults()).await,
        1_250_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_out_of_bounds_is_refused_at_bind() {
    let mut config = TransportConfig::local_only();
    config.quic = QuicTuning::default().with_windows(1024, 1 << 20, 1 << 20);
    let error = Transport::bind(
        &NetworkIdentity::generate(&mut ChaCha20Rng::seed_from_u64(3)),
        &config,
        vec![],
        Arc::new(AdmitAll),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error, tether_iroh::TransportError::InvalidTuning { .. }),
        "{error:?}"
    );
}
