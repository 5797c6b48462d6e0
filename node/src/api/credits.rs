//! `GET /v1/credits` (every peer with an account, highest balance first, and the balance history
//! the dashboard charts) and `GET /v1/credits/{peer}` (one peer's account).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use libp2p::PeerId;

use super::{ApiError, AppState};
use crate::credits::{Credits, CreditsView};

fn credits(s: &AppState) -> Result<&Credits, ApiError> {
    s.mesh.credits().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the credit ledger is not running on this node".into(),
        )
    })
}

pub(super) async fn table(State(s): State<AppState>) -> Result<Json<CreditsView>, ApiError> {
    Ok(Json(credits(&s)?.view(None)))
}

pub(super) async fn peer(
    State(s): State<AppState>,
    Path(peer): Path<String>,
) -> Result<Json<CreditsView>, ApiError> {
    let id: PeerId = peer.parse().map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{peer:?} is not a peer id: {e}"),
        )
    })?;
    let view = credits(&s)?.view(Some(id));
    if view.peers.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no credit account with {id} yet"),
        ));
    }
    Ok(Json(view))
}
