//! `warren init`: writes a commented `config.toml` into the data directory.
//!
//! The file is the effective config (defaults, a testnet preset, the flags given to `init`) as
//! TOML, with a comment above every key saying what it does, so a person can edit it by hand.
//! `start` reads it back (`DATA_DIR/config.toml`); a test checks the commented text parses back
//! to the same config.

use crate::config::Config;
use crate::error::NodeError;

/// Comments by section and key (`""` is the top level).
const COMMENTS: &[(&str, &str, &str)] = &[
    (
        "",
        "network",
        "Network id: nodes of another id are refused (\"local\" for a devnet, \"warren-testnet\" for the public testnet).",
    ),
    (
        "",
        "listen",
        "libp2p listen addresses. 0.0.0.0 listens on every interface; forward TCP and UDP 4001 on a home router if you can.",
    ),
    (
        "",
        "bootstrap",
        "Peers dialled at start, full multiaddrs ending in /p2p/PEER_ID (a --testnet preset adds its own).",
    ),
    ("", "mdns", "Discover peers on the local network with mDNS."),
    (
        "",
        "kad_mode",
        "DHT mode: auto (server once reachable), server, or client.",
    ),
    (
        "",
        "roles",
        "Roles offered: station (stores blocks), operator (runs inference), gate, middle, relay (onion hops).",
    ),
    (
        "",
        "api_listen",
        "Local control API and dashboard: loopback only; port 0 picks a free port (written to DATA_DIR/api.addr).",
    ),
    (
        "",
        "gateway",
        "Read-only HTTP gateway (/warren/CID/path), loopback only; off when absent (address in DATA_DIR/gateway.addr).",
    ),
    ("", "max_peers", "Connections kept to other peers."),
    (
        "",
        "record_ttl_secs",
        "Lifetime of this node's signed record in the DHT, seconds (republished at half of it).",
    ),
    ("", "log_format", "Log format: text or json."),
    ("storage", "", "Storage offered to the mesh (role station)."),
    (
        "storage",
        "tier",
        "hot (fast disk, always on) or cold (bulk).",
    ),
    (
        "storage",
        "offer_bytes",
        "Bytes offered; the node never stores more (it refuses replicas and puts past it).",
    ),
    (
        "compute",
        "",
        "Compute offered to the mesh (role operator).",
    ),
    (
        "compute",
        "cpu_cores",
        "CPU cores offered; 0 offers every detected core. RAM and GPUs are detected at start.",
    ),
    ("compute", "models", "Names of the models served."),
    ("price", "", "Prices asked, in micro-credits."),
    (
        "credits",
        "",
        "Credits (spec/credits.md): receipts sent every receipt_every_ms; [credits.policy] is the rate card in nano-credits, the free allowance, thresholds and the receipt window.",
    ),
    ("mesh", "", "Storage mesh timers and defaults."),
    ("mesh", "rf", "Default replication factor of put."),
    (
        "mesh",
        "fault_inject",
        "Tests only: keep \"none\" on every real node.",
    ),
    ("nat", "", "NAT traversal for a node at home."),
    (
        "nat",
        "relays",
        "Public peers to hold a circuit relay reservation on (/…/p2p/PEER_ID); others reach this node through them, then directly after hole punching (DCUtR).",
    ),
    (
        "nat",
        "auto_relay",
        "When AutoNAT finds this node unreachable, reserve a relay circuit on the bootstrap peers too.",
    ),
    (
        "nat",
        "relay_server",
        "Serve short relay circuits for other peers' hole punching.",
    ),
    (
        "nat",
        "external_addrs",
        "Addresses this node is known to be reachable at (a public node with a fixed address).",
    ),
];

fn comment(section: &str, key: &str) -> Option<&'static str> {
    COMMENTS
        .iter()
        .find(|(s, k, _)| *s == section && *k == key)
        .map(|(_, _, c)| *c)
}

/// `config` as TOML with a comment above every known key.
pub fn commented_toml(config: &Config) -> Result<String, NodeError> {
    let plain = config.to_toml()?;
    let mut out = String::from(
        "# warren node configuration, written by `warren init`.\n\
         # Flags given to `warren start` override what is here; `warren start --dump-config`\n\
         # prints the merged result.\n\n",
    );
    let mut section = String::new();
    for line in plain.lines() {
        let trimmed = line.trim();
        let note = if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            section = name.to_owned();
            comment(&section, "")
        } else if let Some((key, _)) = trimmed.split_once(" = ") {
            comment(&section, key.trim())
        } else {
            None
        };
        if let Some(note) = note {
            out.push_str("# ");
            out.push_str(note);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commented_config_parses_back_and_comments_every_key() {
        let mut c = Config::default();
        c.storage.offer_bytes = 200 << 30;
        c.nat.relays = vec![
            "/ip4/1.2.3.4/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
                .parse()
                .unwrap(),
        ];
        let text = commented_toml(&c).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        for key in [
            "network",
            "listen",
            "bootstrap",
            "roles",
            "offer_bytes",
            "tier",
            "relays",
        ] {
            let at = text
                .find(&format!("\n{key} = "))
                .unwrap_or_else(|| panic!("{key}"));
            let before = &text[..at];
            assert!(
                before.lines().last().unwrap().starts_with("# "),
                "{key} has no comment:\n{text}"
            );
        }
    }
}
