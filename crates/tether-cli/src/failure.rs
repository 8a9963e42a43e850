//! Errors with their exit code. The codes are documented in `--help` and the README.

use std::fmt;

use tether::{ErrorChain, NetworkError};

/// Any other error (one sentence on stderr says what and the way out).
pub(crate) const ERROR: u8 = 1;
/// Bad usage: a wrong flag, path, rate or name.
pub(crate) const USAGE: u8 = 2;
/// Pairing failed: a wrong, expired or used code, or nobody waiting with it.
pub(crate) const PAIRING: u8 = 3;
/// The device is not paired, or offline / unreachable.
pub(crate) const DEVICE: u8 = 4;
/// A transfer did not complete; run the same send again to resume.
pub(crate) const TRANSFER: u8 = 5;
/// An internal error: a task of Tether panicked, which is a bug (`EX_SOFTWARE` of sysexits).
pub(crate) const INTERNAL: u8 = 70;
/// Stopped with Ctrl-C (a send keeps what the receiver verified, for a resume).
pub(crate) const INTERRUPTED: u8 = 130;

/// What `--help` says about exit codes.
pub(crate) const EXIT_CODES: &str = "Exit codes:
  0    success (send: the receiver verified everything)
  1    an error; one sentence on stderr says what and the way out
  2    bad usage: a wrong flag, path, rate or name
  3    pairing failed: a wrong, expired or used code
  4    the device is not paired, or offline / unreachable
  5    a transfer did not complete (after --retry-for); run it again to resume
  70   an internal error (a bug in Tether); please report it with the log
  130  stopped with Ctrl-C (a send keeps what was verified)";

/// An error that carries its exit code.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }

    pub(crate) fn interrupted(message: impl Into<String>) -> Self {
        Self::new(INTERRUPTED, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// A failure to reach `device`, as the one sentence a person needs.
pub(crate) fn offline(device: &str, error: NetworkError) -> anyhow::Error {
    match error {
        NetworkError::DeviceOffline(_)
        | NetworkError::ConnectionFailed { .. }
        | NetworkError::TimedOut { .. }
        | NetworkError::Transport(_) => Failure::new(
            DEVICE,
            format!(
                "{device} is offline or unreachable ({}); run `tether up` on it and try again",
                ErrorChain(&error)
            ),
        )
        .into(),
        NetworkError::Refused { .. } => Failure::new(
            DEVICE,
            format!(
                "{}; pair the devices again (`tether pair` / `tether join`)",
                ErrorChain(&error)
            ),
        )
        .into(),
        NetworkError::Panicked { .. } => internal(&error).into(),
        other => other.into(),
    }
}

/// A bug in Tether (a task panicked), as the one sentence a person needs: what to report.
fn internal(error: &NetworkError) -> Failure {
    Failure::new(
        INTERNAL,
        format!(
            "{}; please report it with the log (run it again with RUST_LOG=debug)",
            ErrorChain(error)
        ),
    )
}

/// The exit code for `error`.
pub(crate) fn exit_code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return failure.code;
        }
        if let Some(error) = cause.downcast_ref::<NetworkError>() {
            return match error {
                NetworkError::Pairing(_)
                | NetworkError::Code(_)
                | NetworkError::Ticket(_)
                | NetworkError::CodeEnded(_)
                | NetworkError::NoPairingPeer { .. }
                | NetworkError::AmbiguousPairingPeer { .. } => PAIRING,
                NetworkError::DeviceNotPaired(_)
                | NetworkError::UnknownDevice(_)
                | NetworkError::DeviceOffline(_) => DEVICE,
                NetworkError::Transfer(_) | NetworkError::BandwidthQuota(_) => TRANSFER,
                NetworkError::Panicked { .. } => INTERNAL,
                _ => ERROR,
            };
        }
    }
    ERROR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_found_through_context() {
        let codes = [
            0,
            ERROR,
            USAGE,
            PAIRING,
            DEVICE,
            TRANSFER,
            INTERNAL,
            INTERRUPTED,
        ];
        for (i, a) in codes.iter().enumerate() {
            assert!(codes.iter().skip(i + 1).all(|b| a != b));
        }
        let error = anyhow::Error::from(NetworkError::UnknownDevice("x".into())).context("see");
        assert_eq!(exit_code(&error), DEVICE);
        let error = anyhow::Error::from(Failure::usage("bad")).context("outer");
        assert_eq!(exit_code(&error), USAGE);
        assert_eq!(exit_code(&anyhow::anyhow!("other")), ERROR);
    }

    #[test]
    fn a_panic_is_an_internal_error_not_an_offline_device() {
        let panicked = || NetworkError::Panicked {
            what: "the transfer task",
            message: "cannot convert float seconds to Duration".into(),
        };
        let error = offline("desk", panicked());
        assert_eq!(exit_code(&error), INTERNAL);
        let text = format!("{error:#}");
        assert!(text.contains("bug in Tether"), "{text}");
        assert!(text.contains("the transfer task panicked"), "{text}");
        assert!(text.contains("cannot convert float seconds"), "{text}");
        assert!(text.contains("RUST_LOG=debug"), "{text}");
        assert!(
            !text.contains("offline") && !text.contains("unreachable"),
            "{text}"
        );
        // Reaching the top through `?` and context, it keeps its code.
        let error = anyhow::Error::from(panicked()).context("sending");
        assert_eq!(exit_code(&error), INTERNAL);
        assert!(EXIT_CODES.contains(&format!("  {INTERNAL} ")));
    }
}
