//! The questions `tether` asks on a terminal, answered on a real pseudo-terminal (rexpect):
//! `tether join` reading the code, the passphrase of a new sealed key (and a wrong one refused
//! on reopening), `tether pair`'s y/N question, run directly and through a running `tether up`
//! (the node hands the question to the client's terminal), and `tether up`'s question about an
//! offer from an unmarked device. Every node is `--local-only`, on loopback.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stderr,
    clippy::panic
)]

use crate::common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::node::{Pair, Running, two_devices, up};
use common::{Tether, event, json_lines, tether};
use nix::sys::signal::Signal;
use rexpect::session::PtySession;

/// How long an expected prompt or line may take: generous, only so a broken build fails.
const WAIT_MS: u64 = 30_000;
const WAIT: Duration = Duration::from_millis(WAIT_MS);

/// `command` with a pseudo-terminal as its standard input, output and error.
fn on_terminal(mut command: Command) -> PtySession {
    command
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    rexpect::session::spawn_command(command, Some(WAIT_MS)).unwrap()
}

/// Waits for `text` on the terminal; on failure says what was seen instead.
fn expect(session: &mut PtySession, text: &str) -> String {
    session
        .exp_string(text)
        .unwrap_or_else(|error| panic!("{text:?} never shown: {error}"))
}

/// The word code a text-mode `tether pair` shows on its terminal.
fn code_on(session: &mut PtySession) -> String {
    let (_, shown) = session
        .exp_regex(r"enter:\s+[a-z]+(-[a-z]+)+\s")
        .unwrap_or_else(|error| panic!("no code shown: {error}"));
    shown.trim_start_matches("enter:").trim().to_owned()
}

/// The devices `data` has paired with, by name.
fn paired(runtime: &Path, data: &Path) -> Vec<String> {
    let output = tether(runtime, data, &["devices"]).output().unwrap();
    assert!(output.status.success(), "devices: {output:?}");
    json_lines(&output.stdout)
        .into_iter()
        .filter(|d| d["paired"] == true)
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect()
}

