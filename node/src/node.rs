//! L3, the node: opens the data directory, the store and the reputation state, builds the swarm
//! and starts every service on it. `warren start` (the CLI) puts the control API in front of a
//! [`Node`], and the `warren-sim swarm` scenario starts hundreds of them in one process; nothing
//! here knows the API exists.
//!
//! ```text
//! NodeBuilder::start ─┬─ net::EventLoop::run     (owns the swarm)                 always
//!                     ├─ storage::serve::run     (answers inbound block requests) always
//!                     ├─ Mesh::run               (repair and audit)               Services::upkeep
//!                     ├─ reputation::Service     (the only holder of scores)      always
//!                     ├─ Inference::run_inbound  (jobs for this operator)         Services::inference
//!                     └─ Onion::serve            (circuit hops)                   Services::onion
//! Node::stop: flips `shutdown`, joins every task
//! ```
//!
//! Two ways to give a node its state:
//!
//! - `.data_dir(DIR)` (what [`Node::start`] does for `warren start`): DIR is locked for the life of
//!   the node, so two nodes never share keys or files; the identity and onion key come from the
//!   keystore in DIR (created on first start), the store is `DIR/store`, the reputation state is
//!   loaded from and saved to DIR, inference keeps its models in `DIR/models`.
//! - no data directory (simulations, tests): `.identity(..)`, `.onion_key(..)` and `.store(..)`
//!   are all required, no file is touched, and the reputation state lives in memory, starting
//!   empty. Inference needs a models folder, so leave it out (`.without_inference()`).
//!
//! Anything given explicitly wins over what the data directory would provide.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::identity::Keypair;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};
use warren_inference::Limits;
use warren_inference::hardware::Hardware;
use warren_protocol::{OnionSecret, Role};
use warren_storage_mesh::Store;

use crate::addr::split_peer_addr;
use crate::config::{Config, FaultInject};
use crate::error::NodeError;
use crate::inference::Inference;
use crate::keystore;
use crate::metrics::Metrics;
use crate::net;
use crate::onion::Onion;
use crate::record::RecordBuilder;
use crate::reputation;
use crate::reputation_store::ReputationStore;
use crate::storage::Mesh;
use crate::worker::{Models, Settings as WorkerSettings};

/// File locked while a node runs on a data directory.
pub const LOCK_FILE: &str = "node.lock";

/// Longest wait for the listeners to come up before giving up.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

fn lock_data_dir(dir: &Path) -> Result<File, NodeError> {
    let path = dir.join(LOCK_FILE);
    let file = File::create(&path).map_err(|e| NodeError::Io {
        path: path.clone(),
        source: e,
    })?;
    file.try_lock().map_err(|_| {
        NodeError::Config(format!(
            "another warren node is already running on {}: one data directory, one node",
            dir.display()
        ))
    })?;
    Ok(file)
}

/// The bootstrap peers of `config` other than `me`: trusted first-hand from the start.
fn seeds(config: &Config, me: PeerId) -> Vec<PeerId> {
    config
        .bootstrap
        .iter()
        .filter_map(|a| split_peer_addr(a).map(|(p, _)| p))
        .filter(|p| *p != me)
        .collect()
}

/// Facts about peers (observations, prefixes) waiting for the reputation service.
const PEER_EVENTS_QUEUED: usize = 1024;
/// Credit fraud proofs from gossip waiting for the ledger; more are dropped.
const FRAUD_PROOFS_QUEUED: usize = 64;

/// Inbound block requests waiting for the storage service; over this the loop answers "busy".
const BLOCK_REQUESTS_QUEUED: usize = 256;

/// The services a node runs besides the two it always runs: the network event loop (which owns
/// the swarm) and the block server (which answers inbound block requests). The [`Mesh`] handle
/// (put, replicate, fetch) is always there too; `upkeep` only decides whether it also repairs and
/// audits on its own timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Services {
    /// `Mesh::run`: repair passes and proof-of-storage audits.
    pub upkeep: bool,
    /// The inference operator and requester ([`Node::inference`]); needs a data directory.
    pub inference: bool,
    /// Onion circuits ([`Node::onion`]).
    pub onion: bool,
}

impl Services {
    /// Every service: a full node, as `warren start` runs it.
    pub const ALL: Services = Services {
        upkeep: true,
        inference: true,
        onion: true,
    };
    /// None of the optional services: the swarm, the block server and the mesh handle only (a
    /// storage simulation).
    pub const NONE: Services = Services {
        upkeep: false,
        inference: false,
        onion: false,
    };
}

