//! What a device says about itself: `DeviceId`, `DeviceType`, `DeviceName`, `DeviceInfo`.

use std::fmt;
use std::str::FromStr;

use rand_core::CryptoRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::{DeviceNameError, IdentityError, NodeId};

/// A device's stable id, chosen at random when the device is set up.
///
/// Unlike [`NodeId`] it is not a key: it names the device in an application's data (a library
/// records which device holds which file), so it survives a key rotation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceId(Uuid);

impl DeviceId {
    /// A new random (version 4) id from the given generator.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        Self(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }

    /// Wraps an existing UUID.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.0.hyphenated())
    }
}

impl FromStr for DeviceId {
    type Err = IdentityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(text)
            .map(Self)
            .map_err(|_| IdentityError::DeviceIdText)
    }
}

/// The kind of device, for icons and for choosing sensible defaults.
///
/// A kind this version does not know (sent by a newer peer) reads as [`DeviceType::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeviceType {
    /// A desktop computer.
    Desktop,
    /// A laptop.
    Laptop,
    /// A phone.
    Phone,
    /// A tablet.
    Tablet,
    /// A server without a person in front of it.
    Server,
    /// Anything else.
    Other,
}

impl DeviceType {
    /// The lowercase name used on the wire and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Desktop => "desktop",
            Self::Laptop => "laptop",
            Self::Phone => "phone",
            Self::Tablet => "tablet",
            Self::Server => "server",
            Self::Other => "other",
        }
    }

    /// Reads a name written by [`Self::as_str`]; anything else is [`DeviceType::Other`].
    pub fn from_name(name: &str) -> Self {
        match name {
            "desktop" => Self::Desktop,
            "laptop" => Self::Laptop,
            "phone" => Self::Phone,
            "tablet" => Self::Tablet,
            "server" => Self::Server,
            _ => Self::Other,
        }
    }
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DeviceType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DeviceType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Self::from_name(&name))
    }
}

/// A device's human name, such as "Anna's laptop", checked so it can be shown safely.
///
/// A name has 1 to [`DeviceName::MAX_CHARS`] characters, no surrounding whitespace, no control
/// characters and no bidirectional-text overrides (which can make one name render as another).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceName(String);

impl DeviceName {
    /// The most characters a name may have.
    pub const MAX_CHARS: usize = 64;

    /// Checks and wraps a name.
    pub fn new(name: impl Into<String>) -> Result<Self, DeviceNameError> {
        let name = name.into();
        if name.trim().is_empty() {
            return Err(DeviceNameError::Empty);
        }
        let chars = name.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(DeviceNameError::TooLong {
                actual: chars,
                max: Self::MAX_CHARS,
            });
        }
        if name.trim() != name {
            return Err(DeviceNameError::SurroundingWhitespace);
        }
        if name.chars().any(char::is_control) {
            return Err(DeviceNameError::ControlCharacter);
        }
        if name.chars().any(is_bidi_control) {
            return Err(DeviceNameError::BidiControl);
        }
        Ok(Self(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The fewest characters of a node id or device id that pick a device by its id.
    pub const MIN_ID_PREFIX_CHARS: usize = 4;

    /// Whether `text` can be read as the start of a node id (hex) or of a device id (a
    /// hyphenated UUID), in any letter case, of at least [`Self::MIN_ID_PREFIX_CHARS`]
    /// characters: what a user may type to pick a device by its id, as in
    /// `tether send 3f9a1c2d0e`. The one rule for both sides: a name must not be such text.
    pub fn is_id_prefix(text: &str) -> bool {
        let bytes = text.as_bytes();
        if bytes.len() < Self::MIN_ID_PREFIX_CHARS {
            return false;
        }
        let node_id = bytes.len() <= 64 && bytes.iter().all(u8::is_ascii_hexdigit);
        let device_id = bytes.len() <= 36
            && bytes.iter().enumerate().all(|(at, byte)| match at {
                8 | 13 | 18 | 23 => *byte == b'-',
                _ => byte.is_ascii_hexdigit(),
            });
        node_id || device_id
    }

    /// Whether this name reads as an id prefix ([`Self::is_id_prefix`]), so that it could pass
    /// for another device where a device is picked by name or id. Such a name is refused when
    /// a device is renamed and when a peer brings it to pairing; one stored before that rule
    /// still loads.
    pub fn looks_like_id(&self) -> bool {
        Self::is_id_prefix(&self.0)
    }
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

impl TryFrom<String> for DeviceName {
    type Error = DeviceNameError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::new(name)
    }
}

impl From<DeviceName> for String {
    fn from(name: DeviceName) -> Self {
        name.0
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a device tells its peers about itself.
///
/// Every field is a claim until checked: [`DeviceInfo::check_claimed_key`] compares
/// `public_key` with the key the connection authenticated, and the name was validated when the
/// value was built or deserialized.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The device's stable id.
    pub device_id: DeviceId,
    /// The device's human name.
    pub device_name: DeviceName,
    /// The kind of device.
    pub device_type: DeviceType,
    /// The device's public key, equal to its iroh endpoint id.
    pub public_key: NodeId,
}

impl DeviceInfo {
    /// Fails unless the key this info claims is the one the transport authenticated.
    pub fn check_claimed_key(&self, authenticated: &NodeId) -> Result<(), IdentityError> {
        if &self.public_key == authenticated {
            Ok(())
        } else {
            Err(IdentityError::ClaimedKeyMismatch {
                claimed: self.public_key.to_string(),
                authenticated: authenticated.to_string(),
            })
        }
    }
}
