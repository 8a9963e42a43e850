//! `device.json`: this device's id, name and type, kept in the data directory.
//!
//! The file is pretty-printed JSON with three fields, `device_id` (a UUID), `device_name` and
//! `device_type`, written to `device.json.tmp` and renamed over `device.json`. It is not secret:
//! the device tells every paired device the same three things.

use std::io;
use std::path::{Path, PathBuf};

use rand_core::UnwrapErr;
use serde::{Deserialize, Serialize};
use tether_identity::{DeviceId, DeviceName, DeviceNameError, DeviceType};

/// The profile file's name.
pub const PROFILE_FILE: &str = "device.json";

/// The name a device gets when neither the caller nor the host gives a usable one.
const FALLBACK_NAME: &str = "tether device";

/// This device's id, name and type, as kept in [`PROFILE_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Profile {
    /// The device's stable id, chosen at random on first start (unless the app gave one).
    pub device_id: DeviceId,
    /// The device's name, shown to paired devices.
    pub device_name: DeviceName,
    /// The kind of device.
    pub device_type: DeviceType,
    /// When the name was last changed, in milliseconds since the Unix epoch (strictly
    /// increasing across renames); 0 while it is the first name. Paired devices are told the
    /// name with this stamp, and take a newer stamp over an older one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub name_changed_ms: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// Why the profile could not be loaded or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// Reading, encoding or writing the file failed.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What was being done: "read", "encode" or "write".
        action: &'static str,
        /// The profile file.
        path: PathBuf,
        /// The operating system's (or the encoder's) error.
        #[source]
        source: io::Error,
    },
    /// The file is not a profile (damaged or not JSON). It is left as it is.
    #[error("the profile {} is not valid", path.display())]
    Corrupt {
        /// The profile file.
        path: PathBuf,
        /// What the parser found.
        #[source]
        source: serde_json::Error,
    },
    /// The data directory belongs to another device id than the one given.
    #[error("the data directory belongs to device {stored}, not to {given}")]
    DeviceIdMismatch {
        /// The id stored in the profile.
        stored: DeviceId,
        /// The id the caller gave.
        given: DeviceId,
    },
    /// No valid default name could be made (never expected: the fallback name is valid).
    #[error("no valid default device name")]
    DefaultName(#[source] DeviceNameError),
}

impl Profile {
    /// Loads the profile in `data_dir`, or writes a new one on first start (with `device_id`,
    /// else a fresh random one; named after the host, else "tether device"; a desktop). A given
    /// name or type replaces the stored one; a given id must equal the stored one.
    pub fn load_or_create(
        data_dir: &Path,
        device_id: Option<DeviceId>,
        name: Option<&DeviceName>,
        device_type: Option<DeviceType>,
    ) -> Result<Self, ProfileError> {
        load_or_create_with(data_dir, device_id, name, device_type, host_name)
    }
}

/// [`Profile::load_or_create`], with the host's name from `host_name` (asked for only when a
/// new profile is made).
fn load_or_create_with(
    data_dir: &Path,
    device_id: Option<DeviceId>,
    name: Option<&DeviceName>,
    device_type: Option<DeviceType>,
    host_name: impl FnOnce() -> Option<String>,
) -> Result<Profile, ProfileError> {
    let path = data_dir.join(PROFILE_FILE);
    let io = |action, source| ProfileError::Io {
        action,
        path: path.clone(),
        source,
    };
    let mut profile = match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice::<Profile>(&bytes).map_err(|source| ProfileError::Corrupt {
                path: path.clone(),
                source,
            })?
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Profile {
            device_id: device_id
                .unwrap_or_else(|| DeviceId::random(&mut UnwrapErr(getrandom::SysRng))),
            device_name: default_name(host_name())?,
            device_type: DeviceType::Desktop,
            name_changed_ms: 0,
        },
        Err(error) => return Err(io("read", error)),
    };
    if let Some(given) = device_id
        && given != profile.device_id
    {
        return Err(ProfileError::DeviceIdMismatch {
            stored: profile.device_id,
            given,
        });
    }
    if let Some(name) = name
        && *name != profile.device_name
    {
        profile.device_name = name.clone();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        profile.name_changed_ms = now.max(profile.name_changed_ms.saturating_add(1));
    }
    if let Some(device_type) = device_type {
        profile.device_type = device_type;
    }
    let bytes = serde_json::to_vec_pretty(&profile)
        .map_err(|error| io("encode", io::Error::other(error)))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes).map_err(|error| io("write", error))?;
    std::fs::rename(&tmp, &path).map_err(|error| io("write", error))?;
    Ok(profile)
}

/// The host's name as a device name; "tether device" when there is none, it is not a valid
/// name, or it reads as an id (a container's host name such as `3f9a1c2d0e1b`).
fn default_name(host_name: Option<String>) -> Result<DeviceName, ProfileError> {
    host_name
        .and_then(|name| DeviceName::new(name).ok())
        .filter(|name| !name.looks_like_id())
        .map_or_else(|| DeviceName::new(FALLBACK_NAME), Ok)
        .map_err(ProfileError::DefaultName)
}

