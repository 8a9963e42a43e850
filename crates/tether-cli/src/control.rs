//! The control socket: how commands reach a running `tether up`.
//!
//! `DATA_DIR/control.sock` is a Unix socket in the 0700 data directory, itself mode 0600, so
//! only the same user can open it. A client writes one JSON request line and reads JSON reply
//! lines: the command's output lines, then `done` or `failed` with the exit code. A command
//! that must ask the person (`tether pair` without `--yes`) sends an `ask` reply; the client
//! asks on its own terminal and writes one `answer` line back. Closing its end (Ctrl-C, or the
//! client killed) stops the command, and a question still open counts as no; a send keeps what
//! the receiver verified.

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use tether::NetworkingService;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::commands::{self, Request};
use crate::context::NodeContext;
use crate::failure::{ERROR, Failure, exit_code};
use crate::output::{Line, Output, Report, Sink};
use crate::render::{Renderer, ask_here};

/// The socket's name in the data directory.
pub(crate) const SOCKET: &str = "control.sock";

/// The longest request line accepted.
const MAX_REQUEST: u64 = 1 << 20;

/// The longest line a client may send after its request (an answer).
const MAX_CLIENT_LINE: u64 = 1024;

/// One reply line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
enum Reply {
    Line(Line),
    /// A yes/no question for the person at the client's terminal; the client answers with one
    /// [`ClientLine::Answer`].
    Ask {
        question: String,
    },
    Done,
    Failed {
        code: u8,
        message: String,
    },
}

/// A line the client writes after its request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "client", rename_all = "snake_case")]
enum ClientLine {
    /// The answer to the open question: `true` for yes.
    Answer { yes: bool },
}

pub(crate) fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// The running node's control socket for `data_dir`, if a node answers there.
pub(crate) async fn connect(data_dir: &Path) -> Option<UnixStream> {
    UnixStream::connect(socket_path(data_dir)).await.ok()
}

/// Binds the control socket of `data_dir` for `tether up`: refuses when a live node holds it,
/// removes one left behind by a node that was killed.
pub(crate) fn bind(data_dir: &Path) -> Result<UnixListener> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", data_dir.display()))?;
    let path = socket_path(data_dir);
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        if !meta.file_type().is_socket() {
            return Err(anyhow!(
                "{} exists and is not a socket; move it away and start again",
                path.display()
            ));
        }
        match std::os::unix::net::UnixStream::connect(&path) {
            Ok(_) => {
                return Err(Failure::new(
                    ERROR,
                    format!(
                        "a node is already running for {}; stop it first, or use another --data-dir",
                        data_dir.display()
                    ),
                )
                .into());
            }
            Err(error) if error.kind() == ErrorKind::ConnectionRefused => {
                debug!(path = %path.display(), "removing a stale control socket");
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove the stale {}", path.display()))?;
            }
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            Err(error) => {
                return Err(anyhow!(
                    "cannot check {} ({error}); remove it if no node is running",
                    path.display()
                ));
            }
        }
    }
    let listener = UnixListener::bind(&path).with_context(|| {
        format!(
            "cannot listen on {} (a path must be under 108 bytes)",
            path.display()
        )
    })?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    Ok(listener)
}

/// Serves one client of the control socket.
pub(crate) async fn serve(stream: UnixStream, node: NetworkingService, context: NodeContext) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut first = String::new();
    let request = match (&mut reader).take(MAX_REQUEST).read_line(&mut first).await {
        Ok(_) => serde_json::from_str::<Request>(&first)
            .map_err(|error| format!("a request this node does not understand: {error}")),
        Err(error) => Err(format!("cannot read the request: {error}")),
    };
    let request = match request {
        Ok(request) => request,
        Err(message) => {
            let _ = write_reply(&mut write, &Reply::Failed { code: 2, message }).await;
            return;
        }
    };
    // The command's name only: a request may carry a pairing code.
    debug!(command = request.name(), "control request");
    let cancel = CancellationToken::new();
    // The client's answers (one at a time: a client that floods them is simply not read); its
    // closing its end (Ctrl-C, or killed) stops the command.
    let (answers, mut answered) = mpsc::channel(1);
    let watcher = tokio::spawn(read_client(reader, answers, cancel.clone()));
    let (sink, mut reports) = Sink::channel();
    let work = commands::execute(&node, request, &sink, &cancel, &context);
    tokio::pin!(work);
    // The open question's answer goes here; a new question or the end drops it (a no).
    let mut open: Option<oneshot::Sender<bool>> = None;
    let result = loop {
        tokio::select! {
            Some(report) = reports.recv() => {
                let reply = match report {
                    Report::Line(line) => Reply::Line(line),
                    Report::Ask(question) => {
                        open = Some(question.answer);
                        Reply::Ask { question: question.text }
                    }
                };
                if write_reply(&mut write, &reply).await.is_err() {
                    cancel.cancel();
                }
            }
            Some(yes) = answered.recv() => {
                if let Some(answer) = open.take() {
                    let _ = answer.send(yes);
                }
            }
            result = &mut work => break result,
        }
    };
    drop(open);
    while let Ok(report) = reports.try_recv() {
        if let Report::Line(line) = report {
            let _ = write_reply(&mut write, &Reply::Line(line)).await;
        }
    }
    let reply = match result {
        Ok(()) => Reply::Done,
        Err(error) => Reply::Failed {
            code: exit_code(&error),
            message: format!("{error:#}"),
        },
    };
    if let Err(error) = write_reply(&mut write, &reply).await {
        warn!(%error, "the control client left before the reply");
    }
    watcher.abort();
}

