//! `tether text` between two `tether up` nodes in their own processes (`--local-only`): the
//! text arrives as the receiving node's `text` line and the command exits 0 only then; stdin
//! (`-`) and the 64 KiB cap; `--clipboard` without a display says why once and still shows
//! texts; under an X server (the session's own, else one `xvfb-run` starts) a received text
//! is on the clipboard for another process (`xclip`) to read. And `tether channel` between two
//! processes: lines typed on one appear on the other.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stderr,
    clippy::panic
)]

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::event;
use common::node::{FINISH, Running, check, pair, tether, two_devices, up, up_with};

/// The protocol's cap on one text (`tether::limits::MAX_TEXT_LEN`).
const MAX_TEXT_LEN: usize = 64 << 10;

/// `tether text DEVICE -` with `text` on its standard input.
fn text_from_stdin(runtime: &Path, data: &Path, device: &str, text: &[u8]) -> Output {
    let mut child = tether(runtime, data, &["text", device, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The command may stop reading at the cap and exit before all of it is written.
    let _ = stdin.write_all(text);
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn a_text_reaches_the_running_node_and_over_long_ones_are_refused() {
    let pair_dirs = two_devices();
    let rt = pair_dirs.runtime.path();
    let (desk, laptop) = (&pair_dirs.desk, &pair_dirs.laptop);
    // No display here: `--clipboard` says once why it is off, and texts are still shown.
    let mut desk_command = tether(rt, desk, &["up", "--clipboard"]);
    desk_command
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY");
    let desk_up = Running::spawn(desk_command);
    let off = desk_up.wait_for("clipboard_off");
    assert!(
        off["reason"].as_str().unwrap().contains("no display"),
        "{off}"
    );
    desk_up.wait_for("up");
    let laptop_up = up(rt, laptop);
    pair(rt, desk, laptop, false);

    // Through the laptop's running node; done only once the desk has it.
    let note = "door code 4711\n\u{1b}[31mnot red\u{1b}[0m é";
    let sent = check(
        &tether(rt, laptop, &["text", "desk", note])
            .output()
            .unwrap(),
        "text",
    );
    assert_eq!(event(&sent, "text_sent")["bytes"], note.len());
    let shown = desk_up.wait_for("text");
    assert_eq!(shown["text"], note);
    assert_eq!(shown["name"], "laptop");
    assert_eq!(shown["clipboard"], false);

    // From standard input, up to the cap exactly (what a text may hold, in bytes).
    let longest = "ü".repeat(MAX_TEXT_LEN / 2);
    check(
        &text_from_stdin(rt, laptop, "desk", longest.as_bytes()),
        "text -",
    );
    assert_eq!(desk_up.wait_for("text")["text"], longest.as_str());

    // One byte more is refused before anything is sent: bad usage (2).
    let over = "x".repeat(MAX_TEXT_LEN + 1);
    let refused = text_from_stdin(rt, laptop, "desk", over.as_bytes());
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("over 64 KiB"),
        "{refused:?}"
    );
    let refused = tether(rt, laptop, &["text", "desk", &over])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");

    // Only a paired device: an unknown one is exit 4.
    let unknown = tether(rt, laptop, &["text", "phone", "hi"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(4), "{unknown:?}");

    // Without a running node on the sending side, a short-lived one sends it.
    drop(laptop_up);
    check(
        &tether(rt, laptop, &["text", "desk", "from a short-lived node"])
            .output()
            .unwrap(),
        "text without up",
    );
    assert_eq!(desk_up.wait_for("text")["text"], "from a short-lived node");
}

/// An X display for the clipboard test, and the `xvfb-run` that serves it when this session
/// had none.
struct Display {
    display: String,
    xauthority: Option<String>,
    /// `xvfb-run` running a shell that waits for its standard input to close; closing it
    /// ends the shell, and `xvfb-run` then stops its X server.
    xvfb: Option<Child>,
}

impl Display {
    /// The session's display, or one `xvfb-run` starts; `None` (with the reason) without
    /// either.
    fn get() -> Result<Self, &'static str> {
        if let Some(display) = std::env::var_os("DISPLAY") {
            return Ok(Self {
                display: display.to_string_lossy().into_owned(),
                xauthority: std::env::var("XAUTHORITY").ok(),
                xvfb: None,
            });
        }
        let mut xvfb = Command::new("xvfb-run")
            .args(["-a", "sh", "-c", r#"echo "$DISPLAY $XAUTHORITY"; read _"#])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|_| "no DISPLAY and no xvfb-run (install xvfb, xauth and xclip)")?;
        let mut line = String::new();
        BufReader::new(xvfb.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut parts = line.split_whitespace();
        let display = parts.next().expect("xvfb-run gave no DISPLAY").to_owned();
        Ok(Self {
            display,
            xauthority: parts.next().map(str::to_owned),
            xvfb: Some(xvfb),
        })
    }

    fn set_on(&self, command: &mut Command) {
        command.env("DISPLAY", &self.display);
        command.env_remove("WAYLAND_DISPLAY");
        match &self.xauthority {
            Some(file) => command.env("XAUTHORITY", file),
            None => command.env_remove("XAUTHORITY"),
        };
    }

    /// What another process reads from the clipboard, once it holds `want` (or the last
    /// thing read after 10 s).
    fn clipboard_once(&self, want: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut xclip = Command::new("xclip");
            xclip.args(["-o", "-selection", "clipboard"]);
            self.set_on(&mut xclip);
            let read = xclip.output().expect("xclip is missing (install xclip)");
            let got = String::from_utf8_lossy(&read.stdout).into_owned();
            if got == want || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        if let Some(mut xvfb) = self.xvfb.take() {
            drop(xvfb.stdin.take());
            let _ = xvfb.wait();
        }
    }
}

#[test]
fn a_received_text_is_on_the_clipboard_for_another_process() {
    let display = match Display::get() {
        Ok(display) => display,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    if Command::new("xclip").arg("-version").output().is_err() {
        eprintln!("skipped: xclip is missing (install xclip)");
        return;
    }
    let pair_dirs = two_devices();
    let rt = pair_dirs.runtime.path();
    let (desk, laptop) = (&pair_dirs.desk, &pair_dirs.laptop);
    let mut desk_command = tether(rt, desk, &["up", "--clipboard"]);
    display.set_on(&mut desk_command);
    let desk_up = Running::spawn(desk_command);
    desk_up.wait_for("up");
    let _laptop_up = up_with(rt, laptop, &[]);
    pair(rt, desk, laptop, false);

    let secret = "correct horse battery staple ✓";
    check(
        &tether(rt, laptop, &["text", "desk", secret])
            .output()
            .unwrap(),
        "text",
    );
    let shown = desk_up.wait_for("text");
    assert_eq!(shown["clipboard"], true, "{shown}");
    // Read by another process while the node serves the selection.
    assert_eq!(display.clipboard_once(secret), secret);
}

/// `tether channel TOPIC` in two processes of their own (no `tether up`): a line typed on
/// one device's standard input is shown by the other with its name, both ways; presence
/// comes and goes; and standard input's end leaves the channel.
#[test]
fn lines_typed_in_a_channel_appear_on_the_other_device() {
    let pair_dirs = two_devices();
    let rt = pair_dirs.runtime.path();
    let (desk, laptop) = (&pair_dirs.desk, &pair_dirs.laptop);
    {
        let _desk_up = up(rt, desk);
        let _laptop_up = up(rt, laptop);
        pair(rt, desk, laptop, true);
    }
    let channel = |data: &Path| {
        let mut command = tether(rt, data, &["channel", "kitchen"]);
        command.stdin(Stdio::piped());
        let mut running = Running::spawn(command);
        let stdin = running.child.stdin.take().unwrap();
        running.wait_for("subscribed");
        (running, stdin)
    };
    let (desk_channel, mut desk_stdin) = channel(desk);
    let (laptop_channel, mut laptop_stdin) = channel(laptop);
    assert_eq!(desk_channel.wait_for("joined")["name"], "laptop");
    assert_eq!(laptop_channel.wait_for("joined")["name"], "desk");

    writeln!(laptop_stdin, "milk is out").unwrap();
    let shown = desk_channel.wait_for("message");
    assert_eq!(shown["name"], "laptop");
    assert_eq!(shown["text"], "milk is out");
    assert_eq!(shown["seq"], 1);
    writeln!(desk_stdin, "buying some \u{1b}[31m").unwrap();
    writeln!(desk_stdin, "and eggs").unwrap();
    let first = laptop_channel.wait_for("message");
    assert_eq!(first["name"], "desk");
    assert_eq!(first["text"], "buying some \u{1b}[31m");
    assert_eq!(laptop_channel.wait_for("message")["text"], "and eggs");

    // The laptop leaves (end of input); the desk sees it go.
    drop(laptop_stdin);
    let (status, _) = laptop_channel.wait(FINISH);
    assert!(status.success(), "{status}");
    assert_eq!(desk_channel.wait_for("left")["name"], "laptop");
    drop(desk_stdin);
    let (status, _) = desk_channel.wait(FINISH);
    assert!(status.success(), "{status}");
}
