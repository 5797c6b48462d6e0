//! `warren start`: runs a node in the foreground until SIGINT or SIGTERM.
//!
//! ```text
//! run ─┬─ EventLoop::run   (task: owns the swarm)
//!      ├─ axum::serve      (task: control API, graceful shutdown)
//!      └─ waits for a signal, then flips `shutdown` and joins both
//! ```
//!
//! The data directory is locked for the life of the process, so two nodes never share keys or files.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{info, warn};
use warren_inference::hardware::Hardware;
use warren_inference::{Backend, Executor, Limits};
use warren_protocol::Reputation;
use warren_protocol::reputation::Config as ReputationConfig;
use warren_storage_mesh::Store;

use crate::config::{Config, FaultInject};
use crate::error::NodeError;
use crate::inference::Inference;
use crate::keystore::{self, API_ADDR_FILE};
use crate::mesh::Mesh;
use crate::metrics::Metrics;
use crate::network;
use crate::record::RecordBuilder;
use crate::reputation_store::ReputationStore;

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

fn now_ms() -> u64 {
    network::unix_now().saturating_mul(1000)
}

/// The reputation state saved by the last run, or a fresh one seeded from the bootstrap peers.
fn load_reputation(db: &ReputationStore, me: libp2p::PeerId, config: &Config) -> Reputation {
    let seeds: Vec<libp2p::PeerId> = config
        .bootstrap
        .iter()
        .filter_map(|a| network::split_peer_addr(a).map(|(p, _)| p))
        .filter(|p| *p != me)
        .collect();
    match db.load() {
        Ok(Some(bytes)) => {
            match Reputation::from_bytes(&bytes, me, &seeds, ReputationConfig::default(), now_ms())
            {
                Ok(r) => return r,
                Err(e) => warn!(path = %db.path().display(), "starting reputation afresh: {e}"),
            }
        }
        Ok(None) => {}
        Err(e) => warn!("starting reputation afresh: {e}"),
    }
    match Reputation::new(me, &seeds, ReputationConfig::default()) {
        Ok(r) => r,
        Err(e) => {
            warn!("reputation config refused ({e}); starting without seeds");
            // The default config with no seeds is always valid.
            Reputation::new(me, &[], ReputationConfig::default()).unwrap_or_else(|_| unreachable!())
        }
    }
}

