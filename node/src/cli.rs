//! The `warren` command line: clap definitions and what each subcommand prints.
//!
//! `start` and `devnet` run things; every other subcommand talks to a running node through its
//! control API, found through the data directory (`--data-dir` or `WARREN_DATA_DIR`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use libp2p::Multiaddr;
use tracing_subscriber::EnvFilter;
use warren_protocol::{Capability, Class, Role};

use crate::api::{GcView, PeerInfo, PinView, RecordView, StatView, StatusInfo};
use crate::client::ApiClient;
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
    /// Store a file (or stdin with `-`) in the node's block store and print its CID.
    Put {
        /// The file; `-` reads standard input.
        file: PathBuf,
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
    /// Write a stored file to FILE or standard output, verifying every block. With a capability
    /// (`warren:CID#KEY`) the file is decrypted and authenticated; with a sealed file's bare CID
    /// you get the ciphertext.
    Get {
        /// The file's CID, or a capability `warren:CID#KEY`.
        cid: String,
        /// Output file (written whole or not at all); default standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Fetch it through an onion circuit (gate → middle → relay): the holders see only the
        /// relay, the gate sees only that this node talks to it, and a sealed file is opened here.
        #[arg(long)]
        anon: bool,
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
    /// The reputation table (each component and the total), or one peer's score and evidence.
    Reputation {
        /// A peer id: show the evidence behind its score.
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
        /// Output options.
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Inference jobs this node ran, served or requested recently.
    Jobs(OutputArgs),
    /// Start N real nodes on loopback, bootstrapped from the first; Ctrl-C stops them all.
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

fn tier_name(t: warren_protocol::Tier) -> &'static str {
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
    /// Role offered (repeatable): station, operator, gate, middle, relay.
    #[arg(long = "role", value_parser = parse_role)]
    pub roles: Vec<Role>,
    /// Lifetime of the published node record in seconds (60 to 86400); republished at half of it.
    #[arg(long, value_name = "SECS")]
    pub record_ttl_secs: Option<u64>,
    /// Log format.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// FOR TESTS ONLY: simulate a fault (corrupt-audits: answer every storage audit wrongly).
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

fn init_logging(format: LogFormat, default: &str) {
    let filter = EnvFilter::try_from_env("WARREN_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn print<T: serde::Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", text(value));
    }
    Ok(())
}

fn status_text(s: &StatusInfo) -> String {
    let mut out = format!(
        "peer id      {}\nversion      {}\nnetwork      {}\npeers        {}\nrouting      {} peers, kad {}\nrecord       {}\nuptime       {} s\nstorage      {}\nlisten\n",
        s.peer_id,
        s.version,
        s.network,
        s.peers,
        s.routing_table,
        s.kad_mode,
        if s.record_published {
            "published"
        } else {
            "not yet stored on another peer"
        },
        s.uptime_secs,
        s.storage
            .as_ref()
            .map(|u| format!(
                "{} blocks, {} of {} bytes offered",
                u.blocks, u.stored_bytes, u.offered_bytes
            ))
            .unwrap_or_else(|| "-".into())
    );
    for a in &s.listen_addrs {
        out.push_str(&format!("  {a}\n"));
    }
    out
}

fn peers_text(peers: &Vec<PeerInfo>) -> String {
    let mut out = format!("{} peers\n", peers.len());
    for p in peers {
        let rtt = p
            .rtt_ms
            .map(|r| format!("{r:.1} ms"))
            .unwrap_or_else(|| "-".into());
        let roles: Vec<String> = p
            .roles
            .iter()
            .map(|r| format!("{r:?}").to_lowercase())
            .collect();
        out.push_str(&format!(
            "{}  {:>9}  {}  [{}]  {}\n",
            p.peer_id,
            rtt,
            p.agent.as_deref().unwrap_or("?"),
            roles.join(","),
            p.addrs.first().map(String::as_str).unwrap_or("")
        ));
    }
    out
}

fn record_text(r: &RecordView) -> String {
    let mut out = format!(
        "peer id      {}\nverified     {} (from {})\nnetwork      {}\nroles        {:?}\nonion key    {}\nstorage      {}\ncompute      {}\nissued at    {}\nexpires at   {}\naddrs\n",
        r.peer_id,
        r.verified,
        r.source,
        r.network,
        r.roles,
        r.onion_key,
        r.storage
            .as_ref()
            .map(|s| format!(
                "{:?}, {} bytes offered, {} free",
                s.tier, s.bytes_offered, s.bytes_free
            ))
            .unwrap_or_else(|| "none".into()),
        r.compute
            .as_ref()
            .map(|c| format!(
                "{} cores, {} bytes RAM, {} GPUs",
                c.cpu_cores,
                c.ram_bytes,
                c.gpus.len()
            ))
            .unwrap_or_else(|| "none".into()),
        r.issued_at,
        r.expires_at
    );
    for a in &r.addrs {
        out.push_str(&format!("  {a}\n"));
    }
    out
}

/// Checks a CID on the client side, so a typo gets a clear error without a round trip.
fn check_cid(text: &str) -> anyhow::Result<String> {
    let cid: warren_protocol::ContentId = text
        .parse()
        .map_err(|e| anyhow::anyhow!("{text:?} is not a warren CID: {e}"))?;
    Ok(cid.to_string())
}

fn stat_text(s: &StatView) -> String {
    format!(
        "cid          {}\nsize         {} bytes\nname         {}\nmedia type   {}\nmanifest     depth {}, {} entries\n",
        s.cid,
        s.size,
        s.name.as_deref().unwrap_or("-"),
        s.media_type.as_deref().unwrap_or("-"),
        s.depth,
        s.entries
    )
}

fn pins_text(pins: &Vec<PinView>) -> String {
    let mut out = format!("{} pinned files\n", pins.len());
    for p in pins {
        out.push_str(&format!(
            "{}  {:<7}  {:>12} B  {:>6} blocks  {}\n",
            p.cid,
            p.class,
            p.size,
            p.blocks,
            p.name.as_deref().unwrap_or("")
        ));
    }
    out
}

fn circuits_text(c: &Vec<crate::onion::CircuitView>) -> String {
    let mut out = format!("{} circuits\n", c.len());
    for v in c {
        out.push_str(&format!(
            "{:>4}  {:<6}  {:>8} ms  prev {}  next {}  {}\n",
            v.id,
            v.role,
            v.age_ms,
            v.prev.as_deref().unwrap_or("-"),
            v.next.as_deref().unwrap_or("-"),
            v.state
        ));
    }
    out
}

fn parse_class(text: &str) -> Result<Class, String> {
    text.parse()
        .map_err(|e: warren_protocol::Error| e.to_string())
}

async fn run_client(cli: Cli, data_dir: PathBuf) -> anyhow::Result<()> {
    let api = ApiClient::from_data_dir(&data_dir)?;
    match cli.command {
        Command::Status(out) => print(
            out.json,
            &api.get::<StatusInfo>("/v1/status").await?,
            status_text,
        ),
        Command::Peers(out) => print(
            out.json,
            &api.get::<Vec<PeerInfo>>("/v1/peers").await?,
            peers_text,
        ),
        Command::Record { peer, out } => {
            let peer: libp2p::PeerId = peer
                .parse()
                .with_context(|| format!("{peer:?} is not a peer id"))?;
            print(
                out.json,
                &api.get::<RecordView>(&format!("/v1/record/{peer}")).await?,
                record_text,
            )
        }
        Command::Put {
            file,
            name,
            media_type,
            no_pin,
            rf,
            class,
            private,
            anon,
            out,
        } => {
            let default_class = if anon { Class::Private } else { Class::Public };
            let req = crate::transfer::PutRequest {
                name,
                media_type,
                pin: !no_pin,
                rf,
                class: if private {
                    Class::Private
                } else {
                    class.unwrap_or(default_class)
                },
                anon,
            };
            let view = crate::transfer::put(&api, &file, req, out.json).await?;
            print(out.json, &view, |v| match &v.capability {
                Some(cap) => format!("{cap}\n"),
                None => format!("{}\n", v.cid),
            })
        }
        Command::Get {
            cid,
            output,
            anon,
            out,
        } => {
            let cid = if Capability::looks_like(&cid) {
                cid.parse::<Capability>()?;
                cid
            } else {
                check_cid(&cid)?
            };
            let n = crate::transfer::get(&api, &cid, output.as_deref(), out.json, anon).await?;
            if let Some(path) = output {
                let view = serde_json::json!({ "cid": cid, "size": n, "path": path });
                print(out.json, &view, |_| {
                    format!("{n} bytes written to {}\n", path.display())
                })?;
            }
            Ok(())
        }
        Command::Circuits(out) => print(
            out.json,
            &api.get::<Vec<crate::onion::CircuitView>>("/v1/circuits")
                .await?,
            circuits_text,
        ),
        Command::Stat { cid, out } => {
            let cid = check_cid(&cid)?;
            print(
                out.json,
                &api.get::<StatView>(&format!("/v1/stat/{cid}")).await?,
                stat_text,
            )
        }
        Command::Pins(out) => print(
            out.json,
            &api.get::<Vec<PinView>>("/v1/pins").await?,
            pins_text,
        ),
        Command::Pin { cid, out } => {
            let cid = check_cid(&cid)?;
            let v: serde_json::Value = api.post(&format!("/v1/pin/{cid}")).await?;
            print(out.json, &v, |_| format!("pinned {cid}\n"))
        }
        Command::Unpin { cid, out } => {
            let cid = check_cid(&cid)?;
            let v: serde_json::Value = api.delete(&format!("/v1/pin/{cid}")).await?;
            print(out.json, &v, |_| {
                format!("unpinned {cid} (its blocks go at the next gc)\n")
            })
        }
        Command::Gc(out) => print(out.json, &api.post::<GcView>("/v1/gc").await?, |g| {
            format!(
                "removed {} blocks, freed {} bytes\n",
                g.blocks_removed, g.bytes_freed
            )
        }),
        Command::Held(out) => print(out.json, &api.get::<Vec<String>>("/v1/held").await?, |h| {
            let mut s = format!("{} blocks held for the mesh\n", h.len());
            for c in h {
                s.push_str(&format!("{c}\n"));
            }
            s
        }),
        Command::Audits(out) => {
            let audits: Vec<crate::mesh::AuditRecord> = api.get("/v1/audits").await?;
            print(out.json, &audits, |a| {
                let mut s = format!("{} audits\n", a.len());
                for r in a {
                    s.push_str(&format!(
                        "{}  {}  {}  {}\n",
                        r.time_ms,
                        if r.passed { "passed" } else { "FAILED" },
                        r.subject,
                        r.block
                    ));
                }
                s
            })
        }
        Command::Where { cid, out } => {
            let report: crate::mesh::WhereReport = api.get(&format!("/v1/where/{cid}")).await?;
            print(out.json, &report, |r| {
                let mut s = format!(
                    "{}: {} blocks, fewest live holders of a block {}{}\n",
                    r.cid,
                    r.blocks.len(),
                    r.min_rf_held,
                    r.wanted_rf
                        .map(|w| format!(" (put here at RF {w})"))
                        .unwrap_or_default()
                );
                for b in &r.blocks {
                    let hot = if b.hot_extra > 0 {
                        format!("  hot: +{}", b.hot_extra)
                    } else {
                        String::new()
                    };
                    s.push_str(&format!(
                        "{}  {} B  held {}{hot}\n",
                        b.block, b.len, b.rf_held
                    ));
                    for h in &b.holders {
                        let state = match (h.this_node, h.live, h.tier) {
                            (true, ..) => "this node".to_owned(),
                            (false, true, Some(t)) => format!("live, {}", tier_name(t)),
                            (false, true, None) => "live".to_owned(),
                            (false, false, _) => "not connected".to_owned(),
                        };
                        s.push_str(&format!("    {}  {state}\n", h.peer));
                    }
                }
                s
            })
        }
        Command::Audit { peer, cid, out } => {
            let body = serde_json::json!({ "peer": peer, "cid": cid });
            let r: crate::mesh::AuditRecord = api.post_json("/v1/audit", &body).await?;
            print(out.json, &r, |r| {
                if r.passed {
                    format!("passed: {} proved it holds {}\n", r.subject, r.block)
                } else {
                    format!(
                        "FAILED: {} on {}: {}\n",
                        r.subject,
                        r.block,
                        r.reason.as_deref().unwrap_or("no reason given")
                    )
                }
            })
        }
        Command::Model(cmd) => crate::jobs_cli::model(&api, cmd).await,
        Command::Infer {
            model,
            prompt,
            max_tokens,
            temperature,
            seed,
            strategy,
            sample,
            local,
            anon,
            out,
        } => {
            let body = serde_json::json!({
                "model": model, "prompt": prompt, "max_tokens": max_tokens,
                "temperature": temperature, "seed": seed, "strategy": strategy,
                "sample": sample, "local": local,
            });
            let path = if anon { "/v1/anon/infer" } else { "/v1/infer" };
            crate::jobs_cli::infer(&api, path, &body, out.json).await
        }
        Command::Embed {
            model,
            input,
            output,
            strategy,
            operators,
            sample,
            batch,
            local,
            out,
        } => {
            let opts = crate::jobs_cli::EmbedOpts {
                model,
                strategy,
                operators,
                sample,
                batch,
                local,
            };
            crate::jobs_cli::embed(&api, &opts, &input, &output, out.json).await
        }
        Command::Jobs(out) => crate::jobs_cli::jobs(&api, out.json).await,
        Command::Reputation { peer: None, out } => {
            let table: serde_json::Value = api.get("/v1/reputation").await?;
            print(out.json, &table, |t| {
                let mut s = format!(
                    "{:<54} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}  floor\n",
                    "peer", "total", "perf", "speed", "uptime", "secur", "review", "long"
                );
                for r in t.as_array().into_iter().flatten() {
                    let c = &r["components"];
                    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
                    s.push_str(&format!(
                        "{:<54} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3}  {}\n",
                        r["peer_id"].as_str().unwrap_or("?"),
                        f(&r["total"]),
                        f(&c["performance"]),
                        f(&c["speed"]),
                        f(&c["uptime"]),
                        f(&c["security"]),
                        f(&c["peer_review"]),
                        f(&c["longevity"]),
                        if r["below_floor"] == true {
                            "BELOW"
                        } else {
                            "ok"
                        }
                    ));
                }
                s
            })
        }
        Command::Reputation {
            peer: Some(peer),
            out,
        } => {
            let peer: libp2p::PeerId = peer
                .parse()
                .with_context(|| format!("{peer:?} is not a peer id"))?;
            let v: serde_json::Value = api.get(&format!("/v1/reputation/{peer}")).await?;
            print(out.json, &v, |v| {
                format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
            })
        }
        Command::Dashboard(out) => {
            let addr = std::fs::read_to_string(data_dir.join(crate::keystore::API_ADDR_FILE))
                .context("reading api.addr: is the node running?")?;
            let token = std::fs::read_to_string(data_dir.join(crate::keystore::TOKEN_FILE))
                .context("reading api.token")?;
            let url = crate::api::dashboard_url(addr.trim(), token.trim());
            print(out.json, &serde_json::json!({ "url": url }), |_| {
                format!(
                    "{url}\n(the part after # is the API token: it never leaves the browser, but keep the URL private)\n"
                )
            })
        }
        Command::Connect { addr, out } => {
            let v: serde_json::Value = api
                .post_body(
                    "/v1/connect",
                    &[("addr", addr.to_string())],
                    &[],
                    reqwest::Body::from(""),
                )
                .await?;
            print(out.json, &v, |v| {
                format!(
                    "connected to {} via {}\n",
                    v["peer_id"].as_str().unwrap_or("?"),
                    v["addr"].as_str().unwrap_or("?")
                )
            })
        }
        Command::Start(_) | Command::Devnet(_) | Command::Init { .. } => Ok(()),
    }
}

async fn run_async(cli: Cli) -> anyhow::Result<()> {
    let data_dir = cli
        .data_dir
        .clone()
        .unwrap_or_else(config::default_data_dir);
    match cli.command {
        Command::Start(args) => {
            let file = args.config.clone().or_else(|| {
                let p = data_dir.join("config.toml");
                p.exists().then_some(p)
            });
            let base = match &file {
                Some(f) => Config::from_file(f)?,
                None => Config::default(),
            };
            let config = args.apply(base)?;
            if args.dump_config {
                config.validate()?;
                print!("{}", config.to_toml()?);
                return Ok(());
            }
            init_logging(
                config.log_format,
                "info,libp2p_kad=warn,libp2p_gossipsub=warn",
            );
            crate::start::run(config, &data_dir).await?;
            Ok(())
        }
        Command::Init { force, start } => {
            let path = start
                .config
                .clone()
                .unwrap_or_else(|| data_dir.join("config.toml"));
            if path.exists() && !force {
                anyhow::bail!("{} exists; pass --force to overwrite it", path.display());
            }
            let config = start.apply(Config::default())?;
            config.validate()?;
            crate::keystore::ensure_data_dir(&data_dir)?;
            std::fs::write(&path, crate::init::commented_toml(&config)?)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
            println!(
                "start the node with: warren --data-dir {} start",
                data_dir.display()
            );
            Ok(())
        }
        Command::Devnet(args) => {
            init_logging(LogFormat::Text, "info");
            let dir = cli
                .data_dir
                .clone()
                .unwrap_or_else(|| config::default_data_dir().join("devnet"));
            crate::devnet::run(&dir, args.nodes, &args.network).await
        }
        _ => run_client(cli, data_dir).await,
    }
}

/// Entry point of the `warren` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_async(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
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
    }
}
