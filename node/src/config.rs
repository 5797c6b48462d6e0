//! Node configuration: a serde `Config` with defaults, read from TOML, overridden by flags.
//!
//! Precedence: built-in defaults < the config file (`--config FILE`, else `DATA_DIR/config.toml`
//! when present) < command-line flags. `warren start --dump-config` prints the merged result, so
//! what a flag does can be checked without starting anything.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};
use warren_protocol::{Role, Tier};

use crate::error::NodeError;

/// The network id used when none is configured.
pub const DEFAULT_NETWORK: &str = "warren-testnet";

/// How the node runs Kademlia.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KadMode {
    /// Server when every listen address is loopback (a devnet); otherwise libp2p decides from
    /// confirmed external addresses.
    Auto,
    /// Always answer DHT requests (devnets, public bootstrap peers).
    Server,
    /// Never answer DHT requests (a node that cannot be reached).
    Client,
}

/// Output format of the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// What this node offers to store for the mesh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Tier of the offer: `hot` (fast, online) or `cold` (bulk).
    pub tier: Tier,
    /// Bytes offered to the mesh.
    pub offer_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            tier: Tier::Cold,
            offer_bytes: 1 << 30,
        }
    }
}

/// What this node offers to compute for the mesh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct ComputeConfig {
    /// CPU cores offered; 0 means all detected cores.
    pub cpu_cores: u32,
    /// Model names served.
    pub models: Vec<String>,
    /// Address space each model worker may use beyond its own at start, in MiB; 0: twice the
    /// model's files plus 1 GiB. A model that needs more fails to load (the worker ends, the
    /// node goes on).
    pub worker_memory_mb: u64,
    /// Longest a model worker may take over one load or job, in seconds (0: 300); past it the
    /// worker is killed and the job fails.
    pub worker_deadline_secs: u64,
}

/// A fault a node can be told to simulate, **for tests only**: how the mesh and the reputation
/// system treat a peer that misbehaves persistently. A real node never sets one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FaultInject {
    /// No fault (the default).
    #[default]
    None,
    /// A faulty disk: blocks are stored and served as usual, but every proof-of-storage answer
    /// carries an altered tag, so every audit of this node fails, however often its blocks are
    /// refilled.
    CorruptAudits,
    /// A dishonest operator: inference results are altered before they are sent (every embedding
    /// shifted, the last generated token changed), so redundant execution catches it.
    PerturbInference,
    /// An overloaded or badly connected holder: every block it serves is answered 5 s late, so
    /// fetchers should turn to faster holders.
    SlowBlocks,
    /// A hostile holder: every block it serves has one byte altered, so it no longer hashes to its
    /// id and fetchers should refuse it and report the holder.
    CorruptBlocks,
    /// A slow operator: every inference job waits [`SLOW_INFERENCE_DELAY`] before it starts, so
    /// requesters that rank by speed should turn to faster operators.
    SlowInference,
    /// A busy holder: other work takes all but [`BUSY_BLOCKS_WORKERS`] of its block workers,
    /// and every block it serves holds one for [`BUSY_BLOCKS_DELAY`], so two fetchers at once
    /// make it contended (and its credits order who is served first).
    BusyBlocks,
    /// A busy operator: other work takes all but one of its job slots, and every job holds its
    /// slot [`BUSY_INFERENCE_DELAY`] before it runs, so two requesters at once make it contended
    /// (and its credits order who gets the slot).
    BusyInference,
}

/// How long a [`FaultInject::BusyInference`] operator holds a job's slot before it runs.
pub const BUSY_INFERENCE_DELAY: std::time::Duration = std::time::Duration::from_millis(3000);

/// How long a [`FaultInject::BusyBlocks`] node takes over each block it serves.
pub const BUSY_BLOCKS_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// Block workers a [`FaultInject::BusyBlocks`] node has free.
pub const BUSY_BLOCKS_WORKERS: usize = 2;

/// How late a [`FaultInject::SlowInference`] operator starts each job.
pub const SLOW_INFERENCE_DELAY: std::time::Duration = std::time::Duration::from_millis(1500);

/// How late a [`FaultInject::SlowBlocks`] node answers a block request.
pub const SLOW_BLOCKS_DELAY: std::time::Duration = std::time::Duration::from_secs(5);

