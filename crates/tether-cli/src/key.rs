//! `tether key protect`: seals an unprotected key file with a passphrase, in place.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::json;
use tether::{KeyError, KeyManager};

use crate::failure::{ERROR, Failure};
use crate::output::Output;
use crate::settings::Settings;

#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Seal an unprotected key file with a passphrase, in place.
    Protect,
}

/// `tether key protect`.
pub(crate) async fn run(settings: &Settings, args: KeyArgs, out: Output) -> Result<()> {
    let KeyCommand::Protect = args.command;
    let dir = settings.data_dir()?;
    let config = settings.config(true)?;
    let keys = tokio::task::spawn_blocking(move || KeyManager::protect(&dir, &config.keys))
        .await?
        .map_err(|error| protect_failure(error, settings))?;
    out.line(
        "protected",
        &format!(
            "sealed the device key {} (node {}) with the passphrase; every start now needs it \
             (TETHER_PASSPHRASE, --passphrase-file or the terminal). The old unencrypted bytes \
             may survive in the disk's free space",
            keys.key_file().display(),
            keys.node_id().fmt_short()
        ),
        json!({
            "key_file": keys.key_file(),
            "node_id": keys.node_id().to_string(),
            "key_storage": "passphrase_file",
        }),
    );
    Ok(())
}

fn protect_failure(error: KeyError, settings: &Settings) -> anyhow::Error {
    let dir = settings.data_dir().unwrap_or_default();
    match error {
        KeyError::SealPassphraseRequired { .. } => Failure::usage(
            "a passphrase is needed to seal the key: give it with TETHER_PASSPHRASE or \
             --passphrase-file FILE, or run this from a terminal to be asked",
        )
        .into(),
        KeyError::AlreadyProtected { path, storage } => Failure::new(
            ERROR,
            format!(
                "the device key {} is already protected: {storage}; nothing changed",
                path.display()
            ),
        )
        .into(),
        KeyError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Failure::new(
                ERROR,
                format!(
                    "{} holds no device key; `tether init` makes one",
                    dir.display()
                ),
            )
            .into()
        }
        other => other.into(),
    }
}
