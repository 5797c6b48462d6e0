//! L3, the node: opens the data directory, the store and the reputation state, builds the swarm
//! and starts every service on it. `warren start` (the CLI) and `warren devnet` put the control API
//! in front of a [`Node`]; nothing here knows the API exists.
//!
//! ```text
//! Node::start ─┬─ net::EventLoop::run     (owns the swarm)
//!              ├─ storage::serve::run     (answers inbound block requests)
//!              ├─ Mesh::run               (repair and audit)
//!              ├─ keep_reputation         (trust refresh, saved every minute)
//!              ├─ Inference::run_inbound  (jobs for this operator)
//!              └─ Onion::serve            (circuit hops)
//! Node::stop: flips `shutdown`, joins every task
//! ```
//!
//! The data directory is locked for the life of the node, so two nodes never share keys or files.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};
use warren_inference::hardware::Hardware;
use warren_inference::{Backend, Executor, Limits};
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

/// Inbound block requests waiting for the storage service; over this the loop answers "busy".
const BLOCK_REQUESTS_QUEUED: usize = 256;

/// A running node: its services' handles and tasks.
pub struct Node {
    /// This node's peer id.
    pub peer_id: PeerId,
    /// The swarm's command handle.
    pub client: net::Client,
    /// The local block store.
    pub store: Arc<Store>,
    /// The storage mesh (placement, fetch, repair, audits).
    pub mesh: Arc<Mesh>,
    /// Onion circuits (hops this node carries and circuits it builds).
    pub onion: Arc<Onion>,
    /// Inference (operator and requester).
    pub inference: Arc<Inference>,
    /// Prometheus recorders shared by every service.
    pub metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<(&'static str, ())>,
    _lock: File,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Opens `data_dir` (locked while the node runs), builds the swarm on `config` and starts every
    /// service; returns once every listener has an address.
    pub async fn start(config: Config, data_dir: &Path) -> Result<Node, NodeError> {
        let started = Instant::now();
        config.validate()?;
        keystore::ensure_data_dir(data_dir)?;
        let lock = lock_data_dir(data_dir)?;

        let key = keystore::load_or_create_identity(data_dir)?;
        let onion_key = keystore::load_or_create_onion_key(data_dir)?;
        let hardware = Hardware::detect();
        let peer_id = key.public().to_peer_id();
        info!(%peer_id, network = %config.network, data_dir = %data_dir.display(), "starting warren {}", net::VERSION);
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

        let store_dir = data_dir.join("store");
        let offer = config.storage.offer_bytes;
        let store = tokio::task::spawn_blocking(move || Store::open(&store_dir, offer))
            .await
            .map_err(|source| NodeError::Task {
                what: "store",
                source,
            })??;
        let store = Arc::new(store);
        let records = RecordBuilder::new(&config, key.clone(), onion_key.public(), &hardware)
            .with_store(store.clone());
        let hot = Mesh::hot_tracker(&config.mesh);
        let rep_dir = data_dir.to_owned();
        let rep_db = tokio::task::spawn_blocking(move || ReputationStore::open(&rep_dir))
            .await
            .map_err(|source| NodeError::Task {
                what: "reputation store",
                source,
            })??;
        let rep_db = Arc::new(rep_db);
        let rep = reputation::load(&rep_db, peer_id, &seeds(&config, peer_id));
        let (reputations, rep_service) = reputation::service(rep, Some(rep_db));
        let metrics = Arc::new(Metrics::new());
        let (client, event_loop) = net::build(&config, key.clone(), records)?;
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
        if config.mesh.fault_inject == FaultInject::PerturbInference {
            warn!("FAULT INJECTION ON: this operator perturbs its inference results (tests only)");
        }
        let executor = Arc::new(Executor::new(Backend::best(), Limits::default()));
        let mut control = client.stream_control();
        let incoming = control
            .accept(crate::inference::PROTOCOL)
            .map_err(|e| NodeError::Network(format!("job protocol: {e}")))?;
        let inference = Inference::new(
            key,
            executor,
            data_dir.join("models"),
            config.mesh.fault_inject,
            control,
            client.clone(),
            store.clone(),
            mesh.clone(),
        );
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
        };
        let rx = shutdown_rx.clone();
        tasks.spawn(async move { ("block server", server.run(block_requests, rx).await) });
        let rx = shutdown_rx.clone();
        let m = mesh.clone();
        tasks.spawn(async move { ("mesh", m.run(rx).await) });
        let rx = shutdown_rx.clone();
        tasks.spawn(async move { ("reputation", rep_service.run(rx).await) });
        let rx = shutdown_rx.clone();
        let inf = inference.clone();
        tasks.spawn(async move { ("inference", inf.run_inbound(incoming, rx).await) });
        let onion = Onion::new(
            client.clone(),
            onion_key,
            crate::onion::OnionConfig {
                hops: config.onion_hops,
                roles: config.roles.clone(),
            },
            crate::onion::runner::Runner::new(
                crate::onion::runner::MeshAccess::new(mesh.clone(), store.clone())
                    .with_inference(inference.clone()),
                crate::onion::runner::Limits::default(),
            ),
            metrics.clone(),
        );
        let rx = shutdown_rx.clone();
        let o = onion.clone();
        tasks.spawn(async move { ("onion", o.serve(rx).await) });

        let node = Node {
            peer_id,
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
