//! `warren start`: a [`Node`] with the control API in front of it, in the foreground until SIGINT
//! or SIGTERM.
//!
//! ```text
//! run ─┬─ Node::start      (the swarm and every service)
//!      ├─ axum::serve      (task: control API, graceful shutdown)
//!      └─ waits for a signal, then stops the API and the node
//! ```
//!
//! The API address file is written only once every listener is up and removed on the way out.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::config::Config;
use crate::error::NodeError;
use crate::keystore::{self, API_ADDR_FILE};
use crate::node::Node;

/// File in the data directory holding the gateway's bound `host:port` while it runs.
pub const GATEWAY_ADDR_FILE: &str = "gateway.addr";

/// Runs a node on `data_dir` with its control API until a signal stops it.
pub async fn run(config: Config, data_dir: &Path) -> Result<(), NodeError> {
    let started = Instant::now();
    let addr_file = data_dir.join(API_ADDR_FILE);
    let _ = std::fs::remove_file(&addr_file);
    let listener = crate::api::bind(config.api_listen).await?;
    let api_addr = listener
        .local_addr()
        .map_err(|e| NodeError::Api(e.to_string()))?;
    let tier = config.storage.tier;
    let gateway_file = data_dir.join(GATEWAY_ADDR_FILE);
    let _ = std::fs::remove_file(&gateway_file);
    let gateway = match config.gateway {
        Some(addr) => Some(crate::api::gateway::bind(addr).await?),
        None => None,
    };
    let node = Node::start(config, data_dir).await?;
    // `Node::start` runs every service, so inference is there; the API needs it.
    let Some(inference) = node.inference.clone() else {
        node.stop().await;
        return Err(NodeError::Config(
            "the control API needs the inference service".into(),
        ));
    };
    let token = keystore::create_api_token(data_dir)?;
    let app = crate::api::router(
        node.client.clone(),
        node.store.clone(),
        node.mesh.clone(),
        node.onion.clone(),
        inference,
        &token,
        tier,
        node.names.clone(),
    );
    let mut api_shutdown = node.shutdown_signal();
    let api_task = tokio::spawn(async move {
        let graceful = async move {
            let _ = api_shutdown.wait_for(|stop| *stop).await;
        };
        axum::serve(listener, app)
            .with_graceful_shutdown(graceful)
            .await
    });
    let mut gateway_task = None;
    if let Some(listener) = gateway {
        let gw_addr = listener
            .local_addr()
            .map_err(|e| NodeError::Api(e.to_string()))?;
        let app =
            crate::api::gateway::router(node.store.clone(), node.mesh.clone(), node.names.clone());
        let mut stop = node.shutdown_signal();
        gateway_task = Some(tokio::spawn(async move {
            let graceful = async move {
                let _ = stop.wait_for(|stop| *stop).await;
            };
            axum::serve(listener, app)
                .with_graceful_shutdown(graceful)
                .await
        }));
        keystore::write_private(&gateway_file, gw_addr.to_string().as_bytes())?;
        info!("gateway: http://{gw_addr}/warren/CID/");
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
    node.stop().await;
    match tokio::time::timeout(Duration::from_secs(5), api_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => warn!("control API ended with an error: {e}"),
        Ok(Err(e)) => warn!("control API task ended badly: {e}"),
        Err(_) => warn!("control API did not stop within 5 s"),
    }
    if let Some(task) = gateway_task
        && tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
    {
        warn!("gateway did not stop within 5 s");
    }
    let _ = std::fs::remove_file(&addr_file);
    let _ = std::fs::remove_file(&gateway_file);
    info!("stopped");
    Ok(())
}
