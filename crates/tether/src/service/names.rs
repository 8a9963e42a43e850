//! A device's name follows its renames: a device that renames itself tells each device it
//! is paired with in a [`NameUpdate`] signed by its device key and stamped with the rename's
//! time; the receiver checks the signature against the sender's node id and shows the name of
//! the newest stamp (unless the person renamed that device there: their choice wins).
//!
//! An update goes out on every new link to a device that has not acknowledged the latest
//! rename, and at once to the devices connected when the rename happens, so a device that
//! was away hears of it when it next connects. Nothing is sent while a device keeps the name
//! it paired with.

use tether_identity::{DeviceName, NodeId, Signature, SigningContext};
use tether_wire::{ErrorCode, NameUpdate, NetworkMessage};
use tracing::debug;

use super::NetworkingService;
use crate::error::short;
use crate::{ErrorChain, NetworkError, NetworkEvent};

/// The context of a device's signature over its new name.
pub(crate) const NAME_SIGNING_CONTEXT: SigningContext =
    SigningContext::new("tether/v1/device-name");

/// The signed bytes: the stamp (8 bytes, big-endian), then the name's UTF-8.
fn signed_bytes(changed_ms: u64, name: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + name.len());
    bytes.extend_from_slice(&changed_ms.to_be_bytes());
    bytes.extend_from_slice(name.as_bytes());
    bytes
}

/// Why an update was not taken.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("the signature does not verify against the sender's key")]
    Signature,
    #[error("not a device name: {0}")]
    Name(#[from] tether_identity::DeviceNameError),
    #[error("the name reads as a device id")]
    IdLike,
}

/// Checks an update `from` a device: its signature, and the name as a device name.
fn check(from: &NodeId, update: &NameUpdate) -> Result<DeviceName, Refused> {
    from.verify(
        NAME_SIGNING_CONTEXT,
        &signed_bytes(update.changed_ms, &update.name),
        &Signature::from_bytes(&update.signature),
    )
    .map_err(|_| Refused::Signature)?;
    let name = DeviceName::new(update.name.clone())?;
    if name.looks_like_id() {
        return Err(Refused::IdLike);
    }
    Ok(name)
}

impl NetworkingService {
    /// This device's name as a signed update; `None` while it is the name it started with.
    fn own_name_update(&self) -> Option<NameUpdate> {
        let profile = self.inner.profile.read();
        if profile.name_changed_ms == 0 {
            return None;
        }
        let name = profile.device_name.as_str().to_owned();
        let changed_ms = profile.name_changed_ms;
        drop(profile);
        let signature = self
            .inner
            .keys
            .identity()
            .sign(NAME_SIGNING_CONTEXT, &signed_bytes(changed_ms, &name))
            .to_bytes();
        Some(NameUpdate {
            name,
            changed_ms,
            signature,
        })
    }

    /// Tells `node_id` this device's name, on a task, unless it acknowledged the latest
    /// rename already.
    pub(super) fn tell_name(&self, node_id: NodeId) {
        let Some(update) = self.own_name_update() else {
            return;
        };
        let told = self
            .inner
            .registry
            .paired_devices()
            .into_iter()
            .find(|device| device.node_id == node_id)
            .map(|device| device.names.told_ms);
        if told.is_none_or(|told| told >= update.changed_ms) {
            return;
        }
        let service = self.for_task();
        self.inner.tasks.spawn("a name update", async move {
            service.send_name(node_id, update).await;
        });
    }

    /// Tells every connected paired device this device's name (after a rename).
    pub(super) fn tell_name_to_connected(&self) {
        for link in self.inner.pool.open_links() {
            self.tell_name(link.node_id);
        }
    }

    async fn send_name(&self, node_id: NodeId, update: NameUpdate) {
        let changed_ms = update.changed_ms;
        match self
            .send_message(node_id, NetworkMessage::NameUpdate(update))
            .await
        {
            Ok(_) => {
                let registry = self.inner.registry.clone();
                let recorded =
                    tokio::task::spawn_blocking(move || registry.told_name(node_id, changed_ms))
                        .await;
                if let Ok(Err(error)) = recorded {
                    debug!(peer = %short(&node_id), error = %ErrorChain(&error), "recording a name update");
                }
            }
            // An older peer: it keeps the old name until it is updated; told again on the
            // next link.
            Err(NetworkError::Rejected {
                code: ErrorCode::UnknownMessage,
                ..
            }) => debug!(peer = %short(&node_id), "the device does not take name updates"),
            Err(error) => {
                debug!(peer = %short(&node_id), error = %ErrorChain(&error), "a name update was not delivered");
            }
        }
    }

    /// Takes in a name update a paired device sent: shows its new name when the signature
    /// holds and the stamp is newer than the last one taken.
    pub(super) async fn take_name_update(&self, from: NodeId, update: NameUpdate) {
        let name = match check(&from, &update) {
            Ok(name) => name,
            Err(error) => {
                debug!(peer = %short(&from), error = %ErrorChain(&error), "a name update was refused");
                return;
            }
        };
        let registry = self.inner.registry.clone();
        let changed_ms = update.changed_ms;
        let applied =
            tokio::task::spawn_blocking(move || registry.apply_own_rename(from, name, changed_ms))
                .await;
        match applied {
            Ok(Ok(Some(name))) => {
                debug!(peer = %short(&from), name = %name, "a paired device renamed itself");
                let _ = self.inner.events.send(NetworkEvent::DeviceRenamed {
                    node_id: from,
                    name,
                });
            }
            Ok(Ok(None)) => {}
            Ok(Err(error)) => {
                debug!(peer = %short(&from), error = %ErrorChain(&error), "a name update was not kept");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use tether_identity::NetworkIdentity;

    use super::*;

    fn update(identity: &NetworkIdentity, name: &str, changed_ms: u64) -> NameUpdate {
        NameUpdate {
            name: name.to_owned(),
            changed_ms,
            signature: identity
                .sign(NAME_SIGNING_CONTEXT, &signed_bytes(changed_ms, name))
                .to_bytes(),
        }
    }

    #[test]
    fn only_the_devices_own_signature_over_this_name_and_stamp_is_taken() {
        let desk = NetworkIdentity::from_secret_bytes(&[1; 32]);
        let other = NetworkIdentity::from_secret_bytes(&[2; 32]);
        let good = update(&desk, "office", 9);
        assert_eq!(check(&desk.node_id(), &good).unwrap().as_str(), "office");
        // Signed by another key, or for another name or stamp.
        assert!(matches!(
            check(&desk.node_id(), &update(&other, "office", 9)),
            Err(Refused::Signature)
        ));
        let renamed = NameUpdate {
            name: "evil".to_owned(),
            ..good.clone()
        };
        assert!(matches!(
            check(&desk.node_id(), &renamed),
            Err(Refused::Signature)
        ));
        let restamped = NameUpdate {
            changed_ms: 10,
            ..good
        };
        assert!(matches!(
            check(&desk.node_id(), &restamped),
            Err(Refused::Signature)
        ));
        // Signed, but not a device name.
        assert!(matches!(
            check(&desk.node_id(), &update(&desk, " ", 9)),
            Err(Refused::Name(_))
        ));
    }
}
