//! `device.json`: this device's id, name and type, kept in the data directory.

use std::path::Path;

use rand_core::UnwrapErr;
use serde::{Deserialize, Serialize};
use tether_identity::{DeviceId, DeviceName, DeviceType};

use crate::NetworkError;

/// The profile file's name.
pub(crate) const PROFILE_FILE: &str = "device.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Profile {
    pub(crate) device_id: DeviceId,
    pub(crate) device_name: DeviceName,
    pub(crate) device_type: DeviceType,
}

impl Profile {
    /// Loads the profile, or writes a new one on first start (with `device_id`, else a fresh
    /// one). A given name or type replaces the stored one; a given id must equal the stored one.
    pub(crate) fn load_or_create(
        data_dir: &Path,
        device_id: Option<DeviceId>,
        name: Option<&DeviceName>,
        device_type: Option<DeviceType>,
    ) -> Result<Self, NetworkError> {
        let path = data_dir.join(PROFILE_FILE);
        let io = |source| NetworkError::Io {
            path: path.clone(),
            source,
        };
        let mut profile = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Self>(&bytes)
                .map_err(|error| io(std::io::Error::new(std::io::ErrorKind::InvalidData, error)))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                // A host name such as a container's `3f9a1c2d0e1b` reads as an id: not a name.
                let default_name = DeviceName::new(default_device_name())
                    .ok()
                    .filter(|name| !name.looks_like_id())
                    .map_or_else(|| DeviceName::new("tether device"), Ok)
                    .map_err(|e| NetworkError::Usage(tether_identity::error_chain(&e)))?;
                Self {
                    device_id: device_id
                        .unwrap_or_else(|| DeviceId::random(&mut UnwrapErr(getrandom::SysRng))),
                    device_name: default_name,
                    device_type: DeviceType::Desktop,
                }
            }
            Err(error) => return Err(io(error)),
        };
        if let Some(given) = device_id
            && given != profile.device_id
        {
            return Err(NetworkError::DeviceIdMismatch {
                stored: profile.device_id,
                given,
            });
        }
        if let Some(name) = name {
            profile.device_name = name.clone();
        }
        if let Some(device_type) = device_type {
            profile.device_type = device_type;
        }
        let bytes = serde_json::to_vec_pretty(&profile)
            .map_err(|error| io(std::io::Error::other(error)))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(profile)
    }
}

fn default_device_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "tether device".to_owned())
}
