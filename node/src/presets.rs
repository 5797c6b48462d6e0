//! Named testnet presets (`warren start --testnet NAME`): a network id and its bootstrap peers.
//!
//! The presets live in `node/testnets.toml`, compiled into the binary so a release carries the
//! list it was built with. A preset sets the network id and adds its bootstrap peers to whatever
//! the config file and `--bootstrap` give.

use std::collections::BTreeMap;

use libp2p::Multiaddr;
use serde::Deserialize;

use crate::error::NodeError;

/// The preset file, as shipped.
pub const PRESETS_TOML: &str = include_str!("../testnets.toml");

/// One named network.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// Network id.
    pub network: String,
    /// Bootstrap peers, full multiaddrs ending in `/p2p/PEER_ID`.
    pub bootstrap: Vec<Multiaddr>,
}

/// Every preset by name.
pub fn all() -> Result<BTreeMap<String, Preset>, NodeError> {
    toml::from_str(PRESETS_TOML)
        .map_err(|e| NodeError::Config(format!("testnets.toml (built in): {e}")))
}

/// The preset called `name`.
pub fn get(name: &str) -> Result<Preset, NodeError> {
    let all = all()?;
    match all.get(name) {
        Some(p) => Ok(p.clone()),
        None => Err(NodeError::Config(format!(
            "no testnet preset {name:?}; known: {}",
            all.keys().cloned().collect::<Vec<_>>().join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn shipped_presets_parse_and_validate() {
        let all = all().unwrap();
        assert!(all.contains_key("local"));
        assert!(all.contains_key("warren-testnet"));
        for (name, p) in all {
            let c = Config {
                network: p.network.clone(),
                bootstrap: p.bootstrap.clone(),
                ..Config::default()
            };
            c.validate()
                .unwrap_or_else(|e| panic!("preset {name}: {e}"));
        }
    }

    #[test]
    fn unknown_preset_lists_the_known_ones() {
        let err = get("nope").unwrap_err().to_string();
        assert!(
            err.contains("local") && err.contains("warren-testnet"),
            "{err}"
        );
    }
}