/// Timers of the storage mesh's background work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshConfig {
    /// Default replication factor of `put` (copies on other peers).
    pub rf: usize,
    /// Milliseconds between repair passes over the blocks this node is responsible for.
    pub repair_every_ms: u64,
    /// Milliseconds between two spot audits this node runs (a batch of up to 4 challenges to a
    /// random holder of random blocks, besides the checks of the sweep).
    pub audit_every_ms: u64,
    /// Milliseconds a holder has to answer an audit, from the request (spec/block-transfer.md:
    /// 10 s); a later proof, or none, counts as no answer (not as a failed proof).
    pub audit_deadline_ms: u64,
    /// Hot content: the sliding window over which a holder counts the fetches of each block it
    /// serves, milliseconds.
    pub hot_window_ms: u64,
    /// Fetches per window that raise a block's RF by one and by two.
    pub hot_heat_up: [u32; 2],
    /// Below this many fetches per window a block at +1 (resp. +2) drops a level (lower than
    /// `hot_heat_up`, for hysteresis).
    pub hot_cool_down: [u32; 2],
    /// Simulated fault, for tests only (`--fault-inject`); `none` on every real node.
    pub fault_inject: FaultInject,
    /// Lease of the replicas this node places, seconds (the expiry of its placement tickets);
    /// it renews them at half of it. 10 s to 7 days.
    pub lease_secs: u64,
    /// Bytes one origin may hold on this node under its leases; 0: a quarter of the offer.
    pub origin_quota_bytes: u64,
    /// Every block this node answers for is re-checked (its holders looked up and audited, its
    /// provider record renewed) at least once per this many milliseconds; evidence that copies
    /// are gone (a holder lost, an audit failed) checks a block at once. At least 1 s. The
    /// budget below may stretch it (see `warren status`); spec/proof-of-storage.md.
    pub recheck_every_ms: u64,
    /// Background DHT queries per minute, at most (repair lookups and provider renewals).
    pub background_dht_per_min: u32,
    /// Background proof-of-storage audits per minute, at most.
    pub background_audits_per_min: u32,
    /// Share of one core (per mille) above which background work slows to a trickle.
    pub background_cpu_permille: u32,
    /// A piece whose holder has been unreachable for less than this still counts towards its
    /// stripe (lazy repair, spec/storage.md "Pieces"), milliseconds. Default a day.
    pub pieces_lazy_ms: u64,
    /// Each file kept as pieces whose manifest is stored here (put here, or one of its whole
    /// copies) is checked once per this many milliseconds by the one repairer among its live
    /// manifest holders, which rebuilds the stripes below the threshold and renews the pieces'
    /// leases (spec/storage.md, "Pieces: repair"); 0: never (only `warren pieces --repair`).
    pub pieces_check_every_ms: u64,
}

impl MeshConfig {
    /// The period each block is re-checked in: `recheck_every_ms`, or a third of the lease when
    /// that is shorter (a check renews the leases of the origin's replicas, due at half of it).
    pub fn recheck_period_ms(&self) -> u64 {
        self.recheck_every_ms
            .min(self.lease_secs.saturating_mul(1000) / 3)
            .max(1_000)
    }

    /// What one origin may hold here: `origin_quota_bytes`, or a quarter of `offer_bytes`.
    pub fn origin_quota(&self, offer_bytes: u64) -> u64 {
        match self.origin_quota_bytes {
            0 => offer_bytes / warren_storage_mesh::lease::DEFAULT_QUOTA_DIVISOR,
            n => n,
        }
    }
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            rf: 3,
            repair_every_ms: 5_000,
            audit_every_ms: 60_000,
            audit_deadline_ms: 10_000,
            hot_window_ms: 600_000,
            hot_heat_up: [32, 128],
            hot_cool_down: [8, 64],
            fault_inject: FaultInject::None,
            lease_secs: 2 * 24 * 3600,
            origin_quota_bytes: 0,
            recheck_every_ms: 24 * 3600 * 1000,
            background_dht_per_min: 240,
            background_audits_per_min: 360,
            background_cpu_permille: 10,
            pieces_lazy_ms: warren_storage_mesh::pieces::DEFAULT_LAZY_MS,
            pieces_check_every_ms: 3_600_000,
        }
    }
}

