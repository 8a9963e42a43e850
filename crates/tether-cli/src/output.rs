//! Text for people or JSON lines for scripts.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool prints

use serde_json::{Value, json};

/// Where a command's results go.
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
