//! The clap definitions of every subcommand and flag, and how start flags override the config.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use libp2p::Multiaddr;
use warren_protocol::{Class, Role};

use crate::cli::text::*;
use crate::config::{self, Config, FaultInject, KadMode, LogFormat};

/// warren: one peer of a self-healing storage and inference mesh.
#[derive(Debug, Parser)]
#[command(name = "warren", version, about)]
pub struct Cli {
    /// Data directory (keys, config, API token). Default: ~/.local/share/warren.
    #[arg(long, global = true, env = "WARREN_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node in the foreground (SIGINT or SIGTERM stops it).
    Start(StartArgs),
    /// Show the running node's peer id, addresses and peer count.
    Status(OutputArgs),
    /// List the peers the running node is connected to.
    Peers(OutputArgs),
    /// Find a peer's node record in the DHT and verify it.
    Record {
        /// The peer id (12D3Koo…).
        peer: String,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Store a file (or stdin with `-`) or a directory tree in the node's block store and print
    /// its CID. A directory is stored with every file and subdirectory under it (empty ones
    /// kept); symbolic links are not followed and special files are skipped, each one said.
    /// `--private` seals a tree (names and sizes inside) and prints one capability for it.
    Put {
        /// The file or directory; `-` reads standard input.
        file: PathBuf,
        /// Store a directory tree (the default for a directory; accepted for habit's sake).
        #[arg(short = 'r', long)]
        recursive: bool,
        /// Name kept in the manifest (default: the file's name).
        #[arg(long)]
        name: Option<String>,
        /// Media type kept in the manifest, e.g. text/plain.
        #[arg(long)]
        media_type: Option<String>,
        /// Do not pin the file (it stays until the next `warren gc`).
        #[arg(long)]
        no_pin: bool,
        /// Copies to place on other peers (0: keep it on this node only).
        #[arg(long, default_value_t = 3)]
        rf: usize,
        /// Keep it as erasure-coded pieces instead of whole copies: K data + M parity pieces per
        /// stripe, each on its own peer, any K rebuilding it (default 12+24: 3x the bytes; see
        /// spec/storage.md, Pieces). Prints the piece manifest's id, which `warren get` reads
        /// the file back from. A file under 1 MiB keeps whole copies at --rf.
        #[arg(long, value_name = "K+M", num_args = 0..=1, default_missing_value = "")]
        pieces: Option<String>,
        /// public: stored as plaintext, deduplicated. shared: encrypted with a key derived from
        /// the file (equal files still deduplicate). private: encrypted with a fresh random key.
        /// Shared and private print a capability `warren:CID#KEY`, the only way to read the file.
        /// Default: public, or private with `--anon`.
        #[arg(long, value_name = "CLASS", value_parser = parse_class)]
        class: Option<Class>,
        /// Same as `--class private`.
        #[arg(long, conflicts_with = "class")]
        private: bool,
        /// Store it through an onion circuit (gate → middle → relay): the relay's runner stores
        /// it as itself, so the mesh never learns this node put it. A private file is sealed here
        /// first, so the relay only sees ciphertext. `--name` is kept only inside a sealed file.
        #[arg(long)]
        anon: bool,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Write a stored file to FILE or standard output, verifying every block; a directory
    /// (CID or CID/path/in/tree) is recreated as a tree under `-o DIR`. With a capability
    /// (`warren:CID#KEY`) the file is decrypted and authenticated; with a sealed file's bare CID
    /// you get the ciphertext.
    Get {
        /// The file's CID, or a capability `warren:CID#KEY` (visible to every user in `ps`:
        /// prefer `--capability-file` or `WARREN_CAPABILITY`, with the bare CID or nothing here).
        cid: Option<String>,
        /// Read the capability `warren:CID#KEY` from FILE (`-`: standard input).
        #[arg(long, value_name = "FILE")]
        capability_file: Option<PathBuf>,
        /// Output file (written whole or not at all), or for a directory a new or empty
        /// directory; default standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Fetch it through an onion circuit (gate → middle → relay): the holders see only the
        /// relay, the gate sees only that this node talks to it, and a sealed file is opened here.
        #[arg(long)]
        anon: bool,
        /// Keep no copy of the fetched blocks in this node's store (a file's blocks stream
        /// from memory to the output only; fetching it again fetches it again).
        #[arg(long, conflicts_with = "anon")]
        no_cache: bool,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// List a stored directory (or one of its subdirectories: CID/path/in/tree); a private one
    /// with its capability (warren:CID#KEY[/path]), a name as /name/NAME[/path].
    Ls {
        /// The directory's CID or capability, optionally followed by a path inside it.
        target: String,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Show a stored file's manifest.
    Stat {
        /// The file's CID.
        cid: String,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// List pinned files.
    Pins(OutputArgs),
    /// Pin a stored file so `gc` keeps it.
    Pin {
        /// The file's CID.
        cid: String,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Unpin a file (its blocks go at the next `gc`).
    Unpin {
        /// The file's CID.
        cid: String,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Remove every block no pinned file needs.
    Gc(OutputArgs),
    /// List the blocks this node holds for the mesh (replicas placed here).
    Held(OutputArgs),
    /// List the replicas held for the mesh with their leases (origin, RF kept, end).
    Leases(OutputArgs),
    /// List the proof-of-storage audits this node ran and their results.
    Audits(OutputArgs),
    /// List the holders of every block of a file (provider records, and whether each holder is
    /// connected now) and the RF actually held.
    Where {
        /// The file's CID.
        cid: String,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Run one proof-of-storage audit of PEER now and print the outcome: on CID if it is a block
    /// this node stores, on a random block of the file CID that PEER claims, or without CID on a
    /// random block this node holds that PEER claims.
    Audit {
        /// The peer to audit.
        peer: String,
        /// A file or block.
        cid: Option<String>,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// A file kept as pieces (`put --pieces`): audits a holder of every piece and shows each
    /// stripe's live pieces against its repair threshold; `--repair` rebuilds the stripes below
    /// it (this node fetches k pieces and places only the missing ones).
    Pieces {
        /// The piece manifest's id (what `put --pieces` printed).
        id: String,
        /// Rebuild the stripes below their threshold.
        #[arg(long)]
        repair: bool,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// The reputation table (each component and the total), or one peer's score and evidence.
    Reputation {
        /// A peer id: show the evidence behind its score.
        peer: Option<String>,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Credit with every peer (balance, earned and spent, threshold, strikes), or with one.
    Credits {
        /// A peer id: only its account.
        peer: Option<String>,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// List this node's onion circuits and its role in each (client, gate, middle, relay).
    Circuits(OutputArgs),
    /// Models on the mesh: add, serve, list.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Names that can change: publish, resolve, keys (`/name/NAME/path` works for get and ls).
    #[command(subcommand)]
    Name(crate::cli::names::NameCommand),
    /// Generate text with a model, streaming tokens as they come.
    Infer {
        /// Model name or id.
        #[arg(long)]
        model: String,
        /// The prompt.
        #[arg(long)]
        prompt: String,
        /// Most new tokens.
        #[arg(long, default_value_t = 128)]
        max_tokens: u32,
        /// 0 = greedy; otherwise sample at this temperature.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Sampler seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// How to pick the operator: cost, speed, quality or private.
        #[arg(long, default_value = "speed")]
        strategy: String,
        /// Chance that the job is re-run on a second operator to verify it (0 to 1).
        #[arg(long, default_value_t = 0.1)]
        sample: f64,
        /// Run on this node's own executor (it must serve the model).
        #[arg(long)]
        local: bool,
        /// Through a 3-hop onion circuit: the relay runs the job on the fastest operator as
        /// itself, so the operator never learns this node (strategy, sample and local unused).
        #[arg(long, conflicts_with = "local")]
        anon: bool,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Embed texts: one JSON object per line in, `{"text":…, "embedding":[…]}` per line out.
    Embed {
        /// Model name or id.
        #[arg(long)]
        model: String,
        /// JSONL input: each line a JSON string or an object with a "text" field.
        #[arg(long)]
        input: PathBuf,
        /// JSONL output.
        #[arg(long)]
        output: PathBuf,
        /// How to pick operators: cost, speed, quality or private.
        #[arg(long, default_value = "speed")]
        strategy: String,
        /// Operators to split each batch across.
        #[arg(long, default_value_t = 2)]
        operators: usize,
        /// Share of items re-run on a second operator to verify (0 to 1).
        #[arg(long, default_value_t = 0.1)]
        sample: f64,
        /// Texts per request to the node.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Run on this node's own executor (it must serve the model).
        #[arg(long)]
        local: bool,
        /// Through onion circuits, each share of texts that fits one cell through its own: the
        /// relay runs it on one operator as itself, so the operator never learns this node
        /// (strategy, operators, sample and local unused).
        #[arg(long, conflicts_with = "local")]
        anon: bool,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Inference jobs this node ran, served or requested recently.
    Jobs(OutputArgs),
    /// Start N real nodes on loopback (or in network namespaces on emulated links, --netns),
    /// bootstrapped from the first; Ctrl-C stops them all.
    Devnet(DevnetArgs),
    /// Write a commented DATA_DIR/config.toml (the defaults, a preset and the flags given).
    Init {
        /// Overwrite an existing config.toml.
        #[arg(long)]
        force: bool,
        /// What the config says (the same flags as `start`).
        #[command(flatten)]
        start: StartArgs,
    },
    /// Print the URL of the running node's dashboard (it carries the API token: keep it private).
    Dashboard(OutputArgs),
    /// Dial a peer now, e.g. through a relay: /ip4/R/tcp/4001/p2p/RELAY/p2p-circuit/p2p/PEER.
    Connect {
        /// Full multiaddr ending in /p2p/PEER_ID.
        addr: Multiaddr,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
}

/// `warren model …`.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Put model files on the mesh and publish a manifest; prints the model id.
    Add {
        /// The files: a .gguf, or model.safetensors + tokenizer.json + config.json.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The model's name.
        #[arg(long)]
        name: String,
        /// Copies of each block to place on other peers, like `put --rf` (default: the node's
        /// RF); 0 keeps the model on this node only.
        #[arg(long)]
        rf: Option<usize>,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Fetch a model from the mesh, verify and load it, and announce this node as its operator.
    Serve {
        /// Model name or id.
        model: String,
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// The models this node serves.
    List(OutputArgs),
}

/// `--json`.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn tier_name(t: warren_protocol::Tier) -> &'static str {
    match t {
        warren_protocol::Tier::Hot => "hot",
        warren_protocol::Tier::Cold => "cold",
    }
}

/// Flags of `warren start`; each overrides the config file.
#[derive(Debug, Args, Default)]
pub struct StartArgs {
    /// Config file (TOML). Default: DATA_DIR/config.toml when it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective config as TOML and exit.
    #[arg(long)]
    pub dump_config: bool,
    /// Listen address (repeatable), e.g. /ip4/0.0.0.0/tcp/4001.
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peer (repeatable), a multiaddr ending in /p2p/PEER_ID.
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the local network with mDNS.
    #[arg(long)]
    pub mdns: bool,
    /// Kademlia mode.
    #[arg(long, value_enum)]
    pub kad_mode: Option<KadMode>,
    /// Network id.
    #[arg(long)]
    pub network: Option<String>,
    /// Join a named testnet: its network id and bootstrap peers (node/testnets.toml: local,
    /// warren-testnet).
    #[arg(long, value_name = "NAME")]
    pub testnet: Option<String>,
    /// Storage offered to the mesh, e.g. 200GiB, 10MiB, 5000000 (bytes); implies role station.
    #[arg(long, value_name = "SIZE", value_parser = config::parse_size)]
    pub storage_offer: Option<u64>,
    /// Tier of the storage offer.
    #[arg(long, value_parser = parse_tier)]
    pub tier: Option<warren_protocol::Tier>,
    /// Offer compute (role operator): the detected CPU cores, RAM and GPUs go in the node record.
    #[arg(long)]
    pub compute_offer: bool,
    /// CPU cores of the compute offer (default: every detected core).
    #[arg(long, value_name = "N")]
    pub compute_cores: Option<u32>,
    /// Hold a circuit relay reservation on this public peer (repeatable; /…/p2p/PEER_ID).
    #[arg(long, value_name = "MULTIADDR")]
    pub relay: Vec<Multiaddr>,
    /// An address this node is reachable at (repeatable), for a public node.
    #[arg(long, value_name = "MULTIADDR")]
    pub external_addr: Vec<Multiaddr>,
    /// Control API address (loopback only).
    #[arg(long, value_name = "ADDR")]
    pub api_listen: Option<std::net::SocketAddr>,
    /// Serve the read-only HTTP gateway (`/warren/CID/path`) on this loopback address.
    #[arg(long, value_name = "ADDR")]
    pub gateway: Option<std::net::SocketAddr>,
    /// Role offered (repeatable): station, operator, gate, middle, relay.
    #[arg(long = "role", value_parser = parse_role)]
    pub roles: Vec<Role>,
    /// Lifetime of the published node record in seconds (60 to 86400); republished at half of it.
    #[arg(long, value_name = "SECS")]
    pub record_ttl_secs: Option<u64>,
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// FOR TESTS ONLY: simulate a fault (corrupt-audits: answer every storage audit wrongly;
    /// corrupt-blocks: serve every block with one byte altered).
    #[arg(long, value_enum, value_name = "FAULT")]
    pub fault_inject: Option<FaultInject>,
}

/// Flags of `warren devnet`.
#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nodes: u16,
    /// Network id of the devnet.
    #[arg(long, default_value = "local")]
    pub network: String,
    /// Roles every node offers: `all` (station, operator, gate, middle, relay), so that
    /// `get --anon` finds its three hops, or a comma list such as `station,gate`.
    #[arg(long, default_value = "all", value_parser = parse_roles)]
    pub roles: DevnetRoles,
    /// Run each node in its own network namespace, linked through an emulated switch that
    /// applies the link flags below (needs root, iproute2 and /dev/net/tun; nftables with --nat).
    #[arg(long)]
    pub netns: bool,
    /// One-way delay between any two nodes, e.g. 40ms (half on each node's access link).
    #[arg(long, requires = "netns", value_parser = crate::cli::netns::parse_duration)]
    pub latency: Option<std::time::Duration>,
    /// Random extra delay per frame, up to this (order is kept), e.g. 5ms.
    #[arg(long, requires = "netns", value_parser = crate::cli::netns::parse_duration)]
    pub jitter: Option<std::time::Duration>,
    /// Rate of each node's access link, each way, e.g. 50mbit, 1gbit, 500kbit.
    #[arg(long, requires = "netns", value_parser = crate::cli::netns::parse_rate)]
    pub rate: Option<u64>,
    /// Frames lost at random on each node's uplink, e.g. 0.1%.
    #[arg(long, requires = "netns", value_parser = crate::cli::netns::parse_loss)]
    pub loss: Option<u32>,
    /// How many of the nodes (the last ones) sit behind their own masquerading home router.
    #[arg(long, default_value_t = 0, requires = "netns")]
    pub nat: u16,
}

/// The roles of `warren devnet --roles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevnetRoles(pub Vec<Role>);

fn parse_roles(s: &str) -> Result<DevnetRoles, String> {
    if s == "all" {
        return Ok(DevnetRoles(vec![
            Role::Station,
            Role::Operator,
            Role::Gate,
            Role::Middle,
            Role::Relay,
        ]));
    }
    let mut roles = Vec::new();
    for part in s.split(',').map(str::trim) {
        let role = parse_role(part)?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    Ok(DevnetRoles(roles))
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "station" => Ok(Role::Station),
        "operator" => Ok(Role::Operator),
        "gate" => Ok(Role::Gate),
        "middle" => Ok(Role::Middle),
        "relay" => Ok(Role::Relay),
        other => Err(format!(
            "unknown role {other:?}: one of station, operator, gate, middle, relay"
        )),
    }
}

fn parse_tier(s: &str) -> Result<warren_protocol::Tier, String> {
    match s {
        "hot" => Ok(warren_protocol::Tier::Hot),
        "cold" => Ok(warren_protocol::Tier::Cold),
        other => Err(format!("unknown tier {other:?}: hot or cold")),
    }
}

impl StartArgs {
    /// Applies the flags over `config`; fails on an unknown `--testnet`.
    pub fn apply(&self, mut config: Config) -> Result<Config, crate::NodeError> {
        if let Some(name) = &self.testnet {
            let preset = crate::presets::get(name)?;
            config.network = preset.network;
            for b in preset.bootstrap {
                if !config.bootstrap.contains(&b) {
                    config.bootstrap.push(b);
                }
            }
        }
        if let Some(bytes) = self.storage_offer {
            config.storage.offer_bytes = bytes;
            if !config.roles.contains(&Role::Station) {
                config.roles.push(Role::Station);
            }
        }
        if let Some(t) = self.tier {
            config.storage.tier = t;
        }
        if self.compute_offer && !config.roles.contains(&Role::Operator) {
            config.roles.push(Role::Operator);
        }
        if let Some(n) = self.compute_cores {
            config.compute.cpu_cores = n;
        }
        config.nat.relays.extend(self.relay.iter().cloned());
        config
            .nat
            .external_addrs
            .extend(self.external_addr.iter().cloned());
        if !self.listen.is_empty() {
            config.listen = self.listen.clone();
        }
        config.bootstrap.extend(self.bootstrap.iter().cloned());
        config.mdns |= self.mdns;
        if let Some(m) = self.kad_mode {
            config.kad_mode = m;
        }
        if let Some(n) = &self.network {
            config.network = n.clone();
        }
        if let Some(a) = self.api_listen {
            config.api_listen = a;
        }
        if let Some(g) = self.gateway {
            config.gateway = Some(g);
        }
        if !self.roles.is_empty() {
            config.roles = self.roles.clone();
        }
        if let Some(t) = self.record_ttl_secs {
            config.record_ttl_secs = t;
        }
        if let Some(f) = self.log_format {
            config.log_format = f;
        }
        if let Some(f) = self.fault_inject {
            config.mesh.fault_inject = f;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config() {
        let cli = Cli::try_parse_from([
            "warren",
            "start",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--kad-mode",
            "server",
            "--role",
            "gate",
            "--bootstrap",
            "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
        ])
        .unwrap();
        let Command::Start(args) = cli.command else {
            panic!("not start")
        };
        let c = args.apply(Config::default()).unwrap();
        assert_eq!(c.kad_mode, KadMode::Server);
        assert_eq!(c.roles, vec![Role::Gate]);
        assert_eq!(c.listen.len(), 1);
        assert_eq!(c.bootstrap.len(), 1);
        c.validate().unwrap();
    }

    #[test]
    fn bad_flags_are_refused_by_clap() {
        assert!(Cli::try_parse_from(["warren", "start", "--listen", "not-a-multiaddr"]).is_err());
        assert!(Cli::try_parse_from(["warren", "start", "--role", "king"]).is_err());
        assert!(Cli::try_parse_from(["warren", "devnet", "--nodes", "0"]).is_err());
        assert!(Cli::try_parse_from(["warren", "devnet", "--roles", "gate,king"]).is_err());
        assert!(Cli::try_parse_from(["warren", "devnet", "--latency", "40ms"]).is_err());
    }

    #[test]
    fn devnet_offers_every_role_by_default() {
        let cli = Cli::try_parse_from(["warren", "devnet"]).unwrap();
        let Command::Devnet(args) = cli.command else {
            panic!("not devnet")
        };
        assert_eq!(args.roles.0.len(), 5);
        assert!(!args.netns);
        let cli = Cli::try_parse_from([
            "warren",
            "devnet",
            "--roles",
            "station,gate",
            "--netns",
            "--latency",
            "40ms",
            "--rate",
            "50mbit",
            "--loss",
            "0.1%",
            "--nat",
            "2",
        ])
        .unwrap();
        let Command::Devnet(args) = cli.command else {
            panic!("not devnet")
        };
        assert_eq!(args.roles.0, vec![Role::Station, Role::Gate]);
        assert_eq!(args.latency, Some(std::time::Duration::from_millis(40)));
        assert_eq!(args.rate, Some(50_000_000));
        assert_eq!(args.loss, Some(1000));
        assert_eq!(args.nat, 2);
    }
}