/// How a node behind NAT stays reachable, and how it helps others that are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatConfig {
    /// Public peers to hold a circuit relay v2 reservation on (full multiaddrs ending in
    /// `/p2p/PEER_ID`); the node listens through each at `ADDR/p2p-circuit`.
    pub relays: Vec<Multiaddr>,
    /// When AutoNAT finds this node private, reserve a circuit on the bootstrap peers too.
    pub auto_relay: bool,
    /// Serve circuit relay v2 reservations for others (libp2p's default limits: short, small
    /// circuits, enough for hole punching, not for bulk traffic).
    pub relay_server: bool,
    /// Addresses this node is known to be reachable at (a public node with a fixed address).
    pub external_addrs: Vec<Multiaddr>,
}

impl Default for NatConfig {
    fn default() -> Self {
        Self {
            relays: Vec::new(),
            auto_relay: true,
            relay_server: true,
            external_addrs: Vec::new(),
        }
    }
}

/// Prices asked, in micro-credits, as published in the node record; unset, each is what the
/// credits rate card makes of it (`[credits.policy.rates]`, spec/credits.md "Rate card").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriceConfig {
    /// Per GiB stored for a month.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_per_gib_month: Option<u64>,
    /// Per thousand tokens generated (of a reference 7B-parameter model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_per_1k_tokens: Option<u64>,
}

impl PriceConfig {
    /// The prices published: the ones set here, else the rate card's.
    pub fn published(&self, rates: &warren_protocol::credits::RateCard) -> (u64, u64) {
        (
            self.storage_per_gib_month
                .unwrap_or_else(|| rates.storage_per_gib_month_micros()),
            self.compute_per_1k_tokens
                .unwrap_or_else(|| rates.per_1k_tokens_micros()),
        )
    }
}

/// Credits (spec/credits.md): the ledger's policy and how often receipts go out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CreditsConfig {
    /// Sends the receipts owed to peers this often, ms (and at once when half a window is owed).
    pub receipt_every_ms: u64,
    /// Rate card, allowance, thresholds, window.
    pub policy: warren_protocol::credits::CreditPolicy,
    /// When an onion hop is busy, and then takes circuits by standing.
    pub relay: warren_protocol::credits::policy::RelayLimits,
}

impl Default for CreditsConfig {
    fn default() -> Self {
        Self {
            receipt_every_ms: 2_000,
            policy: Default::default(),
            relay: Default::default(),
        }
    }
}

/// The whole node configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Network id; peers of other networks are not peers of this one.
    pub network: String,
    /// libp2p listen addresses (TCP and QUIC).
    pub listen: Vec<Multiaddr>,
    /// Peers dialled at start, as full multiaddrs ending in `/p2p/PEER_ID`.
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the local network with mDNS.
    pub mdns: bool,
    /// Kademlia mode.
    pub kad_mode: KadMode,
    /// Roles offered in the node record.
    pub roles: Vec<Role>,
    /// Address of the local control API; must be a loopback address (port 0 picks a free one).
    pub api_listen: SocketAddr,
    /// Address of the read-only HTTP gateway (`/warren/CID/path`), loopback only; off when
    /// absent.
    pub gateway: Option<SocketAddr>,
    /// Connections kept open to other peers. The node dials peers from its routing table up to
    /// half of this; above a quarter more, connections older than 20 s are trimmed back down to
    /// it, least useful first; new inbound ones are refused only past twice this plus 16
    /// (`peer_limit`).
    pub max_peers: usize,
    /// Lifetime of the published node record, in seconds (republished at half of it).
    pub record_ttl_secs: u64,
    /// Log format.
    pub log_format: LogFormat,
    /// Storage offer.
    pub storage: StorageConfig,
    /// Compute offer.
    pub compute: ComputeConfig,
    /// Prices.
    pub price: PriceConfig,
    /// Credits: rate card and limits.
    pub credits: CreditsConfig,
    /// Storage mesh timers and defaults.
    pub mesh: MeshConfig,
    /// NAT traversal: relays, AutoNAT, hole punching.
    pub nat: NatConfig,
    /// Hops of the onion circuits this node builds for `--anon` requests (gate, middles, relay).
    pub onion_hops: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            network: DEFAULT_NETWORK.to_owned(),
            listen: vec![
                "/ip4/0.0.0.0/tcp/4001"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
                "/ip4/0.0.0.0/udp/4001/quic-v1"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
            ],
            bootstrap: Vec::new(),
            mdns: false,
            kad_mode: KadMode::Auto,
            roles: vec![Role::Station, Role::Operator],
            api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            gateway: None,
            max_peers: 64,
            record_ttl_secs: 3600,
            log_format: LogFormat::Text,
            storage: StorageConfig::default(),
            compute: ComputeConfig::default(),
            price: PriceConfig::default(),
            credits: CreditsConfig::default(),
            mesh: MeshConfig::default(),
            nat: NatConfig::default(),
            onion_hops: 3,
        }
    }
}