/// `tether join -` for `data` with `code` on its standard input, in a thread (it ends only
/// once the initiator answered).
fn join_in_background(runtime: &Path, data: &Path, code: &str) -> std::thread::JoinHandle<Output> {
    let mut command = tether(runtime, data, &["join", "-"]);
    let code = format!("{code}\n");
    std::thread::spawn(move || {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(code.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
}

/// Pairs desk and laptop with `tether pair --yes` and `tether join -`, no node running.
fn pair_without_asking(devices: &Pair) {
    let rt = devices.runtime.path();
    let pairing = Running::spawn(tether(rt, &devices.desk, &["pair", "--yes"]));
    let code = pairing.wait_for("code")["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let joined = join_in_background(rt, &devices.laptop, &code)
        .join()
        .unwrap();
    assert!(joined.status.success(), "join: {joined:?}");
    pairing.wait_for("paired");
}

/// `tether pair` on a terminal for the desk, text output: the session and the code it shows.
fn pair_on_terminal(devices: &Pair) -> (PtySession, String) {
    let command = Tether::new(devices.runtime.path(), &devices.desk)
        .text()
        .command(&["pair"]);
    let mut session = on_terminal(command);
    let code = code_on(&mut session);
    (session, code)
}

/// The question `tether pair` asks once the laptop proved the code, naming the laptop and
/// showing the verification code.
fn expect_pair_question(session: &mut PtySession) {
    expect(session, "\"laptop\"");
    expect(session, "Pair with laptop? Verification code ");
    expect(session, "[y/N]");
}

/// `tether pair` answered `answer` on its terminal; the joiner's output and the pairings
/// each side then holds.
fn pair_answered(devices: &Pair, answer: &str) -> (Output, Vec<String>, Vec<String>) {
    let rt = devices.runtime.path();
    let (mut session, code) = pair_on_terminal(devices);
    let joining = join_in_background(rt, &devices.laptop, &code);
    expect_pair_question(&mut session);
    session.send_line(answer).unwrap();
    let joined = joining.join().unwrap();
    session.exp_eof().unwrap();
    (
        joined,
        paired(rt, &devices.desk),
        paired(rt, &devices.laptop),
    )
}

#[test]
fn pair_on_a_terminal_answered_y_pairs_both() {
    let devices = two_devices();
    let (joined, desk, laptop) = pair_answered(&devices, "y");
    assert!(joined.status.success(), "join: {joined:?}");
    assert_eq!((desk, laptop), (vec!["laptop".into()], vec!["desk".into()]));
}

#[test]
fn pair_on_a_terminal_answered_n_stores_nothing_on_either_side() {
    let devices = two_devices();
    let (joined, desk, laptop) = pair_answered(&devices, "n");
    assert!(!joined.status.success(), "join: {joined:?}");
    assert!(String::from_utf8_lossy(&joined.stderr).contains("declined"));
    assert_eq!((desk, laptop), (vec![], vec![]));
}

/// Issue 17: `tether pair` through a running `tether up` asks on the client's terminal.
#[test]
fn pair_through_a_running_up_answered_y_pairs_both() {
    let devices = two_devices();
    let _desk_up = up(devices.runtime.path(), &devices.desk);
    let (joined, desk, laptop) = pair_answered(&devices, "y");
    assert!(joined.status.success(), "join: {joined:?}");
    assert_eq!((desk, laptop), (vec!["laptop".into()], vec!["desk".into()]));
}

#[test]
fn pair_through_a_running_up_answered_n_stores_nothing_on_either_side() {
    let devices = two_devices();
    let _desk_up = up(devices.runtime.path(), &devices.desk);
    let (joined, desk, laptop) = pair_answered(&devices, "n");
    assert!(!joined.status.success(), "join: {joined:?}");
    assert!(String::from_utf8_lossy(&joined.stderr).contains("declined"));
    assert_eq!((desk, laptop), (vec![], vec![]));
}

#[test]
fn pair_through_a_running_up_killed_while_asking_stores_nothing() {
    let devices = two_devices();
    let rt = devices.runtime.path();
    let desk_up = up(rt, &devices.desk);
    let (mut session, code) = pair_on_terminal(&devices);
    let joining = join_in_background(rt, &devices.laptop, &code);
    expect_pair_question(&mut session);
    session.process_mut().kill(Signal::SIGKILL).unwrap();
    let started = Instant::now();
    let joined = joining.join().unwrap();
    eprintln!("joiner refused {:?} after the kill", started.elapsed());
    assert!(!joined.status.success(), "join: {joined:?}");
    assert!(
        started.elapsed() < WAIT,
        "the node waited for a dead client"
    );
    assert_eq!(paired(rt, &devices.desk), Vec::<String>::new());
    assert_eq!(paired(rt, &devices.laptop), Vec::<String>::new());
    // The node is still up, and pairs with the next client that says yes.
    let (joined, desk, laptop) = pair_answered(&devices, "y");
    assert!(joined.status.success(), "join: {joined:?}");
    assert_eq!((desk, laptop), (vec!["laptop".into()], vec!["desk".into()]));
    drop(desk_up);
}

#[test]
fn join_reads_the_code_typed_at_the_terminal_and_pairs() {
    let devices = two_devices();
    let rt = devices.runtime.path();
    let pairing = Running::spawn(tether(rt, &devices.desk, &["pair", "--yes"]));
    let code = pairing.wait_for("code")["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut join = on_terminal(Tether::new(rt, &devices.laptop).text().command(&["join"]));
    expect(&mut join, "Code shown on the other device: ");
    join.send_line(&code).unwrap();
    expect(&mut join, "Paired with \"desk\"");
    join.exp_eof().unwrap();
    pairing.wait_for("paired");
    assert_eq!(paired(rt, &devices.laptop), ["desk"]);
}

#[test]
fn a_new_key_is_sealed_with_the_passphrase_typed_and_a_wrong_one_is_refused() {
    let runtime = tempfile::tempdir().unwrap();
    let rt = runtime.path();
    let data = rt.join("sealed");
    let sealed = |args: &[&str]| Tether::new(rt, &data).text().sealed_key().command(args);
    let mut init = on_terminal(sealed(&["init", "--name", "sealed"]));
    expect(&mut init, "New passphrase for the device key");
    init.send_line("correct horse battery staple").unwrap();
    expect(&mut init, "The same passphrase again: ");
    init.send_line("correct horse battery staple").unwrap();
    expect(&mut init, "key kept:  key file encrypted with a passphrase");
    init.exp_eof().unwrap();

    let mut wrong = on_terminal(sealed(&["id"]));
    expect(&mut wrong, "Passphrase of the device key");
    wrong.send_line("incorrect horse").unwrap();
    let refused = wrong.exp_eof().unwrap();
    assert!(refused.contains("error:"), "{refused}");
    assert!(!refused.contains("node id:"), "{refused}");

    let mut right = on_terminal(sealed(&["id"]));
    expect(&mut right, "Passphrase of the device key");
    right.send_line("correct horse battery staple").unwrap();
    expect(&mut right, "name:      sealed");
    right.exp_eof().unwrap();
}

#[test]
fn up_asks_about_an_unmarked_devices_offer_y_writes_and_n_writes_nothing() {
    let devices = two_devices();
    let rt = devices.runtime.path();
    pair_without_asking(&devices);
    let inbox = rt.join("inbox");
    let mut desk_up = on_terminal(Tether::new(rt, &devices.desk).text().command(&[
        "up",
        "--receive-dir",
        inbox.to_str().unwrap(),
    ]));
    expect(&mut desk_up, "Ctrl-C to stop");
    let send = |name: &str| {
        let file = rt.join(name);
        std::fs::write(&file, format!("{name}\n")).unwrap();
        let mut command = tether(rt, &devices.laptop, &["send", "desk"]);
        command.arg(&file);
        std::thread::spawn(move || command.output().unwrap())
    };

    let sending = send("yes.txt");
    expect(&mut desk_up, "\"laptop\"");
    expect(&mut desk_up, "yes.txt");
    expect(&mut desk_up, "[y/N]");
    desk_up.send_line("y").unwrap();
    let sent = sending.join().unwrap();
    assert!(sent.status.success(), "send: {sent:?}");
    assert_eq!(event(&json_lines(&sent.stdout), "sent")["files"], 1);
    assert_eq!(std::fs::read(inbox.join("yes.txt")).unwrap(), b"yes.txt\n");

    let sending = send("no.txt");
    expect(&mut desk_up, "no.txt");
    expect(&mut desk_up, "[y/N]");
    desk_up.send_line("n").unwrap();
    let refused = sending.join().unwrap();
    assert!(!refused.status.success(), "send: {refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("said no"));
    let mut names: Vec<_> = std::fs::read_dir(&inbox)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["yes.txt"], "a declined offer left something");
}
