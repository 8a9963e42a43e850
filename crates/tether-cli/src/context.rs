//! How the node running a command was started, and which paired device a name means.

use anyhow::{Context, Result, anyhow};
use tether::{DeviceInfo, DeviceName, NetworkError, NetworkingService, NodeId};

use crate::failure::Failure;
use crate::settings::Network;

/// How the node running a command was started.
#[derive(Debug, Clone)]
pub(crate) struct NodeContext {
    pub(crate) network: Network,
    /// A `tether up` node (not a short-lived one).
    pub(crate) running: bool,
}

/// Finds a paired device by name, device id or node-id prefix (at least 4 characters).
pub(crate) fn resolve(node: &NetworkingService, wanted: &str) -> Result<NodeId> {
    let paired: Vec<DeviceInfo> = node.paired_devices().into_iter().map(|d| d.info).collect();
    match candidates(&paired, wanted).as_slice() {
        [one] => Ok(one.public_key),
        [] => Err(anyhow!(NetworkError::UnknownDevice(wanted.to_owned())))
            .context("see `tether devices` for the paired devices"),
        several => {
            let listed: Vec<String> = several
                .iter()
                .map(|d| {
                    format!(
                        "{:?} (node {})",
                        d.device_name.as_str(),
                        d.public_key.fmt_short()
                    )
                })
                .collect();
            Err(Failure::usage(format!(
                "{wanted:?} could be any of {} paired devices: {}; use more of its node id (see `tether devices`)",
                several.len(),
                listed.join(", ")
            ))
            .into())
        }
    }
}

/// The paired devices `wanted` may mean: its exact name, or (when it reads as an id prefix)
/// the start of its node id or device id. Names and ids are matched together, so a name that
/// is also the start of another device's id matches both and is an ambiguity, never a win
/// for the name.
fn candidates<'a>(devices: &'a [DeviceInfo], wanted: &str) -> Vec<&'a DeviceInfo> {
    let by_id = DeviceName::is_id_prefix(wanted);
    let lower = wanted.to_ascii_lowercase();
    devices
        .iter()
        .filter(|d| {
            d.device_name.as_str() == wanted
                || (by_id
                    && (d.public_key.to_string().starts_with(&lower)
                        || d.device_id.to_string().starts_with(&lower)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use tether::{DeviceId, DeviceType};

    use super::*;

    /// Public keys from RFC 8032's test vectors: valid points with known hex.
    const KEYS: [&str; 3] = [
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
    ];

    fn device(key: &str, id: u128, name: &str) -> DeviceInfo {
        DeviceInfo {
            device_id: DeviceId::from_uuid(tether::Uuid::from_u128(id)),
            device_name: DeviceName::new(name).unwrap(),
            device_type: DeviceType::Laptop,
            public_key: key.parse().unwrap(),
        }
    }

    fn names<'a>(found: &[&'a DeviceInfo]) -> Vec<&'a str> {
        found.iter().map(|d| d.device_name.as_str()).collect()
    }

    #[test]
    fn a_name_that_is_also_another_devices_id_prefix_is_ambiguous() {
        // "d75a980182" was stored as the phone's name before such names were refused: it is
        // the desk's short node id.
        let devices = [
            device(KEYS[0], 1, "desk"),
            device(KEYS[1], 2, "d75a980182"),
            device(KEYS[2], 0xabcd << 112, "tablet"),
        ];
        assert_eq!(
            names(&candidates(&devices, "d75a980182")),
            ["desk", "d75a980182"]
        );
        assert_eq!(names(&candidates(&devices, "D75A")), ["desk"]);
        assert_eq!(names(&candidates(&devices, "desk")), ["desk"]);
        assert_eq!(names(&candidates(&devices, "3d40")), ["d75a980182"]);
        // A device id prefix.
        assert_eq!(names(&candidates(&devices, "abcd0000-0")), ["tablet"]);
        // Too short to be an id: only a name.
        assert!(candidates(&devices, "d75").is_empty());
    }
}