/// `/etc/hostname`, trimmed, if it names anything.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/etc/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]

    use super::*;

    fn named(name: &str) -> impl FnOnce() -> Option<String> {
        let name = name.to_owned();
        move || Some(name)
    }

    fn id(n: u128) -> DeviceId {
        let hex = format!("{n:032x}");
        let text = format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        );
        text.parse().unwrap()
    }

    /// The file's bytes are part of the on-disk format: pretty JSON, these three fields, in
    /// this order, no trailing newline.
    #[test]
    fn the_file_format_is_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let given = id(0x0123_4567_89ab_4def_8123_4567_89ab_cdef);
        let profile =
            load_or_create_with(dir.path(), Some(given), None, None, named("studio")).unwrap();
        let written = std::fs::read_to_string(dir.path().join(PROFILE_FILE)).unwrap();
        assert_eq!(
            written,
            "{\n  \"device_id\": \"01234567-89ab-4def-8123-456789abcdef\",\n  \
             \"device_name\": \"studio\",\n  \"device_type\": \"desktop\"\n}"
        );
        assert_eq!(profile.device_id, given);
        assert!(!dir.path().join("device.json.tmp").exists());
    }

    /// A file written by an earlier version reads back unchanged, and is rewritten to the same
    /// bytes.
    #[test]
    fn an_existing_file_is_read_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = "{\n  \"device_id\": \"00000000-0000-4000-8000-000000000007\",\n  \
                     \"device_name\": \"kitchen tablet\",\n  \"device_type\": \"tablet\"\n}";
        std::fs::write(dir.path().join(PROFILE_FILE), bytes).unwrap();
        let profile = load_or_create_with(dir.path(), None, None, None, || {
            panic!("the host name is not asked for an existing profile")
        })
        .unwrap();
        assert_eq!(
            profile.device_id,
            id(0x0000_0000_0000_4000_8000_0000_0000_0007)
        );
        assert_eq!(profile.device_name.as_str(), "kitchen tablet");
        assert_eq!(profile.device_type, DeviceType::Tablet);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(PROFILE_FILE)).unwrap(),
            bytes
        );
    }

    #[test]
    fn a_new_profile_gets_a_random_id_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_with(dir.path(), None, None, None, named("laptop")).unwrap();
        let other = tempfile::tempdir().unwrap();
        let elsewhere = load_or_create_with(other.path(), None, None, None, named("x")).unwrap();
        assert_ne!(first.device_id, elsewhere.device_id);
        let again = Profile::load_or_create(dir.path(), None, None, None).unwrap();
        assert_eq!(again, first);
    }

    #[test]
    fn a_given_name_or_type_replaces_the_stored_one() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create_with(dir.path(), None, None, None, named("laptop")).unwrap();
        let name = DeviceName::new("phone").unwrap();
        let changed =
            Profile::load_or_create(dir.path(), None, Some(&name), Some(DeviceType::Phone))
                .unwrap();
        assert_eq!(changed.device_name, name);
        assert_eq!(changed.device_type, DeviceType::Phone);
        assert_eq!(
            Profile::load_or_create(dir.path(), None, None, None).unwrap(),
            changed
        );
    }

    #[test]
    fn a_rename_is_stamped_and_stamps_only_grow() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_with(dir.path(), None, None, None, named("laptop")).unwrap();
        assert_eq!(first.name_changed_ms, 0);
        let same = DeviceName::new("laptop").unwrap();
        let unchanged = Profile::load_or_create(dir.path(), None, Some(&same), None).unwrap();
        assert_eq!(unchanged.name_changed_ms, 0, "the same name is no rename");
        let desk = DeviceName::new("desk").unwrap();
        let renamed = Profile::load_or_create(dir.path(), None, Some(&desk), None).unwrap();
        assert!(renamed.name_changed_ms > 0);
        let again = Profile::load_or_create(dir.path(), None, Some(&same), None).unwrap();
        assert!(again.name_changed_ms > renamed.name_changed_ms);
        assert_eq!(
            Profile::load_or_create(dir.path(), None, None, None).unwrap(),
            again
        );
    }

    #[test]
    fn another_device_id_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let stored = id(1);
        load_or_create_with(dir.path(), Some(stored), None, None, named("a")).unwrap();
        let before = std::fs::read(dir.path().join(PROFILE_FILE)).unwrap();
        let name = DeviceName::new("renamed").unwrap();
        let error =
            Profile::load_or_create(dir.path(), Some(id(2)), Some(&name), None).unwrap_err();
        assert!(
            matches!(error, ProfileError::DeviceIdMismatch { stored: s, given } if s == stored && given == id(2)),
            "{error:?}"
        );
        assert_eq!(
            std::fs::read(dir.path().join(PROFILE_FILE)).unwrap(),
            before
        );
        // The same id is fine.
        Profile::load_or_create(dir.path(), Some(stored), None, None).unwrap();
    }

    #[test]
    fn a_damaged_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROFILE_FILE);
        std::fs::write(&path, b"{\"device_id\": 7").unwrap();
        let error = Profile::load_or_create(dir.path(), None, None, None).unwrap_err();
        assert!(
            matches!(&error, ProfileError::Corrupt { path: p, .. } if *p == path),
            "{error:?}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"device_id\": 7");
    }

    #[test]
    fn an_unreadable_profile_is_an_io_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PROFILE_FILE);
        std::fs::create_dir(&path).unwrap();
        let error = Profile::load_or_create(dir.path(), None, None, None).unwrap_err();
        assert!(
            matches!(&error, ProfileError::Io { action: "read", path: p, .. } if *p == path),
            "{error:?}"
        );
        assert!(error.to_string().contains("device.json"), "{error}");
    }

    /// A host name that is no good as a device name gives way to "tether device".
    #[test]
    fn the_default_name_comes_from_the_host_unless_it_reads_as_an_id() {
        let name = |host: Option<&str>| {
            default_name(host.map(str::to_owned))
                .unwrap()
                .as_str()
                .to_owned()
        };
        assert_eq!(name(Some("studio")), "studio");
        assert_eq!(name(Some("3f9a1c2d0e1b")), FALLBACK_NAME);
        assert_eq!(name(None), FALLBACK_NAME);
        assert_eq!(name(Some(&"x".repeat(10_000))), FALLBACK_NAME);
    }
}
