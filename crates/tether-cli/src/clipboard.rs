//! `tether up --clipboard`: received texts also go on this machine's clipboard.
//!
//! arboard holds the clipboard on a thread of its own for as long as the node runs: on X11 the
//! process that set the clipboard is the one that hands its contents to whoever pastes, so it
//! must stay (the running node does).

use std::sync::mpsc;

use tracing::warn;

/// Texts waiting for the clipboard thread; a text that finds the queue full is shown but not
/// put on the clipboard (a peer sending texts faster than the clipboard takes them).
const QUEUE: usize = 4;

/// The clipboard, served by a thread of its own.
#[derive(Debug)]
pub(crate) struct Clipboard {
    texts: mpsc::SyncSender<String>,
}

impl Clipboard {
    /// Opens this machine's clipboard, or says why there is none here.
    pub(crate) fn open() -> Result<Self, String> {
        if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
            return Err("no display (DISPLAY and WAYLAND_DISPLAY are unset)".to_owned());
        }
        let (ready, opened) = mpsc::channel();
        let (texts, queued) = mpsc::sync_channel::<String>(QUEUE);
        std::thread::Builder::new()
            .name("clipboard".to_owned())
            .spawn(move || serve(&ready, &queued))
            .map_err(|error| format!("cannot start the clipboard thread: {error}"))?;
        match opened.recv() {
            Ok(Ok(())) => Ok(Self { texts }),
            Ok(Err(reason)) => Err(reason),
            Err(_) => Err("the clipboard thread ended".to_owned()),
        }
    }

    /// Puts `text` on the clipboard (on the clipboard's thread); `false` when it is behind.
    pub(crate) fn set(&self, text: &str) -> bool {
        self.texts.try_send(text.to_owned()).is_ok()
    }
}

/// The clipboard thread: opens the clipboard, says whether it could, then sets each text; it
/// ends (and the clipboard with it) when the node drops its [`Clipboard`].
fn serve(ready: &mpsc::Sender<Result<(), String>>, queued: &mpsc::Receiver<String>) {
    let mut clipboard = match arboard::Clipboard::new() {
        Ok(clipboard) => clipboard,
        Err(error) => {
            let _ = ready.send(Err(format!("the clipboard cannot be opened: {error}")));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    while let Ok(text) = queued.recv() {
        if let Err(error) = clipboard.set_text(text) {
            warn!(%error, "cannot put a received text on the clipboard");
        }
    }
}
