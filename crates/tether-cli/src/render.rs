//! Shows a command's [`Line`]s on this terminal: text or JSON, transfer progress as bars,
//! questions asked here.
#![allow(clippy::print_stderr)] // a command-line tool asks on stderr

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::output::{Line, Output, Report, terminal_safe};
use crate::progress::{DevicesView, ProgressView};

/// Shows lines on this terminal until the sink is dropped, and asks its questions here.
pub(crate) async fn render(mut reports: mpsc::UnboundedReceiver<Report>, out: Output) {
    let mut view = Renderer::new(out);
    while let Some(report) = reports.recv().await {
        match report {
            Report::Line(line) => view.show(&line),
            Report::Ask(question) => {
                view.finish();
                ask_here(&question.text, question.answer);
            }
        }
    }
    view.finish();
}

/// Puts `question` to the person at this terminal (on stderr, escaped) and reads the answer
/// (one line, at most [`MAX_ANSWER`] bytes) from standard input on a thread of its own, so
/// that nothing waits for a person who never answers (the process ends without joining it);
/// sends `true` to `answer` for y or yes.
pub(crate) fn ask_here(question: &str, answer: oneshot::Sender<bool>) {
    use std::io::{BufRead, Read};
    eprint!("{}", terminal_safe(question, false));
    let _ = std::io::Write::flush(&mut std::io::stderr());
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = std::io::stdin()
            .lock()
            .take(MAX_ANSWER)
            .read_line(&mut line);
        let _ = answer.send(read.is_ok() && is_yes(&line));
    });
}

/// The longest answer line read.
pub(crate) const MAX_ANSWER: u64 = 1024;

/// Whether a typed answer means yes.
pub(crate) fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Shows lines one at a time; transfer progress goes to progress bars.
#[derive(Debug)]
pub(crate) struct Renderer {
    out: Output,
    progress: Option<ProgressView>,
    /// A send to several devices: its lines name their device.
    devices: Option<DevicesView>,
}

impl Renderer {
    pub(crate) fn new(out: Output) -> Self {
        Self {
            out,
            progress: None,
            devices: None,
        }
    }

    pub(crate) fn show(&mut self, line: &Line) {
        if let Some(device) = line.record.get("device").and_then(Value::as_str)
            && line.event != "delivery"
        {
            let view = self
                .devices
                .get_or_insert_with(|| DevicesView::new(self.out));
            match line.event.as_str() {
                "started" => {
                    view.start(device, &line.record);
                    view.line(&line.event, &line.text, line.record.clone());
                }
                "progress" => view.update(device, &line.record),
                _ => view.line(&line.event, &line.text, line.record.clone()),
            }
            return;
        }
        if let Some(view) = self.devices.take() {
            view.finish();
        }
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
        if let Some(view) = self.devices.take() {
            view.finish();
        }
    }
}
