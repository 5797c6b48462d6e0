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
//! | POST   | `/v1/connect?addr=`  | dials a peer: `{"peer_id", "addr"}` |
//! | GET    | `/v1/dashboard`      | [`crate::view::DashboardView`] |
//! | …      | files                | see `files`                     |
//! | …      | anonymous requests, circuits | see `onion`             |
//! | …      | models, jobs         | see `jobs`                      |
//! | …      | `/openai/v1/…`       | the OpenAI-compatible API, see `openai` |
//!
//! Two routes need no token, and carry no data a token protects:
//!
//! | method | path         | answer                                                              |
//! |--------|--------------|---------------------------------------------------------------------|
//! | GET    | `/dashboard` | the dashboard page, static; it reads the token from its URL fragment |
//! | GET    | `/metrics`   | Prometheus text format: counters only, no ids, no content            |
//!
//! `/metrics` is open so a Prometheus on the same host scrapes it without a secret in its config;
//! the API is loopback-only, so nothing off the host reaches either. A request whose `Host`
//! header is not a loopback address or `localhost` (DNS rebinding) is answered 421 before any of
//! this (`host`).
//!
//! Errors are `{"error": "..."}` with a 4xx/5xx status (under `/openai/`, OpenAI's error shape).

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
use crate::metrics::Metrics;
use crate::net::Client;
use crate::storage::Mesh;
use crate::view::{DashboardView, HeldBlock, StorageView};

mod credits;
pub mod dashboard;
mod dirs;
mod files;
pub mod gateway;
mod gateway_http;
mod host;
mod jobs;
mod names;
mod onion;
mod openai;
mod private_dirs;
mod reputation;

pub use crate::view::{
    GcView, NatView, PeerInfo, PinView, PutView, RecordView, StatView, StatusInfo, StorageUsage,
};
pub use files::KEY_HEADER;

#[derive(Clone)]
struct AppState {
    client: Client,
    store: Arc<Store>,
    mesh: Arc<Mesh>,
    onion: Option<Arc<crate::onion::Onion>>,
    inference: Arc<Inference>,
    token: Arc<str>,
    tier: warren_protocol::Tier,
    names: Arc<crate::names::Names>,
}

struct ApiError(StatusCode, String);

impl From<warren_storage_mesh::Error> for ApiError {
    fn from(e: warren_storage_mesh::Error) -> Self {
        ApiError(storage_status(&e), e.to_string())
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
            NodeError::RecordNotFound { .. } | NodeError::NameNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            NodeError::Protocol(warren_protocol::Error::NameExpired { .. }) => StatusCode::GONE,
            NodeError::NameInput(_) => StatusCode::BAD_REQUEST,
            NodeError::Storage(ref inner) => storage_status(inner),
            NodeError::Protocol(_) | NodeError::Onion(_) => StatusCode::BAD_GATEWAY,
            NodeError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            NodeError::SelfAudit => StatusCode::BAD_REQUEST,
            NodeError::UnknownBlock { .. } | NodeError::NotClaimed { .. } => StatusCode::NOT_FOUND,
            NodeError::BlockUnavailable { .. } | NodeError::Dial { .. } => StatusCode::BAD_GATEWAY,
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

/// The only paths served without the token (see the module doc).
const OPEN_PATHS: [&str; 2] = ["/dashboard", "/metrics"];

async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() == axum::http::Method::GET && OPEN_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let openai = req.uri().path().starts_with("/openai/");
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), state.token.as_bytes()) => next.run(req).await,
        Some(_) if openai => {
            openai::wire::OpenAiError::unauthorized("wrong API key").into_response()
        }
        None if openai => openai::wire::OpenAiError::unauthorized(
            "missing API key: send `Authorization: Bearer <DATA_DIR/api.token>`",
        )
        .into_response(),
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

impl AppState {
    fn metrics(&self) -> &Arc<Metrics> {
        self.mesh.metrics()
    }
}