impl Config {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<Self, NodeError> {
        let text = std::fs::read_to_string(path).map_err(|e| NodeError::Io {
            path: path.to_owned(),
            source: e,
        })?;
        toml::from_str(&text).map_err(|e| NodeError::Config(format!("{}: {}", path.display(), e)))
    }

    /// The config as TOML text.
    pub fn to_toml(&self) -> Result<String, NodeError> {
        toml::to_string_pretty(self).map_err(|e| NodeError::Config(e.to_string()))
    }

    /// Checks what serde cannot: the API is loopback-only, limits are sane, addresses parse.
    pub fn validate(&self) -> Result<(), NodeError> {
        if !self.api_listen.ip().is_loopback() {
            return Err(NodeError::Config(format!(
                "api_listen {} is not a loopback address: the control API is only ever served on 127.0.0.1 or ::1",
                self.api_listen
            )));
        }
        if let Some(g) = self.gateway
            && !g.ip().is_loopback()
        {
            return Err(NodeError::Config(format!(
                "gateway {g} is not a loopback address: the gateway is only served on 127.0.0.1 or ::1"
            )));
        }
        if self.listen.is_empty() {
            return Err(NodeError::Config("no listen address configured".into()));
        }
        if self.credits.receipt_every_ms < 100 {
            return Err(NodeError::Config(format!(
                "credits.receipt_every_ms {} is below 100 ms",
                self.credits.receipt_every_ms
            )));
        }
        if self.mesh.repair_every_ms < 100
            || self.mesh.audit_every_ms < 100
            || self.mesh.audit_deadline_ms < 100
            || self.mesh.recheck_every_ms < 1_000
        {
            return Err(NodeError::Config(
                "mesh timers must be at least 100 ms (recheck_every_ms at least 1000)".into(),
            ));
        }
        let hot = &self.mesh;
        if hot.hot_window_ms < 1_000
            || hot.hot_heat_up[0] == 0
            || hot.hot_heat_up[0] > hot.hot_heat_up[1]
            || hot.hot_cool_down[0] >= hot.hot_heat_up[0]
            || hot.hot_cool_down[1] >= hot.hot_heat_up[1]
        {
            return Err(NodeError::Config(format!(
                "mesh hot settings: hot_window_ms {} must be at least 1000, hot_heat_up {:?} \
                 positive and rising, each hot_cool_down {:?} below its hot_heat_up",
                hot.hot_window_ms, hot.hot_heat_up, hot.hot_cool_down
            )));
        }
        if !(10..=warren_protocol::ticket::MAX_LEASE_SECS).contains(&self.mesh.lease_secs) {
            return Err(NodeError::Config(format!(
                "mesh.lease_secs {} is outside 10..={}",
                self.mesh.lease_secs,
                warren_protocol::ticket::MAX_LEASE_SECS
            )));
        }
        if self.mesh.rf > warren_storage_mesh::placement::MAX_RF {
            return Err(NodeError::Config(format!(
                "mesh.rf {} is above the limit of {}",
                self.mesh.rf,
                warren_storage_mesh::placement::MAX_RF
            )));
        }
        if self.onion_hops == 0 || self.onion_hops > warren_protocol::onion::MAX_HOPS {
            return Err(NodeError::Config(format!(
                "onion_hops must be 1 to {}",
                warren_protocol::onion::MAX_HOPS
            )));
        }
        if self.max_peers == 0 {
            return Err(NodeError::Config("max_peers must be at least 1".into()));
        }
        let max = warren_protocol::MAX_RECORD_LIFETIME_SECS;
        if !(60..=max).contains(&self.record_ttl_secs) {
            return Err(NodeError::Config(format!(
                "record_ttl_secs {} is outside 60..={max}",
                self.record_ttl_secs
            )));
        }
        if self.network.is_empty()
            || self.network.len() > 64
            || !self
                .network
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(NodeError::Config(format!(
                "network id {:?} must be 1 to 64 characters of a-z, 0-9 and '-'",
                self.network
            )));
        }
        for addr in &self.bootstrap {
            crate::addr::split_peer_addr(addr).ok_or_else(|| {
                NodeError::Config(format!(
                    "bootstrap address {addr} does not end in /p2p/PEER_ID"
                ))
            })?;
        }
        for addr in &self.nat.relays {
            crate::addr::split_peer_addr(addr).ok_or_else(|| {
                NodeError::Config(format!("relay address {addr} does not end in /p2p/PEER_ID"))
            })?;
        }
        Ok(())
    }

    /// Whether every listen address is on loopback (a local devnet).
    pub fn loopback_only(&self) -> bool {
        use libp2p::multiaddr::Protocol;
        self.listen.iter().all(|a| {
            a.iter().any(|p| match p {
                Protocol::Ip4(ip) => ip.is_loopback(),
                Protocol::Ip6(ip) => ip.is_loopback(),
                _ => false,
            })
        })
    }
}

