//! Makes a new device identity with the operating system's random generator and prints its
//! public parts; shows that a signature verifies only under the context it was made for.
//!
//! `cargo run -p tether-identity --example new_identity -- [DEVICE NAME]`
#![allow(clippy::print_stdout, missing_docs)]

use tether_identity::{
    DeviceId, DeviceInfo, DeviceName, DeviceType, NetworkIdentity, SigningContext,
};

const DEMO: SigningContext = SigningContext::new("tether/v1/example/new-identity");
const OTHER: SigningContext = SigningContext::new("tether/v1/example/other-purpose");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "my laptop".to_owned());
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let identity = NetworkIdentity::generate(&mut rng);
    let info = DeviceInfo {
        device_id: DeviceId::random(&mut rng),
        device_name: DeviceName::new(name)?,
        device_type: DeviceType::Laptop,
        public_key: identity.node_id(),
    };
    println!("{}", serde_json::to_string_pretty(&info)?);

    let signature = identity.sign(DEMO, b"hello");
    let same = identity
        .node_id()
        .verify(DEMO, b"hello", &signature)
        .is_ok();
    let other = identity
        .node_id()
        .verify(OTHER, b"hello", &signature)
        .is_ok();
    println!("signature verifies under its own context: {same}; under another context: {other}");
    println!("(the secret key is never printed; {identity:?})");
    Ok(())
}
