//! `tether text DEVICE TEXT|-`: a short text to a paired device, done when the device has it.

use std::io::Read;

use anyhow::Result;
use serde_json::json;
use tether::limits::MAX_TEXT_LEN;
use tether::{ErrorChain, ErrorCode, NetworkError, NetworkingService};
use tokio_util::sync::CancellationToken;

use crate::context::resolve;
use crate::failure::{ERROR, Failure, offline};
use crate::output::Sink;

/// The text as given: the argument, or standard input for `-` (at most [`MAX_TEXT_LEN`]
/// bytes of UTF-8 either way; a longer one is refused before any node starts).
pub(crate) fn read_text(given: &str) -> Result<String, Failure> {
    let text = if given == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .take(MAX_TEXT_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| {
                Failure::usage(format!("cannot read the text from standard input: {error}"))
            })?;
        String::from_utf8(bytes).map_err(|_| {
            Failure::usage("standard input is not UTF-8 text; send a file with `tether send`")
        })?
    } else {
        given.to_owned()
    };
    if text.is_empty() {
        return Err(Failure::usage("nothing to send: the text is empty"));
    }
    if text.len() > MAX_TEXT_LEN {
        return Err(too_long());
    }
    Ok(text)
}

fn too_long() -> Failure {
    Failure::usage(format!(
        "the text is over {} KiB, the most a text may hold; send it as a file with `tether send`",
        MAX_TEXT_LEN >> 10
    ))
}

pub(super) async fn send(
    node: &NetworkingService,
    device: &str,
    text: String,
    sink: &Sink,
    cancel: &CancellationToken,
) -> Result<()> {
    let target = resolve(node, device)?;
    let len = text.len();
    let sent = tokio::select! {
        sent = node.send_text(target, text) => sent,
        () = cancel.cancelled() => return Err(Failure::interrupted("text not sent").into()),
    };
    match sent {
        Ok(()) => {
            sink.line(
                "text_sent",
                format!("{device} has the text ({len} bytes)"),
                json!({ "node_id": target.to_string(), "bytes": len }),
            );
            Ok(())
        }
        Err(NetworkError::TextTooLong { .. }) => Err(too_long().into()),
        Err(error @ NetworkError::Rejected { code, .. }) => {
            let why = match code {
                ErrorCode::UnknownMessage => {
                    "its Tether is too old to take texts; update it".to_owned()
                }
                ErrorCode::LimitExceeded => "it takes shorter texts only".to_owned(),
                _ => ErrorChain(&error).to_string(),
            };
            Err(Failure::new(ERROR, format!("{device} refused the text: {why}")).into())
        }
        Err(error) => Err(offline(device, error)),
    }
}