/// Parses a size: bytes (`5000000`) or a number with a unit, binary (`KiB`, `MiB`, `GiB`, `TiB`)
/// or decimal (`KB`, `MB`, `GB`, `TB`); `200GiB`, `10 MiB` and `1.5TB` all work.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim();
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "tib" | "t" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "unknown size unit {unit:?} in {text:?}: use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 200GiB"))?;
    let bytes = value * factor as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("size {text:?} is out of range"));
    }
    Ok(bytes as u64)
}

/// The default data directory: `$XDG_DATA_HOME/warren` (`~/.local/share/warren`).
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("warren")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_price_is_the_rate_cards_unless_set() {
        let rates = warren_protocol::credits::RateCard::default();
        assert_eq!(PriceConfig::default().published(&rates), (730_000, 14_000));
        let set: Config = toml::from_str("[price]\ncompute_per_1k_tokens = 0\n").unwrap();
        assert_eq!(set.price.published(&rates), (730_000, 0));
    }

    #[test]
    fn default_config_round_trips_through_toml_and_validates() {
        let c = Config::default();
        c.validate().unwrap();
        let text = c.to_toml().unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn refuses_non_loopback_api() {
        let c = Config {
            api_listen: "0.0.0.0:8080".parse().unwrap(),
            ..Config::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("not a loopback address"), "{err}");
    }

    #[test]
    fn the_gateway_is_off_by_default_and_loopback_only() {
        assert_eq!(Config::default().gateway, None);
        let c: Config = toml::from_str("gateway = \"127.0.0.1:8080\"").unwrap();
        assert_eq!(c.gateway, Some("127.0.0.1:8080".parse().unwrap()));
        c.validate().unwrap();
        let c = Config {
            gateway: Some("0.0.0.0:8080".parse().unwrap()),
            ..Config::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("gateway 0.0.0.0:8080 is not a loopback"),
            "{err}"
        );
    }

    #[test]
    fn refuses_unknown_keys_and_bad_bootstrap() {
        assert!(toml::from_str::<Config>("listen_typo = []").is_err());
        let c = Config {
            bootstrap: vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()],
            ..Config::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("/p2p/PEER_ID")
        );
    }

    #[test]
    fn fault_injection_is_off_unless_asked_for() {
        assert_eq!(Config::default().mesh.fault_inject, FaultInject::None);
        let c: Config = toml::from_str("[mesh]\nfault_inject = \"corrupt-audits\"\n").unwrap();
        assert_eq!(c.mesh.fault_inject, FaultInject::CorruptAudits);
        assert!(toml::from_str::<Config>("[mesh]\nfault_inject = \"melt\"\n").is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("200GiB").unwrap(), 200 << 30);
        assert_eq!(parse_size("10 MiB").unwrap(), 10 << 20);
        assert_eq!(parse_size("1.5TB").unwrap(), 1_500_000_000_000);
        assert_eq!(parse_size("5000000").unwrap(), 5_000_000);
        assert!(parse_size("10 parsecs").is_err());
        assert!(parse_size("GiB").is_err());
    }

    #[test]
    fn loopback_detection() {
        let mut c = Config::default();
        assert!(!c.loopback_only());
        c.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
        assert!(c.loopback_only());
    }
}