impl Default for Services {
    fn default() -> Self {
        Services::ALL
    }
}

/// Everything a [`Node`] is started from; see the [module docs](self) for the two ways to give it
/// its keys and store.
///
/// ```no_run
/// # async fn f(config: warren_node::config::Config) -> Result<(), warren_node::NodeError> {
/// use warren_node::node::NodeBuilder;
/// let node = NodeBuilder::new(config).data_dir("/var/lib/warren").start().await?;
/// node.stop().await;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `start`"]
pub struct NodeBuilder {
    config: Config,
    data_dir: Option<PathBuf>,
    identity: Option<Keypair>,
    onion_key: Option<OnionSecret>,
    store: Option<Arc<Store>>,
    hardware: Option<Hardware>,
    transport: net::Transport,
    services: Services,
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("data_dir", &self.data_dir)
            .field("transport", &self.transport)
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

impl NodeBuilder {
    /// A node on `config`, on TCP and QUIC, with every service; give it a data directory or its
    /// identity, onion key and store before [`start`](Self::start).
    pub fn new(config: Config) -> Self {
        Self {
            config,
            data_dir: None,
            identity: None,
            onion_key: None,
            store: None,
            hardware: None,
            transport: net::Transport::Network,
            services: Services::ALL,
        }
    }

    /// Opens `dir` (created if missing, locked while the node runs) for the keys, the store, the
    /// reputation state and the models not given explicitly.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// The node's libp2p identity (instead of `identity.key` in the data directory).
    pub fn identity(mut self, key: Keypair) -> Self {
        self.identity = Some(key);
        self
    }

    /// The node's onion static key (instead of `onion.key` in the data directory).
    pub fn onion_key(mut self, key: OnionSecret) -> Self {
        self.onion_key = Some(key);
        self
    }

