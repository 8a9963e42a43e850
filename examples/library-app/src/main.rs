//! `library-app`: the example app on the command line, for trying it by hand between two data
//! directories on one machine (everything stays local).
//!
//! ```text
//! library-app --data /tmp/a create Photos
//! library-app --data /tmp/a add <library-id> ./beach.jpg
//! library-app --data /tmp/a invite            # prints a ticket, waits, then serves
//! library-app --data /tmp/b join <ticket>     # pairs, announces, then serves
//! library-app --data /tmp/b sync <node-id> <library-id>
//! library-app --data /tmp/b pull <node-id> <entry-id>   # the laptop serving meanwhile
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool prints

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tether::{NodeId, PullOptions, Uuid};
use tether_example_library_app::{AppConfig, AppEvent, ConsentRequests, LibraryApp};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Debug, Parser)]
#[command(about = "An example library app on Tether (local only)")]
struct Cli {
    /// The app's data directory.
    #[arg(long)]
    data: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates a library.
    Create {
        /// Its name.
        name: String,
    },
    /// Adds a file to a library.
    Add {
        /// The library's id.
        library: Uuid,
        /// The file.
        file: PathBuf,
    },
    /// Lists the libraries.
    List,
    /// Shows a pairing ticket, waits for the other device, then serves.
    Invite,
    /// Pairs with a device showing a ticket, then serves.
    Join {
        /// The ticket.
        ticket: String,
    },
    /// Announces the libraries, then answers requests and consent questions until Ctrl-C.
    Serve,
    /// Pulls what changed in a device's library.
    Sync {
        /// The device's node id.
        device: NodeId,
        /// The library's id.
        library: Uuid,
    },
    /// Pulls an entry's file from a device (sync its library first), checked against the
    /// entry's hash.
    Pull {
        /// The device's node id.
        device: NodeId,
        /// The entry's id.
        entry: Uuid,
        /// Where to put it; default: the receive directory (`<data>/inbox`).
        #[arg(long)]
        into: Option<PathBuf>,
    },
    /// Asks a device which libraries are open on it.
    Presence {
        /// The device's node id.
        device: NodeId,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (app, questions) = LibraryApp::start(AppConfig::new(&cli.data))
        .await
        .context("starting the app")?;
    println!("this device: {}", app.service().node_id());
    let result = run(&app, questions, cli.command).await;
    app.shutdown().await;
    result
}

async fn run(app: &LibraryApp, questions: ConsentRequests, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create { name } => {
            let library = app.create_library(&name).await?;
            println!("created {} {:?}", library.id, library.name);
        }
        Command::Add { library, file } => {
            let name = file
                .file_name()
                .context("the file has no name")?
                .to_string_lossy()
                .into_owned();
            let entry = app.add_file(library, &name, &file).await?;
            println!(
                "added {} {:?} ({} bytes)",
                entry.entry_id, entry.path, entry.size
            );
        }
        Command::List => {
            for library in app.store().libraries()? {
                let info = app.store().library_info(library.id)?;
                let count = info.map_or(0, |info| info.entry_count);
                println!("{} {:?} entries: {count}", library.id, library.name);
            }
        }
        Command::Invite => {
            let mut invite = app.service().start_pairing_with_ticket()?;
            println!(
                "on the other device: library-app --data <dir> join {}",
                invite.code
            );
            let paired = invite.paired().await?;
            println!("paired; verification code {}", paired.verification_code);
            serve(app, questions).await?;
        }
        Command::Join { ticket } => {
            let paired = app.service().join_pairing(&ticket).await?;
            println!("paired; verification code {}", paired.verification_code);
            serve(app, questions).await?;
        }
        Command::Serve => serve(app, questions).await?,
        Command::Sync { device, library } => {
            let report = app.sync_library(device, library).await?;
            println!(
                "{} entries in {} pages, {} new here",
                report.entries.len(),
                report.pages,
                report.applied
            );
            for entry in report.entries {
                println!("  {} {:?} {} bytes", entry.entry_id, entry.path, entry.size);
            }
        }
        Command::Pull {
            device,
            entry,
            into,
        } => {
            let into = match into {
                Some(dir) => dir,
                None => app
                    .service()
                    .receive_dir()
                    .context("no receive directory")?
                    .to_owned(),
            };
            pull(app, device, entry, &into).await?;
        }
        Command::Presence { device } => {
            for library in app.open_libraries_of(device).await? {
                println!("{} {:?}", library.id, library.name);
            }
        }
    }
    Ok(())
}

/// Pulls one entry, printing its progress.
async fn pull(app: &LibraryApp, device: NodeId, entry: Uuid, into: &Path) -> anyhow::Result<()> {
    let mut events = app.subscribe();
    let finish = app
        .pull_entry(device, entry, into, PullOptions::default())
        .await?
        .finish();
    tokio::pin!(finish);
    let pulled = loop {
        tokio::select! {
            pulled = &mut finish => break pulled?,
            Ok(event) = events.recv() => {
                if let AppEvent::PullProgress { percentage, bytes_done, .. } = event {
                    eprint!("\r{percentage:5.1}% ({bytes_done} bytes)");
                }
            }
        }
    };
    eprintln!();
    println!(
        "pulled {} {:?} to {} ({} bytes, {} resumed), BLAKE3 checked",
        pulled.entry.entry_id,
        pulled.entry.path,
        pulled.path.display(),
        pulled.report.bytes_total,
        pulled.report.bytes_resumed
    );
    Ok(())
}

/// Announces, then prints events and asks on the terminal about pushed files until Ctrl-C.
async fn serve(app: &LibraryApp, mut questions: ConsentRequests) -> anyhow::Result<()> {
    let mut events = app.subscribe();
    for (device, error) in app.announce().await? {
        eprintln!(
            "could not announce to {device}: {}",
            tether::error_chain(&error)
        );
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            Ok(event) = events.recv() => match event {
                AppEvent::LibrariesAnnounced { from, libraries } => {
                    for library in libraries {
                        println!("{from} has {:?} ({} entries)", library.name, library.entry_count);
                    }
                }
                AppEvent::EntryServed { to, entry_id, report } => {
                    println!("{to} pulled entry {entry_id} ({} bytes)", report.bytes_total);
                }
                AppEvent::FilesReceived { from, report } => {
                    println!("received {} files ({} bytes) from {from}", report.files, report.bytes_total);
                }
                _ => {}
            },
            Some(question) = questions.next() => {
                let offer = &question.offer;
                println!(
                    "{:?} offers {} files ({} bytes): {:?}. Accept? [y/N]",
                    offer.device_name.to_string(), offer.files, offer.total_bytes, offer.top_level
                );
                match lines.next_line().await?.as_deref().map(str::trim) {
                    Some("y" | "Y" | "yes") => question.accept(),
                    _ => question.decline("declined on the other device"),
                }
            }
        }
    }
}
