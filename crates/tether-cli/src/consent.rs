//! `tether up`'s consent: who may put files in the receive directory.
//!
//! An offer from a device the person marked (`tether trust DEVICE --auto-accept`, kept in the
//! registry) or named with `tether up --accept-from DEVICE` is accepted without asking. Any
//! other is put to the person on the terminal (device, file count, size, top-level names)
//! with a y/N question that defaults to no after [`ASK_TIMEOUT`]. Without a terminal on
//! standard input it is declined, with a reason the sender's CLI prints. One question at a
//! time: offers arriving meanwhile wait their turn.

use std::fmt;
use std::future::Future;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

use tether::{Decision, NetworkingService, TransferConsent, TransferOffer};
use tokio::sync::mpsc;

use crate::context::resolve;
use crate::progress::bytes;

/// How long a question waits for an answer before it counts as no.
pub(crate) const ASK_TIMEOUT: Duration = Duration::from_secs(60);

/// The most top-level names a question lists.
const SHOWN_NAMES: usize = 5;

/// The consent of a `tether up` node.
pub(crate) struct TerminalConsent {
    /// `--accept-from` as typed; each is resolved like any device argument when an offer comes
    /// (the device may pair after `up` started).
    accept_from: Vec<String>,
    /// The node, to resolve `accept_from` (set once it has started).
    node: OnceLock<NetworkingService>,
    receive_dir: PathBuf,
    /// Whether standard input is a terminal to ask on.
    interactive: bool,
    /// Lines typed on standard input (read by a thread started with the first question); the
    /// lock makes questions take turns.
    answers: tokio::sync::Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

impl fmt::Debug for TerminalConsent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TerminalConsent")
            .field("accept_from", &self.accept_from)
            .field("interactive", &self.interactive)
            .finish_non_exhaustive()
    }
}

impl TerminalConsent {
    pub(crate) fn new(accept_from: Vec<String>, receive_dir: PathBuf) -> Self {
        Self {
            accept_from,
            node: OnceLock::new(),
            receive_dir,
            interactive: std::io::stdin().is_terminal(),
            answers: tokio::sync::Mutex::new(None),
        }
    }

    /// Lets `--accept-from` be resolved against the node's paired devices.
    pub(crate) fn attach(&self, node: NetworkingService) {
        let _ = self.node.set(node);
    }

    fn named_on_command_line(&self, offer: &TransferOffer) -> bool {
        let Some(node) = self.node.get() else {
            return false;
        };
        self.accept_from
            .iter()
            .any(|wanted| resolve(node, wanted).is_ok_and(|id| id == offer.node_id))
    }

    async fn ask(&self, offer: &TransferOffer) -> Decision {
        let name = shown(offer.device_name.as_str());
        if !self.interactive {
            tracing::info!(device = %name, "declined a transfer: not marked, no terminal to ask");
            // Short: the sender's CLI shows about 120 characters of it.
            return Decision::Decline(format!(
                "nobody to ask (no terminal); to allow it: `tether trust {} --auto-accept` there",
                offer.device_name
            ));
        }
        let mut answers = self.answers.lock().await;
        let lines = answers.get_or_insert_with(read_stdin);
        // What was typed before the question is no answer to it.
        while lines.try_recv().is_ok() {}
        let mut names: Vec<String> = offer
            .top_level
            .iter()
            .take(SHOWN_NAMES)
            .map(|n| shown(n))
            .collect();
        if offer.top_level.len() > SHOWN_NAMES {
            names.push(format!("and {} more", offer.top_level.len() - SHOWN_NAMES));
        }
        {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(
                stderr,
                "\n\"{name}\" (node {}) offers {} file(s), {}: {}\nReceive into {}? [y/N] \
             (no after {} s) ",
                offer.node_id.fmt_short(),
                offer.files,
                bytes(offer.total_bytes),
                names.join(", "),
                self.receive_dir.display(),
                ASK_TIMEOUT.as_secs()
            );
            let _ = stderr.flush();
        }
        let answer = tokio::time::timeout(ASK_TIMEOUT, lines.recv()).await;
        let decision = match answer {
            Ok(Some(line)) if matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes") => {
                Decision::Accept
            }
            Ok(Some(_)) => Decision::Decline("the person at the receiving device said no".into()),
            Ok(None) => Decision::Decline("nobody can be asked on the receiving device".into()),
            Err(_) => Decision::Decline(format!(
                "nobody answered on the receiving device within {} s",
                ASK_TIMEOUT.as_secs()
            )),
        };
        let verdict = match decision {
            Decision::Accept => "accepted\n",
            _ => "declined\n",
        };
        let _ = std::io::stderr().write_all(verdict.as_bytes());
        decision
    }
}

impl TransferConsent for TerminalConsent {
    fn decide<'a>(
        &'a self,
        offer: &'a TransferOffer,
    ) -> Pin<Box<dyn Future<Output = Decision> + Send + 'a>> {
        Box::pin(async move {
            if offer.auto_accept || self.named_on_command_line(offer) {
                return Decision::Accept;
            }
            self.ask(offer).await
        })
    }
}

/// A thread that hands each line of standard input to the questions.
fn read_stdin() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Peer-chosen text made safe for a terminal: control characters escaped.
fn shown(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(shown("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\u{a}");
        assert_eq!(shown("Fotos 2026"), "Fotos 2026");
    }
}