async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let store = s.store.clone();
    let usage = tokio::task::spawn_blocking(move || store.usage())
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let c = &s.metrics().counters;
    c.storage_used.set(usage.stored_bytes);
    c.storage_offered.set(usage.offered_bytes);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics().encode(),
    )
        .into_response())
}

async fn dashboard_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
            ),
        ],
        crate::api::dashboard::PAGE_HTML,
    )
        .into_response()
}

/// The dashboard's address with the token in its fragment (never sent to the server).
pub fn dashboard_url(api_addr: &str, token: &str) -> String {
    format!("http://{api_addr}/dashboard#token={token}")
}

/// Held blocks listed on the dashboard, at most.
const DASHBOARD_HELD: usize = 50;
/// Audits listed on the dashboard, at most.
const DASHBOARD_AUDITS: usize = 20;

async fn dashboard(State(s): State<AppState>) -> Result<Json<DashboardView>, ApiError> {
    let Json(status) = self::status(State(s.clone())).await?;
    let peers = s.client.peers().await?;
    let store = s.store.clone();
    let held = tokio::task::spawn_blocking(move || store.held())
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let usage = status.storage.clone().unwrap_or(StorageUsage {
        blocks: 0,
        stored_bytes: 0,
        offered_bytes: 0,
    });
    let Json(reputation) = reputation::table(State(s.clone())).await?;
    let mut audits = s.mesh.audits();
    audits.reverse();
    audits.truncate(DASHBOARD_AUDITS);
    Ok(Json(DashboardView {
        storage: StorageView {
            blocks: usage.blocks,
            used_bytes: usage.stored_bytes,
            offered_bytes: usage.offered_bytes,
            tier: match s.tier {
                warren_protocol::Tier::Hot => "hot",
                warren_protocol::Tier::Cold => "cold",
            }
            .into(),
            held_blocks: held.len(),
        },
        held: held
            .iter()
            .take(DASHBOARD_HELD)
            .map(|cid| HeldBlock {
                cid: cid.to_string(),
                target_rf: s.mesh.wanted_rf(cid),
                copies: s.mesh.verified_copies(cid),
            })
            .collect(),
        nat: status.nat.clone().unwrap_or_default(),
        status,
        peers,
        audits,
        reputation,
        activity: activity(&s),
    }))
}

/// Jobs listed on the dashboard, newest first, at most.
const DASHBOARD_JOBS: usize = 20;

/// The dashboard feed with this node's inference jobs and onion circuits filled in from their
/// services.
fn activity(s: &AppState) -> crate::view::ActivityView {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut view = s.metrics().activity.snapshot();
    let mut jobs = s.inference.jobs();
    jobs.sort_by_key(|j| std::cmp::Reverse(j.at_ms));
    view.jobs = jobs
        .into_iter()
        .take(DASHBOARD_JOBS)
        .map(|j| crate::view::JobView {
            id: j.id,
            model: j.model,
            peer: j.peer.unwrap_or_else(|| format!("{} (this node)", j.role)),
            state: format!("{} {} · {} items · {} ms", j.role, j.kind, j.items, j.ms)
                + &format!(" · {}", j.outcome),
            age_secs: now_ms.saturating_sub(j.at_ms) / 1000,
        })
        .collect();
    if let Some(onion) = &s.onion {
        view.circuits = onion
            .circuits()
            .into_iter()
            .map(|c| crate::view::CircuitView {
                id: c.id.to_string(),
                role: c.role,
                hops: c.prev.into_iter().chain(c.next).collect(),
                state: c.state,
                age_secs: c.age_ms / 1000,
            })
            .collect();
    }
    view
}

#[derive(serde::Deserialize)]
struct ConnectQuery {
    addr: String,
}

