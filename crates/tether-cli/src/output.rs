//! Text for people or JSON lines for scripts.
//!
//! A command reports [`Line`]s into a [`Sink`]; [`render`] turns them into text or JSON on
//! this terminal. The same lines travel over the control socket when a running node does the
//! work, so a command looks the same whichever process ran it.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool prints

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::progress::ProgressView;

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
            println!("{record}");
        } else {
            println!("{text}");
        }
    }

    /// Text only (progress and decoration); nothing in JSON mode.
    pub(crate) fn text(self, text: &str) {
        if !self.json {
            println!("{text}");
        }
    }

    /// The one-sentence error, on stderr (and as a JSON line on stdout in JSON mode).
    pub(crate) fn error(self, message: &str) {
        if self.json {
            println!("{}", json!({ "event": "error", "message": message }));
        }
        eprintln!("error: {message}");
    }
}

/// One thing a command reports: an event name, text for people, a record for scripts (a
/// `null` record is decoration, shown only as text).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Line {
    pub(crate) event: String,
    pub(crate) text: String,
    pub(crate) record: Value,
}

/// Where a command puts its lines.
#[derive(Debug, Clone)]
pub(crate) struct Sink(mpsc::UnboundedSender<Line>);

impl Sink {
    /// A sink and the receiving end to render (or forward) from.
    pub(crate) fn channel() -> (Self, mpsc::UnboundedReceiver<Line>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// A line for people and a record for scripts.
    pub(crate) fn line(&self, event: &str, text: impl Into<String>, record: Value) {
        let _ = self.0.send(Line {
            event: event.to_owned(),
            text: text.into(),
            record,
        });
    }

    /// Text only; nothing in JSON mode.
    pub(crate) fn text(&self, text: impl Into<String>) {
        self.line("text", text, Value::Null);
    }
}

/// Shows lines on this terminal until the sink is dropped.
pub(crate) async fn render(mut lines: mpsc::UnboundedReceiver<Line>, out: Output) {
    let mut view = Renderer::new(out);
    while let Some(line) = lines.recv().await {
        view.show(&line);
    }
    view.finish();
}

/// Shows lines one at a time; transfer progress goes to progress bars.
#[derive(Debug)]
pub(crate) struct Renderer {
    out: Output,
    progress: Option<ProgressView>,
}

impl Renderer {
    pub(crate) fn new(out: Output) -> Self {
        Self {
            out,
            progress: None,
        }
    }

    pub(crate) fn show(&mut self, line: &Line) {
        match line.event.as_str() {
            "started" => {
                let view = ProgressView::new(self.out, &line.record);
                self.progress = Some(view);
                self.out.line(&line.event, &line.text, line.record.clone());
            }
            "progress" => {
                if let Some(view) = &mut self.progress {
                    view.update(&line.record);
                }
            }
            _ => {
                if let Some(view) = self.progress.take() {
                    view.finish();
                }
                if line.record.is_null() {
                    self.out.text(&line.text);
                } else {
                    self.out.line(&line.event, &line.text, line.record.clone());
                }
            }
        }
    }

    pub(crate) fn finish(&mut self) {
        if let Some(view) = self.progress.take() {
            view.finish();
        }
    }
}