    /// An open block store (instead of `store/` in the data directory).
    pub fn store(mut self, store: Arc<Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The hardware the node's record offers (instead of detecting it: many nodes in one process
    /// can share one detection).
    pub fn hardware(mut self, hardware: Hardware) -> Self {
        self.hardware = Some(hardware);
        self
    }

    /// The transports of the swarm ([`net::Transport::Memory`] for many nodes in one process).
    pub fn transport(mut self, transport: net::Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Exactly these optional services ([`Services::ALL`] unless set).
    pub fn services(mut self, services: Services) -> Self {
        self.services = services;
        self
    }

    /// Leaves out inference: [`Node::inference`] is `None` and job requests go unanswered.
    pub fn without_inference(mut self) -> Self {
        self.services.inference = false;
        self
    }

    /// Leaves out onion circuits: [`Node::onion`] is `None` and this node carries no hops.
    pub fn without_onion(mut self) -> Self {
        self.services.onion = false;
        self
    }

    /// Builds the swarm and starts every service; returns once every listener has an address.
    pub async fn start(self) -> Result<Node, NodeError> {
        let started = Instant::now();
        let NodeBuilder {
            config,
            data_dir,
            identity,
            onion_key,
            store,
            hardware,
            transport,
            services,
        } = self;
        config.validate()?;
        let dir = data_dir.as_deref();
        let lock = match dir {
            Some(dir) => {
                keystore::ensure_data_dir(dir)?;
                Some(lock_data_dir(dir)?)
            }
            None => None,
        };
        let missing = |what: &str| {
            NodeError::Config(format!(
                "a node without a data directory needs {what} (NodeBuilder::{what})"
            ))
        };
        let key = match (identity, dir) {
            (Some(key), _) => key,
            (None, Some(dir)) => keystore::load_or_create_identity(dir)?,
            (None, None) => return Err(missing("identity")),
        };
        let onion_key = match (onion_key, dir) {
            (Some(key), _) => key,
            (None, Some(dir)) => keystore::load_or_create_onion_key(dir)?,
            (None, None) => return Err(missing("onion_key")),
        };
        let models_dir = match (services.inference, dir) {
            (true, Some(dir)) => Some(dir.join("models")),
            (true, None) => {
                return Err(NodeError::Config(
                    "inference keeps its models in the data directory: give one, or leave \
                     inference out (NodeBuilder::without_inference)"
                        .into(),
                ));
            }
            (false, _) => None,
        };
        let hardware = hardware.unwrap_or_else(Hardware::detect);
        let peer_id = key.public().to_peer_id();
        let shown = dir.map_or_else(|| "(none)".into(), |d| d.display().to_string());
        info!(%peer_id, network = %config.network, data_dir = %shown, "starting warren {}", net::VERSION);
        info!(
            storage_offer_bytes = config.storage.offer_bytes,
            tier = ?config.storage.tier,
            roles = ?config.roles,
            cpu_cores = hardware.cpu_cores,
            ram_bytes = hardware.ram_bytes,
            gpus = hardware.gpus.len(),
            "offering"
        );
        if config.mesh.fault_inject != FaultInject::None {
            warn!(fault = ?config.mesh.fault_inject, "FAULT INJECTION ON: this node misbehaves on purpose (tests only)");
        }

        let store = match (store, dir) {
            (Some(store), _) => store,
            (None, Some(dir)) => {
                let store_dir = dir.join("store");
                let offer = config.storage.offer_bytes;
                let store = tokio::task::spawn_blocking(move || Store::open(&store_dir, offer))
                    .await
                    .map_err(|source| NodeError::Task {
                        what: "store",
                        source,
                    })??;
                Arc::new(store)
            }
            (None, None) => return Err(missing("store")),
        };
        let relay = services.onion && config.roles.contains(&Role::Relay);
        let (workers, sandbox) = worker_sandbox(&config, models_dir.is_some() || relay).await?;
        let mut config = config;
        if relay && let Err(why) = &sandbox {
            // The runner reads strangers' requests and uploads: without a sandbox, no relay.
            warn!("the onion relay role is not offered: no sandbox here ({why})");
            config.roles.retain(|r| *r != Role::Relay);
        }
        // The relay runner's work on strangers' bytes runs in sandboxed relay workers.
        let relay_workers = (relay && sandbox.is_ok()).then(|| workers.clone());
        let records = RecordBuilder::new(&config, key.clone(), onion_key.public(), &hardware)
            .with_store(store.clone());
        let load_gauge = records.load_gauge();
        let served_models = records.served_models();
        let hot = Mesh::hot_tracker(&config.mesh);
        let (rep, rep_db) = match dir {
            Some(dir) => {
                let rep_dir = dir.to_owned();
                let rep_db = tokio::task::spawn_blocking(move || ReputationStore::open(&rep_dir))
                    .await
                    .map_err(|source| NodeError::Task {
                        what: "reputation store",
                        source,
                    })??;
                (
                    reputation::load(&rep_db, peer_id, &seeds(&config, peer_id)),
                    Some(Arc::new(rep_db)),
                )
            }
            None => (reputation::fresh(peer_id, &[]), None),
        };
        let (reputations, rep_service) = reputation::service(rep, rep_db);
        let metrics = Arc::new(Metrics::new());
        let (client, event_loop) = net::build_on(transport, &config, key.clone(), records)?;
        let names = Arc::new(crate::names::Names::new(
            client.clone(),
            key.clone(),
            data_dir.clone(),
        )?);
        let mut event_loop = event_loop.with_metrics(metrics.clone());
        let rep_service = rep_service.with_peer_events(event_loop.peer_events(PEER_EVENTS_QUEUED));
        event_loop.use_scores(reputations.scores());
        let block_requests = event_loop.block_requests(BLOCK_REQUESTS_QUEUED);
        let mesh = Mesh::with_metrics(
            client.clone(),
            store.clone(),
            hot.clone(),
            config.mesh.clone(),
            key.clone(),
            reputations,
            metrics.clone(),
        );
        let policy = config.credits.policy;
        let (credits, credit_streams) = crate::credits::start(
            client.stream_control(),
            key.clone(),
            policy,
            dir,
            metrics.clone(),
        )
        .await?;
        mesh.set_credits(credits.clone());
        // Weak: the mesh holds the ledger, which holds this hook.
        let m = Arc::downgrade(&mesh);
        credits.on_refused(Box::new(move |peer, evidence| {
            if let Some(m) = m.upgrade() {
                tokio::spawn(async move { m.refused_receipt(peer, evidence).await });
            }
        }));
        let client_f = client.clone();
        credits.on_fraud(Box::new(move |proof| {
            let client = client_f.clone();
            tokio::spawn(async move {
                client
                    .publish(warren_protocol::credits::FRAUD_TOPIC, proof)
                    .await
            });
        }));
        let mut frauds = event_loop.fraud_proofs(FRAUD_PROOFS_QUEUED);
        let heard = credits.clone();
        let inference = match models_dir {
            Some(models_dir) => {
                if config.mesh.fault_inject == FaultInject::PerturbInference {
                    warn!(
                        "FAULT INJECTION ON: this operator perturbs its inference results (tests only)"
                    );
                }
                let executor = Arc::new(Models::new(workers, Limits::default(), sandbox.clone()));
                let mut control = client.stream_control();
                let incoming = control
                    .accept(crate::inference::PROTOCOL)
                    .map_err(|e| NodeError::Network(format!("job protocol: {e}")))?;
                let inference = Inference::new(
                    key,
                    executor,
                    models_dir,
                    config.mesh.fault_inject,
                    control,
                    client.clone(),
                    store.clone(),
                    mesh.clone(),
                    load_gauge,
                    served_models,
                );
                Some((inference, incoming))
            }
            None => None,
        };
        let ready = event_loop.on_ready();

        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let rx = shutdown_rx.clone();
        tasks.spawn(async move { ("network", event_loop.run(rx).await) });
        let server = crate::storage::serve::Server {
            client: client.clone(),
            store: store.clone(),
            hot,
            fault: config.mesh.fault_inject,
            metrics: metrics.clone(),
            in_flight: mesh.audits_in_flight(),
            pieces_watch: mesh.pieces_watch(),
            quota: config.mesh.origin_quota(config.storage.offer_bytes),
            offer: config.storage.offer_bytes,
            credits: credits.clone(),
        };
        let rx = shutdown_rx.clone();
        tasks.spawn(async move { ("block server", server.run(block_requests, rx).await) });
        let (rx, every) = (shutdown_rx.clone(), config.credits.receipt_every_ms);
        let every = std::time::Duration::from_millis(every);
        tasks.spawn(async move { ("credits", credits.run(credit_streams, every, rx).await) });
        tasks.spawn(async move {
            while let Some(proof) = frauds.recv().await {
                heard.fraud_proven(&proof);
            }
            ("credit fraud proofs", ())
        });
        if services.upkeep {
            let rx = shutdown_rx.clone();
            let m = mesh.clone();
            tasks.spawn(async move { ("mesh", m.run(rx).await) });
        }
        let rx = shutdown_rx.clone();
        tasks.spawn(async move { ("reputation", rep_service.run(rx).await) });
        let inference = inference.map(|(inference, incoming)| {
            let rx = shutdown_rx.clone();
            let inf = inference.clone();
            tasks.spawn(async move { ("inference", inf.run_inbound(incoming, rx).await) });
            inference
        });
        let onion = services.onion.then(|| {
            let mut access = crate::onion::runner::MeshAccess::new(mesh.clone(), store.clone());
            if let Some(inference) = &inference {
                access = access.with_inference(inference.clone());
            }
            if let Some(settings) = relay_workers {
                access = access.with_workers(crate::worker::relay::RelayWorkers::new(settings));
            }
            let onion = Onion::new(
                client.clone(),
                onion_key,
                crate::onion::OnionConfig {
                    hops: config.onion_hops,
                    roles: config.roles.clone(),
                    data_dir: data_dir.clone(),
                },
                crate::onion::runner::Runner::new(access, crate::onion::runner::Limits::default()),
                metrics.clone(),
            );
            if let Some(c) = mesh.credits() {
                onion.set_credits(c.clone(), config.credits.relay);
            }
            let rx = shutdown_rx.clone();
            let o = onion.clone();
            tasks.spawn(async move { ("onion", o.serve(rx).await) });
            onion
        });

        let rx = shutdown_rx.clone();
        let n = names.clone();
        tasks.spawn(async move { ("names", n.run(rx).await) });

        let node = Node {
            peer_id,
            names,
            client,
            store,
            mesh,
            onion,
            inference,
            metrics,
            shutdown,
            tasks,
            _lock: lock,
        };
        match tokio::time::timeout(READY_TIMEOUT, ready).await {
            Ok(Ok(())) => {}
            _ => {
                node.stop().await;
                return Err(NodeError::Network(
                    "listeners did not come up in time".into(),
                ));
            }
        }
        info!(elapsed_ms = started.elapsed().as_millis() as u64, "node up");
        Ok(node)
    }
}

/// A running node: its services' handles and tasks.
pub struct Node {
    /// This node's peer id.
    pub peer_id: PeerId,
    /// The swarm's command handle.
    pub client: net::Client,
    /// Names: keys, publications (republished here), resolutions.
    pub names: Arc<crate::names::Names>,
    /// The local block store.
    pub store: Arc<Store>,
    /// The storage mesh (placement, fetch, repair, audits).
    pub mesh: Arc<Mesh>,
    /// Onion circuits (hops this node carries and circuits it builds); `None` when left out.
    pub onion: Option<Arc<Onion>>,
    /// Inference (operator and requester); `None` when left out.
    pub inference: Option<Arc<Inference>>,
    /// Prometheus recorders shared by every service.
    pub metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<(&'static str, ())>,
    _lock: Option<File>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A full node on `data_dir` (locked while the node runs) with every service:
    /// `NodeBuilder::new(config).data_dir(data_dir).start()`.
    pub async fn start(config: Config, data_dir: &Path) -> Result<Node, NodeError> {
        NodeBuilder::new(config).data_dir(data_dir).start().await
    }

    /// A receiver that turns true when the node stops (for tasks the caller runs beside it).
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stops every service and waits for its task (the reputation state is saved on the way).
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok((name, ())) => tracing::debug!(task = name, "stopped"),
                Err(e) => warn!("a node task ended badly: {e}"),
            }
        }
    }
}

/// The worker process's settings and, when this node needs it (it serves models or offers the
/// onion relay role), whether it can be sandboxed here: the Landlock ABI, or why not (then the
/// node runs no model and offers no relay, and says so).
async fn worker_sandbox(
    config: &Config,
    needed: bool,
) -> Result<(WorkerSettings, Result<u32, String>), NodeError> {
    let deadline = match config.compute.worker_deadline_secs {
        0 => Duration::from_secs(300),
        s => Duration::from_secs(s),
    };
    let settings = WorkerSettings::this_binary(config.compute.worker_memory_mb, deadline)
        .map_err(NodeError::Worker)?;
    if !needed {
        return Ok((settings, Err("not checked: no service needs it".into())));
    }
    let s = settings.clone();
    let sandbox = tokio::task::spawn_blocking(move || crate::worker::preflight(&s))
        .await
        .map_err(|source| NodeError::Task {
            what: "worker",
            source,
        })?;
    match &sandbox {
        Ok(abi) => info!(
            landlock = abi,
            "worker sandbox: ok (landlock, seccomp, rlimits)"
        ),
        Err(why) => {
            warn!("the worker process cannot be sandboxed here, so this node runs no model: {why}")
        }
    }
    Ok((settings, sandbox))
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::multiaddr::{Multiaddr, Protocol};

    fn memory_config() -> Config {
        Config {
            // Port 0: the memory transport picks a free one.
            listen: vec![Multiaddr::empty().with(Protocol::Memory(0))],
            mdns: false,
            ..Config::default()
        }
    }

    #[tokio::test]
    async fn a_node_without_a_data_dir_runs_on_given_keys_and_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s"), 1 << 20).unwrap());
        let key = Keypair::generate_ed25519();
        let builder = || {
            NodeBuilder::new(memory_config())
                .identity(key.clone())
                .onion_key(OnionSecret::from_bytes([7; 32]))
                .transport(net::Transport::Memory)
        };
        let err = builder().without_inference().start().await.unwrap_err();
        assert!(err.to_string().contains("NodeBuilder::store"), "{err}");
        let err = builder().store(store.clone()).start().await.unwrap_err();
        assert!(err.to_string().contains("without_inference"), "{err}");

        let node = builder()
            .store(store)
            .without_inference()
            .start()
            .await
            .unwrap();
        assert_eq!(node.peer_id, key.public().to_peer_id());
        assert!(node.inference.is_none() && node.onion.is_some());
        assert!(
            node.client
                .status()
                .await
                .unwrap()
                .listen_addrs
                .iter()
                .any(|a| a.contains("memory"))
        );
        node.stop().await;
        // Only the store was written.
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
    }

    #[tokio::test]
    async fn a_data_dir_holds_one_node_and_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let builder = || {
            NodeBuilder::new(memory_config())
                .data_dir(dir.path())
                .transport(net::Transport::Memory)
                .services(Services::NONE)
        };
        let node = builder().start().await.unwrap();
        assert!(node.inference.is_none() && node.onion.is_none());
        let err = builder().start().await.unwrap_err();
        assert!(err.to_string().contains("already running"), "{err}");
        let peer = node.peer_id;
        node.stop().await;
        let again = builder().start().await.unwrap();
        assert_eq!(
            again.peer_id, peer,
            "the identity comes back from the keystore"
        );
        again.stop().await;
        assert!(dir.path().join(keystore::IDENTITY_FILE).exists());
        assert!(dir.path().join("store").exists());
    }
}
