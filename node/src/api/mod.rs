//! The local control API: HTTP/JSON on a loopback address, every call authenticated.
//!
//! `start` binds it (loopback only: `Config::validate` refuses anything else), writes a fresh random
//! token to `DATA_DIR/api.token` (mode 0600) and the bound `host:port` to `DATA_DIR/api.addr`.
//! Clients send `Authorization: Bearer TOKEN`; a missing or wrong token gets 401 before any handler
//! runs. The token is compared in constant time.
//!
//! | method | path                 | answer                           |
//! |--------|----------------------|----------------------------------|
//! | GET    | `/v1/status`         | [`StatusInfo`]                   |
//! | GET    | `/v1/peers`          | `[`[`PeerInfo`]`]`               |
//! | GET    | `/v1/record/{peer}`  | [`RecordView`] (404 if not found) |
//!
//! Errors are `{"error": "..."}` with a 4xx/5xx status.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use warren_protocol::{ComputeOffer, NodeRecord, Price, Role, StorageOffer};

use crate::error::NodeError;
use crate::network::Client;

/// `GET /v1/status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusInfo {
    /// This node's peer id.
    pub peer_id: String,
    /// warren version.
    pub version: String,
    /// Network id.
    pub network: String,
    /// Full listen multiaddrs, each ending in `/p2p/PEER_ID`.
    pub listen_addrs: Vec<String>,
    /// Addresses others confirmed reaching this node at.
    pub external_addrs: Vec<String>,
    /// Connected peers.
    pub peers: usize,
    /// Peers in the Kademlia routing table.
    pub routing_table: usize,
    /// Kademlia mode (server or client).
    pub kad_mode: String,
    /// Whether this node's record is stored on at least one other peer.
    pub record_published: bool,
    /// Seconds since start.
    pub uptime_secs: u64,
}

/// One entry of `GET /v1/peers`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer.
    pub peer_id: String,
    /// Addresses of the connections to it.
    pub addrs: Vec<String>,
    /// Its identify agent version.
    pub agent: Option<String>,
    /// Its identify protocol version.
    pub protocol_version: Option<String>,
    /// Last ping round trip, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Seconds since the first connection.
    pub connected_secs: u64,
    /// Roles from its verified node record, when known.
    pub roles: Vec<Role>,
    /// Messages from it that were refused (bad records, malformed envelopes).
    pub invalid_messages: u32,
}

/// A verified node record, as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordView {
    /// Always true: only verified records are ever shown.
    pub verified: bool,
    /// Where it came from: a peer id, "local store" or "local".
    pub source: String,
    /// Encoded size of the signed record.
    pub size_bytes: usize,
    /// Record format version.
    pub version: u16,
    /// Network id.
    pub network: String,
    /// The peer the record describes.
    pub peer_id: String,
    /// Roles offered.
    pub roles: Vec<Role>,
    /// Onion static X25519 public key, hex.
    pub onion_key: String,
    /// Storage offer.
    pub storage: Option<StorageOffer>,
    /// Compute offer.
    pub compute: Option<ComputeOffer>,
    /// Prices.
    pub price: Price,
    /// Load, per mille.
    pub load_permille: u16,
    /// Advertised addresses.
    pub addrs: Vec<String>,
    /// Issued at (Unix seconds).
    pub issued_at: u64,
    /// Expires at (Unix seconds).
    pub expires_at: u64,
}

impl RecordView {
    /// The view of a record that has been verified.
    pub fn new(r: &NodeRecord, size_bytes: usize, source: &str) -> Self {
        Self {
            verified: true,
            source: source.to_owned(),
            size_bytes,
            version: r.version,
            network: r.network.clone(),
            peer_id: r.peer_id.to_string(),
            roles: r.roles.clone(),
            onion_key: hex::encode(r.onion_key),
            storage: r.storage.clone(),
            compute: r.compute.clone(),
            price: r.price.clone(),
            load_permille: r.load_permille,
            addrs: r.addrs.iter().map(|a| a.to_string()).collect(),
            issued_at: r.issued_at,
            expires_at: r.expires_at,
        }
    }
}

#[derive(Clone)]
struct AppState {
    client: Client,
    token: Arc<str>,
}

struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let code = match e {
            NodeError::RecordNotFound { .. } => StatusCode::NOT_FOUND,
            NodeError::Protocol(_) => StatusCode::BAD_GATEWAY,
            NodeError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), state.token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError(StatusCode::UNAUTHORIZED, "wrong API token".into()).into_response(),
        None => ApiError(
            StatusCode::UNAUTHORIZED,
            "missing API token: send `Authorization: Bearer <DATA_DIR/api.token>`".into(),
        )
        .into_response(),
    }
}

async fn status(State(s): State<AppState>) -> Result<Json<StatusInfo>, ApiError> {
    Ok(Json(s.client.status().await?))
}

async fn peers(State(s): State<AppState>) -> Result<Json<Vec<PeerInfo>>, ApiError> {
    Ok(Json(s.client.peers().await?))
}

async fn record(
    State(s): State<AppState>,
    Path(peer): Path<String>,
) -> Result<Json<RecordView>, ApiError> {
    let peer: PeerId = peer.parse().map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{peer:?} is not a peer id: {e}"),
        )
    })?;
    Ok(Json(s.client.find_record(peer).await?))
}

/// The API's routes, behind the token check.
pub fn router(client: Client, token: &str) -> Router {
    let state = AppState {
        client,
        token: Arc::from(token),
    };
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/record/{peer}", get(record))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state)
}

/// Binds the API on `addr`, which must be loopback.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, NodeError> {
    if !addr.ip().is_loopback() {
        return Err(NodeError::Config(format!(
            "refusing to serve the control API on non-loopback {addr}"
        )));
    }
    TcpListener::bind(addr)
        .await
        .map_err(|e| NodeError::Api(format!("cannot bind {addr}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[tokio::test]
    async fn bind_refuses_non_loopback() {
        let err = bind("0.0.0.0:0".parse().unwrap())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("non-loopback"), "{err}");
    }
}
