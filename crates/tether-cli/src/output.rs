//! Text for people or JSON lines for scripts.
//!
//! A command reports [`Line`]s into a [`Sink`]; [`render`](crate::render::render) turns them into text or JSON on
//! this terminal. The same lines travel over the control socket when a running node does the
//! work, so a command looks the same whichever process ran it.
//!
//! Everything printed here passes [`terminal_safe`] (text) or [`json_safe`] (JSON lines): a
//! line may hold text a peer chose (a decline or abort reason, an error it answered with) or a
//! file name, and a control character in it must not reach the terminal raw (croc's
//! CVE-2023-43620).
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool prints

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// Where a command's results go on this terminal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    json: bool,
}

impl Output {
    pub(crate) fn new(json: bool) -> Self {
        Self { json }
    }

    pub(crate) fn is_json(self) -> bool {
        self.json
    }

    /// A line for people; in JSON mode, `record` instead (with `"event"` set to `event`).
    pub(crate) fn line(self, event: &str, text: &str, record: Value) {
        if self.json {
            let mut record = record;
            if let Value::Object(map) = &mut record {
                map.insert("event".to_owned(), json!(event));
            }
            println!("{}", json_safe(&record.to_string()));
        } else {
            println!("{}", terminal_safe(text, true));
        }
    }

    /// Text only (progress and decoration); nothing in JSON mode.
    pub(crate) fn text(self, text: &str) {
        if !self.json {
            println!("{}", terminal_safe(text, true));
        }
    }

    /// The one-sentence error, on stderr (and as a JSON line on stdout in JSON mode).
    pub(crate) fn error(self, message: &str) {
        if self.json {
            let line = json!({ "event": "error", "message": message }).to_string();
            println!("{}", json_safe(&line));
        }
        eprintln!("error: {}", terminal_safe(message, false));
    }
}

/// `text` as it may reach a terminal: every control character (C0, DEL, C1; `\n` too unless
/// `keep_newlines`) and every character that reorders or hides text (bidirectional controls,
/// line and paragraph separators) is shown as a Rust escape such as `\u{1b}`, so that text
/// from a peer or a file name can neither move the cursor, recolour or retitle the terminal,
/// nor make one name look like another.
pub(crate) fn terminal_safe(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| hidden(c) && !(keep_newlines && c == '\n');
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A serialized JSON value with the characters `serde_json` leaves raw (DEL, C1, the
/// bidirectional controls, line and paragraph separators) escaped as `\uXXXX` too; they can
/// only occur inside strings, where the escape means the same character.
pub(crate) fn json_safe(json: &str) -> Cow<'_, str> {
    if !json.chars().any(hidden) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if hidden(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A character a terminal acts on or that changes how the text around it reads.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// One thing a command reports: an event name, text for people, a record for scripts (a
/// `null` record is decoration, shown only as text).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Line {
    pub(crate) event: String,
    pub(crate) text: String,
    pub(crate) record: Value,
}

/// What a command puts into its [`Sink`]: a line to show, or a question to put to the person
/// who ran it.
#[derive(Debug)]
pub(crate) enum Report {
    Line(Line),
    Ask(Question),
}

/// A yes/no question for the person who ran the command, asked after every line reported
/// before it, on the terminal of the process the person typed the command in (this one, or
/// the control socket's client).
#[derive(Debug)]
pub(crate) struct Question {
    /// The question, ending in `[y/N] `; it may hold text a peer chose.
    pub(crate) text: String,
    /// Where the answer goes: `true` for y or yes.
    pub(crate) answer: oneshot::Sender<bool>,
}

/// Where a command puts its lines.
#[derive(Debug, Clone)]
pub(crate) struct Sink(mpsc::UnboundedSender<Report>);

impl Sink {
    /// A sink and the receiving end to render (or forward) from.
    pub(crate) fn channel() -> (Self, mpsc::UnboundedReceiver<Report>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// A line for people and a record for scripts.
    pub(crate) fn line(&self, event: &str, text: impl Into<String>, record: Value) {
        let _ = self.0.send(Report::Line(Line {
            event: event.to_owned(),
            text: text.into(),
            record,
        }));
    }

    /// A sink for one device's part of a command to several devices: each of its lines
    /// reaches this sink with `"device": device` in its record and `device: ` before its
    /// text; its questions pass through. Every line `seen` is also handed to `seen` (the
    /// caller's summary). Ends when the returned sink and its clones are dropped.
    pub(crate) fn tagged(
        &self,
        device: &str,
        mut seen: impl FnMut(&Line) + Send + 'static,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tagged, mut reports) = Self::channel();
        let parent = self.clone();
        let device = device.to_owned();
        let forward = tokio::spawn(async move {
            while let Some(report) = reports.recv().await {
                let mut line = match report {
                    Report::Line(line) => line,
                    ask @ Report::Ask(_) => {
                        let _ = parent.0.send(ask);
                        continue;
                    }
                };
                seen(&line);
                if let Value::Object(record) = &mut line.record {
                    record.insert("device".to_owned(), Value::String(device.clone()));
                }
                if !line.text.is_empty() {
                    line.text = format!("{device}: {}", line.text);
                }
                let _ = parent.0.send(Report::Line(line));
            }
        });
        (tagged, forward)
    }

    /// Text only; nothing in JSON mode.
    pub(crate) fn text(&self, text: impl Into<String>) {
        self.line("text", text, Value::Null);
    }

    /// Asks the person `text` (ending in `[y/N] `), after the lines reported so far: `true`
    /// for yes, `false` for any other answer or when nobody can answer any more. The caller
    /// bounds the wait.
    pub(crate) async fn ask(&self, text: impl Into<String>) -> bool {
        let (answer, answered) = oneshot::channel();
        let question = Question {
            text: text.into(),
            answer,
        };
        if self.0.send(Report::Ask(question)).is_err() {
            return false;
        }
        answered.await.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: [&str; 8] = [
        "\u{1b}[31mred\u{1b}[0m",
        "\u{1b}]0;owned\u{7}",
        "\u{9b}2J",
        "a\u{7f}b",
        "evil\u{202e}fdp.exe",
        "\u{2066}x\u{2069}",
        "line\nforged\rline",
        "nul\u{0}tab\t",
    ];

    #[test]
    fn hostile_text_reaches_the_terminal_escaped() {
        for text in HOSTILE {
            let shown = terminal_safe(text, false);
            assert!(!shown.chars().any(hidden), "{shown:?}");
            assert!(shown.contains("\\u{"), "{shown:?}");
            let json = json!({ "name": text }).to_string();
            let safe = json_safe(&json);
            assert!(!safe.chars().any(hidden), "{safe:?}");
            // Still the same JSON value.
            let back: Value = serde_json::from_str(&safe).unwrap();
            assert_eq!(back["name"], text);
        }
        assert_eq!(
            terminal_safe("\u{1b}[2Jx", false),
            "\\u{1b}[2Jx",
            "the escape is visible"
        );
        assert_eq!(terminal_safe("two\nlines", true), "two\nlines");
        assert_eq!(terminal_safe("two\nlines", false), "two\\u{a}lines");
        // Ordinary text, accents and emoji included, is passed through untouched.
        let plain = "Anna's laptop – photos/2026/été 📷";
        assert!(matches!(terminal_safe(plain, false), Cow::Borrowed(_)));
        assert!(matches!(json_safe(plain), Cow::Borrowed(_)));
    }
}
