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
//! | …      | files                | see [`files`]                     |
//! | …      | models, jobs         | see [`jobs`]                      |
//!
//! Errors are `{"error": "..."}` with a 4xx/5xx status.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use libp2p::PeerId;
use tokio::net::TcpListener;
use warren_storage_mesh::Store;

use crate::error::NodeError;
use crate::inference::Inference;
use crate::mesh::Mesh;
use crate::network::Client;

mod files;
mod jobs;
mod reputation;
mod types;

pub use files::KEY_HEADER;
pub use types::{
    GcView, PeerInfo, PinView, PutView, RecordView, StatView, StatusInfo, StorageUsage,
};

#[derive(Clone)]
struct AppState {
    client: Client,
    store: Arc<Store>,
    mesh: Arc<Mesh>,
    inference: Arc<Inference>,
    token: Arc<str>,
}

struct ApiError(StatusCode, String);

impl From<warren_storage_mesh::Error> for ApiError {
    fn from(e: warren_storage_mesh::Error) -> Self {
        ApiError(crate::error::storage_status(&e), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        let code = match e {
            NodeError::RecordNotFound { .. } => StatusCode::NOT_FOUND,
            NodeError::Storage(ref inner) => crate::error::storage_status(inner),
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
    let mut status = s.client.status().await?;
    let store = s.store.clone();
    let usage = tokio::task::spawn_blocking(move || store.usage())
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    status.storage = Some(StorageUsage {
        blocks: usage.blocks,
        stored_bytes: usage.stored_bytes,
        offered_bytes: usage.offered_bytes,
    });
    Ok(Json(status))
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
pub fn router(
    client: Client,
    store: Arc<Store>,
    mesh: Arc<Mesh>,
    inference: Arc<Inference>,
    token: &str,
) -> Router {
    let state = AppState {
        client,
        store,
        mesh,
        inference,
        token: Arc::from(token),
    };
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/record/{peer}", get(record))
        .route(
            "/v1/put",
            post(files::put).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/get/{cid}", get(files::get))
        .route("/v1/stat/{cid}", get(files::stat))
        .route("/v1/pins", get(files::pins))
        .route("/v1/pin/{cid}", post(files::pin).delete(files::unpin))
        .route("/v1/gc", post(files::gc))
        .route("/v1/held", get(files::held))
        .route("/v1/audits", get(files::audits))
        .route("/v1/reputation", get(reputation::table))
        .route("/v1/reputation/{peer}", get(reputation::peer))
        .route("/v1/models", get(jobs::models))
        .route("/v1/models/add", post(jobs::add))
        .route("/v1/models/serve", post(jobs::serve))
        .route("/v1/infer", post(jobs::infer))
        .route("/v1/embed", post(jobs::embed))
        .route("/v1/jobs", get(jobs::list))
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
