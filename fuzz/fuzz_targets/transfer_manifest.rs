//! Arbitrary bytes as everything a hostile sender writes to a tether-transfer receiver.
//!
//! Input: one mode byte, then the stream. Mode bit 0 clear: the receiver's consent declines, so
//! the run covers the hello, the offer checks, manifest paging, path and limit checks and the
//! destination survey, and never writes. Bit 0 set: the receiver accepts into a scratch
//! directory with small limits (32 entries, 1 MiB), so the run also covers chunk hashes,
//! resume planning, requests and data frames (decoding, decompression, verification, writes);
//! the scratch directory is emptied after each run. An encrypted offer gets the transfer secret
//! of a fixed test session (the responder's side of `SessionSecrets::danger_pair_from_seed`
//! with [`SESSION_SEED`]), so the cipher list is checked and, for the recorded seeds, which
//! were sealed with the initiator's side, the sealed chunks open.
//!
//! Checks: no panic, the run ends when the stream does (no hang), and a declined offer leaves the
//! destination empty.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tether_crypto::{Role, SessionSecrets};
use tether_identity::{NetworkIdentity, NodeId};
use tether_transfer::{AcceptAll, DeclineAll, Hello, Limits, Receiver, ReceiverConfig, RunContext};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tether-fuzz-transfer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    })
}

/// The fixed session of the encrypted seeds (crates/tether-transfer/tests/fuzz_seeds.rs).
const SESSION_SEED: u64 = 0xf022;

fn peer() -> NodeId {
    static PEER: OnceLock<NodeId> = OnceLock::new();
    *PEER.get_or_init(|| NetworkIdentity::generate(&mut ChaCha20Rng::seed_from_u64(1)).node_id())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let accept = mode & 1 == 1;
    let dest = scratch();
    let limits = Limits::default()
        .max_entries(32)
        .max_total_bytes(1 << 20)
        .max_manifest_bytes(1 << 20);
    let config = ReceiverConfig::new(dest).limits(limits).check_free_space(false);
    let config = if accept {
        config.consent(AcceptAll)
    } else {
        config.consent(DeclineAll)
    };
    let receiver = Receiver::new(config);
    let input = tokio::io::join(std::io::Cursor::new(stream.to_vec()), tokio::io::sink());
    runtime().block_on(async {
        let run = async {
            match tether_transfer::read_hello(input).await {
                Ok(Hello::Offer(offer)) => {
                    let mut ctx = RunContext::new();
                    if offer.encrypted() {
                        let [_, responder] = SessionSecrets::danger_pair_from_seed(SESSION_SEED)
                            .expect("test session");
                        let mut keys = responder.into_session_keys(Role::Responder);
                        if let Ok(secret) = keys.transfer_secret(offer.transfer_id().as_bytes()) {
                            ctx = ctx.keys(secret);
                        }
                    }
                    let _ = receiver.receive(offer, peer(), ctx).await;
                }
                Ok(Hello::Lane(lane)) => assert!(receiver.attach(lane, peer()).is_err()),
                Ok(_) | Err(_) => {}
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(20), run)
            .await
            .expect("the receiver must end when its stream does");
    });
    if !accept {
        let written = std::fs::read_dir(dest).map(|d| d.count()).unwrap_or(0);
        assert_eq!(written, 0, "a declined offer wrote to the destination");
    }
    let _ = std::fs::remove_dir_all(dest);
    let _ = std::fs::create_dir_all(dest);
});
