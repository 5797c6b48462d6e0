//! `GET /v1/reputation` (every scored peer, best first) and `GET /v1/reputation/{peer}` (one
//! peer's score and the evidence behind it).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use libp2p::PeerId;
use serde_json::{Value, json};
use warren_protocol::reputation::Score;

use super::{ApiError, AppState};

fn score_json(peer: &PeerId, s: &Score) -> Value {
    let c = &s.components;
    json!({
        "peer_id": peer.to_string(),
        "total": s.total,
        "below_floor": s.is_below_floor(),
        "components": {
            "performance": c.performance,
            "speed": c.speed,
            "uptime": c.uptime,
            "security": c.security,
            "peer_review": c.peer_review,
            "longevity": c.longevity,
        },
        "evidence": {
            "first_hand": s.evidence.first_hand,
            "second_hand": s.evidence.second_hand,
            "reporters": s.evidence.reporters,
        },
        "standing": s.standing,
    })
}

pub(super) async fn table(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let rows: Vec<Value> = s
        .mesh
        .reputation()
        .table()
        .await?
        .iter()
        .map(|(p, sc)| score_json(p, sc))
        .collect();
    Ok(Json(Value::Array(rows)))
}

pub(super) async fn peer(
    State(s): State<AppState>,
    Path(peer): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: PeerId = peer.parse().map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{peer:?} is not a peer id: {e}"),
        )
    })?;
    let (score, evidence) =
        s.mesh.reputation().peer(id).await?.ok_or_else(|| {
            ApiError(StatusCode::NOT_FOUND, format!("no evidence about {id} yet"))
        })?;
    let evidence = serde_json::to_value(evidence)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut out = score_json(&id, &score);
    out["observations"] = evidence;
    Ok(Json(out))
}