async fn connect(
    State(s): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<ConnectQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let addr: libp2p::Multiaddr = q.addr.parse().map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{:?} is not a multiaddr: {e}", q.addr),
        )
    })?;
    if crate::addr::split_peer_addr(&addr).is_none() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("{addr} does not end in /p2p/PEER_ID"),
        ));
    }
    let (peer, via) = s
        .client
        .dial(addr)
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, e.to_string()))?;
    Ok(Json(
        serde_json::json!({ "peer_id": peer.to_string(), "addr": via.to_string() }),
    ))
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

/// The API's routes: `/dashboard` and `/metrics` open, everything else behind the token check.
#[allow(clippy::too_many_arguments)] // one handle per service the API answers for
pub fn router(
    client: Client,
    store: Arc<Store>,
    mesh: Arc<Mesh>,
    onion: Option<Arc<crate::onion::Onion>>,
    inference: Arc<Inference>,
    token: &str,
    tier: warren_protocol::Tier,
    names: Arc<crate::names::Names>,
) -> Router {
    let state = AppState {
        client,
        store,
        mesh,
        onion,
        inference,
        token: Arc::from(token),
        tier,
        names,
    };
    Router::new()
        .route("/dashboard", get(dashboard_page))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/record/{peer}", get(record))
        .route(
            "/v1/put",
            post(files::put).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/get/{cid}", get(files::get))
        .route("/v1/stat/{cid}", get(files::stat))
        .route("/v1/put-dir", post(dirs::put_dir))
        .route("/v1/ls/{cid}", get(dirs::ls))
        .route("/v1/names/keys", get(names::keys).post(names::key_gen))
        .route("/v1/names/publish", post(names::publish))
        .route("/v1/names/resolve/{name}", get(names::resolve))
        .route("/v1/pins", get(files::pins))
        .route("/v1/pin/{cid}", post(files::pin).delete(files::unpin))
        .route("/v1/gc", post(files::gc))
        .route("/v1/held", get(files::held))
        .route("/v1/leases", get(files::leases))
        .route("/v1/audits", get(files::audits))
        .route("/v1/where/{cid}", get(files::where_is))
        .route("/v1/audit", post(files::audit))
        .route("/v1/pieces/{cid}", post(files::pieces))
        .route("/v1/anon/get/{cid}", get(onion::get))
        .route("/v1/anon/infer", post(onion::infer))
        .route("/v1/anon/embed", post(onion::embed))
        .route(
            "/v1/anon/put",
            post(onion::put).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/circuits", get(onion::circuits))
        .route("/v1/credits", get(credits::table))
        .route("/v1/credits/{peer}", get(credits::peer))
        .route("/v1/reputation", get(reputation::table))
        .route("/v1/reputation/{peer}", get(reputation::peer))
        .route("/v1/dashboard", get(dashboard))
        .route("/v1/connect", post(connect))
        .route("/v1/models", get(jobs::models))
        .route("/v1/models/add", post(jobs::add))
        .route("/v1/models/serve", post(jobs::serve))
        .route("/v1/infer", post(jobs::infer))
        .route("/v1/embed", post(jobs::embed))
        .route("/v1/jobs", get(jobs::list))
        .route("/openai/v1/models", get(openai::models))
        .route("/openai/v1/chat/completions", post(openai::chat))
        .route("/openai/v1/completions", post(openai::completions))
        .route("/openai/v1/embeddings", post(openai::embeddings))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(middleware::from_fn(host::check))
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

/// The HTTP status the control API answers a storage error with.
pub fn storage_status(e: &warren_storage_mesh::Error) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    use warren_storage_mesh::Error as E;
    match e {
        E::Missing { .. } => StatusCode::NOT_FOUND,
        E::NotAFile { .. } | E::Options(_) | E::Pieces { .. } => StatusCode::BAD_REQUEST,
        E::IsDirectory { .. } | E::NotADirectory { .. } => StatusCode::BAD_REQUEST,
        E::BadDirectory { .. } => StatusCode::BAD_GATEWAY,
        E::Incomplete { .. } => StatusCode::CONFLICT,
        E::OfferExceeded { .. } | E::DiskFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
        E::Read(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
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