/// Refreshes trust every 10 s and saves the state every minute and at shutdown.
async fn keep_reputation(
    rep: Arc<Mutex<Reputation>>,
    db: Arc<ReputationStore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Ok(mut r) = rep.lock() {
                    r.refresh_trust(now_ms());
                }
                n += 1;
                if n.is_multiple_of(6) {
                    save_reputation(&rep, &db).await;
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    save_reputation(&rep, &db).await;
}

async fn save_reputation(rep: &Mutex<Reputation>, db: &Arc<ReputationStore>) {
    let bytes = match rep.lock().map(|r| r.to_bytes()) {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return warn!("cannot encode the reputation state: {e}"),
        Err(_) => return,
    };
    let db = db.clone();
    match tokio::task::spawn_blocking(move || db.save(&bytes)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!("cannot save the reputation state: {e}"),
        Err(e) => warn!("reputation save task: {e}"),
    }
}

/// Runs a node with `config` on `data_dir` until a signal arrives.
pub async fn run(config: Config, data_dir: &Path) -> Result<(), NodeError> {
    let started = Instant::now();
    config.validate()?;
    keystore::ensure_data_dir(data_dir)?;
    let _lock = lock_data_dir(data_dir)?;
    let addr_file = data_dir.join(API_ADDR_FILE);
    let _ = std::fs::remove_file(&addr_file);

    let key = keystore::load_or_create_identity(data_dir)?;
    let onion = keystore::load_or_create_onion_key(data_dir)?;
    let hardware = Hardware::detect();
    let peer_id = key.public().to_peer_id();
    info!(%peer_id, network = %config.network, data_dir = %data_dir.display(), "starting warren {}", network::VERSION);
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
        .map_err(|e| NodeError::Network(format!("store task: {e}")))??;
    let store = Arc::new(store);
    let records = RecordBuilder::new(&config, key.clone(), onion.public(), &hardware)
        .with_store(store.clone());
    let hot = Mesh::hot_tracker(&config.mesh);
    let rep_dir = data_dir.to_owned();
    let rep_db = tokio::task::spawn_blocking(move || ReputationStore::open(&rep_dir))
        .await
        .map_err(|e| NodeError::Network(format!("reputation store task: {e}")))??;
    let rep_db = Arc::new(rep_db);
    let reputation = Arc::new(Mutex::new(load_reputation(&rep_db, peer_id, &config)));
    let metrics = Arc::new(Metrics::new());
    let (client, event_loop) = network::build(
        &config,
        key.clone(),
        records,
        store.clone(),
        hot.clone(),
        reputation.clone(),
    )?;
    let mut event_loop = event_loop.with_metrics(metrics.clone());
    let mesh = Mesh::with_metrics(
        client.clone(),
        store.clone(),
        hot,
        config.mesh.clone(),
        key.clone(),
        reputation.clone(),
        metrics,
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

    let listener = crate::api::bind(config.api_listen).await?;
    let api_addr = listener
        .local_addr()
        .map_err(|e| NodeError::Api(e.to_string()))?;
    let token = keystore::create_api_token(data_dir)?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let net_task = tokio::spawn(event_loop.run(shutdown_rx.clone()));
    let mut api_shutdown = shutdown_rx.clone();
    let mesh_task = tokio::spawn(mesh.clone().run(shutdown_rx.clone()));
    let rep_task = tokio::spawn(keep_reputation(reputation, rep_db, shutdown_rx.clone()));
    let jobs_task = tokio::spawn(inference.clone().run_inbound(incoming, shutdown_rx.clone()));
    let onion = crate::onion::Onion::new(
        client.clone(),
        onion,
        crate::onion::OnionConfig {
            hops: config.onion_hops,
            roles: config.roles.clone(),
        },
        crate::onion::runner::Runner::new(
            crate::onion::runner::MeshAccess::new(mesh.clone(), store.clone())
                .with_inference(inference.clone()),
            crate::onion::runner::Limits::default(),
        ),
        mesh.metrics().clone(),
    );
    let onion_task = tokio::spawn(onion.clone().serve(shutdown_rx.clone()));
    let app = crate::api::router(
        client,
        store,
        mesh,
        Some(onion),
        inference,
        &token,
        config.storage.tier,
    );
    let api_task = tokio::spawn(async move {
        let graceful = async move {
            let _ = api_shutdown.wait_for(|stop| *stop).await;
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(graceful)
            .await
    });

    match tokio::time::timeout(READY_TIMEOUT, ready).await {
        Ok(Ok(())) => {}
        _ => {
            let _ = shutdown_tx.send(true);
            return Err(NodeError::Network(
                "listeners did not come up in time".into(),
            ));
        }
    }
    keystore::write_private(&addr_file, api_addr.to_string().as_bytes())?;
    info!(api = %api_addr, elapsed_ms = started.elapsed().as_millis() as u64, "ready");
    info!(
        "dashboard: run `warren --data-dir {} dashboard` for its URL (http://{api_addr}/dashboard#token=…)",
        data_dir.display()
    );

    let mut term =
        signal(SignalKind::terminate()).map_err(|e| NodeError::Network(e.to_string()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| NodeError::Network(e.to_string()))?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = int.recv() => info!("SIGINT: shutting down"),
    }
    let _ = shutdown_tx.send(true);
    if let Err(e) = rep_task.await {
        warn!("reputation task ended badly: {e}");
    }
    if let Err(e) = onion_task.await {
        warn!("onion task ended badly: {e}");
    }
    if let Err(e) = jobs_task.await {
        warn!("inference task ended badly: {e}");
    }
    if let Err(e) = mesh_task.await {
        warn!("mesh task ended badly: {e}");
    }
    if let Err(e) = net_task.await {
        warn!("network task ended badly: {e}");
    }
    match tokio::time::timeout(Duration::from_secs(5), api_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => warn!("control API ended with an error: {e}"),
        Ok(Err(e)) => warn!("control API task ended badly: {e}"),
        Err(_) => warn!("control API did not stop within 5 s"),
    }
    let _ = std::fs::remove_file(&addr_file);
    info!("stopped");
    Ok(())
}