/// Reads the client's lines after its request: each answer goes to `answers`. The client
/// closing its end, or a line that is too long or not an answer, cancels the command.
async fn read_client(
    mut reader: BufReader<OwnedReadHalf>,
    answers: mpsc::Sender<bool>,
    cancel: CancellationToken,
) {
    let mut line = String::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_CLIENT_LINE)
            .read_line(&mut line)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => match serde_json::from_str::<ClientLine>(&line) {
                Ok(ClientLine::Answer { yes }) => {
                    if answers.send(yes).await.is_err() {
                        break;
                    }
                }
                Err(error) => {
                    warn!(%error, "the control client sent a line that is not an answer");
                    break;
                }
            },
        }
    }
    cancel.cancel();
}

async fn write_reply(write: &mut (impl AsyncWriteExt + Unpin), reply: &Reply) -> Result<()> {
    let mut line = serde_json::to_vec(reply)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    Ok(())
}

/// The answer typed into `typing`, once it is typed (then `typing` is emptied); pending
/// forever while no question is open.
async fn answer_of(typing: &mut Option<oneshot::Receiver<bool>>) -> Option<bool> {
    match typing {
        Some(answered) => {
            let yes = answered.await.unwrap_or(false);
            *typing = None;
            Some(yes)
        }
        None => std::future::pending().await,
    }
}

/// Sends `request` to the running node and shows its replies; Ctrl-C stops the command there.
pub(crate) async fn request(stream: UnixStream, request: &Request, out: Output) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    write
        .write_all(&line)
        .await
        .context("cannot talk to the running node")?;
    let mut lines = BufReader::new(read).lines();
    let mut view = Renderer::new(out);
    let mut interrupted = false;
    // The answer being typed to the node's open question, if any.
    let mut typing: Option<oneshot::Receiver<bool>> = None;
    let result = loop {
        tokio::select! {
            next = lines.next_line() => match next {
                Ok(Some(text)) => match serde_json::from_str::<Reply>(&text) {
                    Ok(Reply::Line(line)) => view.show(&line),
                    Ok(Reply::Ask { question }) => {
                        view.finish();
                        let (answer, answered) = oneshot::channel();
                        ask_here(&question, answer);
                        typing = Some(answered);
                    }
                    Ok(Reply::Done) => break Ok(()),
                    Ok(Reply::Failed { code, message }) => break Err(Failure::new(code, message).into()),
                    Err(error) => break Err(anyhow!("the running node sent something unexpected: {error}")),
                },
                Ok(None) | Err(_) => break Err(anyhow!(
                    "the running node closed the control socket before answering (did it stop?)"
                )),
            },
            Some(yes) = answer_of(&mut typing) => {
                let mut line = serde_json::to_vec(&ClientLine::Answer { yes })?;
                line.push(b'\n');
                if write.write_all(&line).await.is_err() {
                    break Err(anyhow!("the running node closed the control socket before the answer"));
                }
            }
            _ = tokio::signal::ctrl_c(), if !interrupted => {
                // Closing our end tells the node to stop; it still reports how it ended.
                interrupted = true;
                let _ = write.shutdown().await;
            }
        }
    };
    view.finish();
    result
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncWriteExt, BufReader};
    use tokio::net::UnixStream;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::{MAX_CLIENT_LINE, read_client};

    /// `read_client` on one end of a socket pair; `lines` written to the other end.
    async fn client_sends(lines: &[u8]) -> (Vec<bool>, bool) {
        let (node_end, mut client_end) = UnixStream::pair().unwrap();
        let (read, _write) = node_end.into_split();
        let (answers, mut answered) = mpsc::channel(1);
        let cancel = CancellationToken::new();
        let reading = tokio::spawn(read_client(BufReader::new(read), answers, cancel.clone()));
        client_end.write_all(lines).await.unwrap();
        let mut got = Vec::new();
        while let Ok(Some(yes)) =
            tokio::time::timeout(Duration::from_millis(200), answered.recv()).await
        {
            got.push(yes);
        }
        let cancelled = cancel.is_cancelled();
        reading.abort();
        (got, cancelled)
    }

    #[tokio::test]
    async fn answers_are_forwarded_and_anything_else_stops_the_command() {
        let (got, cancelled) = client_sends(
            b"{\"client\":\"answer\",\"yes\":true}\n{\"client\":\"answer\",\"yes\":false}\n",
        )
        .await;
        assert_eq!((got, cancelled), (vec![true, false], false));
        let (got, cancelled) = client_sends(b"{\"client\":\"rm -rf\"}\n").await;
        assert_eq!((got, cancelled), (vec![], true));
        // A line longer than the bound is cut there, is no answer, and stops the command.
        let mut long = b"{\"client\":\"answer\",\"yes\":true".to_vec();
        long.resize(usize::try_from(MAX_CLIENT_LINE).unwrap() * 4, b' ');
        long.extend_from_slice(b"}\n");
        let (got, cancelled) = client_sends(&long).await;
        assert_eq!((got, cancelled), (vec![], true));
    }
}
