//! `tether pair` and `tether join`: showing the code or ticket, and the y/N question a
//! `tether pair` asks before it pairs with a joiner that proved the code.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tether::{NetworkError, NetworkingService, PairedDevice};
use tokio_util::sync::CancellationToken;

use crate::failure::Failure;
use crate::output::Sink;

/// How `tether pair` decides on a joiner that proved the code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Confirm {
    /// `--yes`: pair without asking.
    Yes,
    /// Ask the person on the terminal `tether pair` was typed in.
    Ask,
    /// No terminal to ask on and no `--yes`: reject.
    #[default]
    Refuse,
}

pub(super) async fn pair(
    node: &NetworkingService,
    ticket: bool,
    confirm: Confirm,
    sink: &Sink,
    cancel: &CancellationToken,
) -> Result<()> {
    let mut invite = if ticket {
        node.start_pairing_with_ticket()?
    } else {
        node.start_pairing_as_initiator()?
    };
    let minutes = invite.expires_in.as_secs().div_ceil(60);
    sink.line(
        "code",
        format!(
            "On the other device run `tether join` and enter:\n\n    {}\n\nThe code works once, for {minutes} minutes. Waiting...",
            invite.code
        ),
        json!({ "code": invite.code, "expires_in_s": invite.expires_in.as_secs() }),
    );
    if ticket && let Ok(qr) = qrcode::QrCode::new(invite.code.to_ascii_uppercase()) {
        sink.text(
            qr.render::<char>()
                .quiet_zone(true)
                .module_dimensions(2, 1)
                .build(),
        );
    }
    let expires_in = invite.expires_in;
    let result = tokio::select! {
        result = decide(&mut invite, confirm, sink) => result,
        () = tokio::time::sleep(expires_in) => Err(NetworkError::Pairing(tether::PairingError::Expired))
            .context("nobody joined in time; run `tether pair` again for a new code"),
        () = cancel.cancelled() => Err(Failure::interrupted("pairing cancelled").into()),
    };
    if result.is_err() {
        node.cancel_pairing();
    }
    show_paired(&result?, sink);
    Ok(())
}

pub(super) async fn join(
    node: &NetworkingService,
    code: &str,
    sink: &Sink,
    cancel: &CancellationToken,
) -> Result<()> {
    let device = tokio::select! {
        result = node.join_pairing(code) => result?,
        () = cancel.cancelled() => bail!(Failure::interrupted("joining cancelled")),
    };
    show_paired(&device, sink);
    Ok(())
}

/// Waits for a joiner that proves the code and pairs with it if `confirm` says so: at once
/// (`--yes`), after the person answers y on the terminal they ran `tether pair` in (this
/// process's, or the control socket client's when a `tether up` runs the pairing), or never
/// (no terminal).
async fn decide(
    invite: &mut tether::PairingInvite,
    confirm: Confirm,
    sink: &Sink,
) -> Result<PairedDevice> {
    if confirm == Confirm::Yes {
        return Ok(invite.paired().await?);
    }
    let pending = invite.pending().await?;
    let name = pending.device.device_name.to_string();
    let code = pending.verification_code.clone();
    sink.line(
        "pending",
        format!(
            "\"{name}\" ({}, node {}) proved the code.\nVerification code: {code} (the other screen shows the same one)",
            pending.device.device_type,
            pending.device.public_key.fmt_short(),
        ),
        json!({
            "name": name,
            "node_id": pending.device.public_key.to_string(),
            "verification_code": code,
        }),
    );
    if confirm == Confirm::Refuse {
        pending.reject();
        bail!(
            "rejected \"{name}\": there is no terminal to ask whether to pair (run `tether pair --yes` to pair with whoever proves the code)"
        );
    }
    // The initiator's exchange ends 60 s after the joiner came; no answer by then is no, and
    // so is a client of the control socket that went away (the command is cancelled).
    let question = format!("Pair with {name}? Verification code {code} [y/N] ");
    let yes = matches!(
        tokio::time::timeout(ANSWER_TIMEOUT, sink.ask(question)).await,
        Ok(true)
    );
    if !yes {
        pending.reject();
        bail!("rejected \"{name}\": not paired");
    }
    Ok(pending.accept().await?)
}

/// How long `tether pair` waits for the person's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(55);

fn show_paired(device: &PairedDevice, sink: &Sink) {
    sink.line(
        "paired",
        format!(
            "Paired with \"{}\" ({}, node {}).\nVerification code: {} (both screens show the same one)",
            device.device.device_name,
            device.device.device_type,
            device.device.public_key.fmt_short(),
            device.verification_code
        ),
        json!({
            "name": device.device.device_name.as_str(),
            "node_id": device.device.public_key.to_string(),
            "device_id": device.device.device_id.to_string(),
            "verification_code": device.verification_code,
        }),
    );
}
