//! Names that can change (`spec/names.md`; the service is `crate::names`).
//!
//! | method | path | body / answer |
//! |--------|------|---------------|
//! | GET    | `/v1/names/keys` | the keys that sign names: [`NameKeyView`]s |
//! | POST   | `/v1/names/keys` | `{"key": LABEL}`: a new named key, 0600 in the data dir |
//! | POST   | `/v1/names/publish` | [`PublishNameRequest`]; answer [`PublishedView`] |
//! | GET    | `/v1/names/resolve/{name}` | [`ResolvedView`]: the newest valid record |

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::view::{NameKeyView, PublishNameRequest, PublishedView, ResolvedView};

pub(super) async fn keys(State(s): State<AppState>) -> Result<Json<Vec<NameKeyView>>, ApiError> {
    Ok(Json(s.names.keys()?))
}

#[derive(Debug, Deserialize)]
pub(super) struct KeyGen {
    key: String,
}

pub(super) async fn key_gen(
    State(s): State<AppState>,
    Json(req): Json<KeyGen>,
) -> Result<Json<NameKeyView>, ApiError> {
    Ok(Json(s.names.key_gen(&req.key)?))
}

pub(super) async fn publish(
    State(s): State<AppState>,
    Json(req): Json<PublishNameRequest>,
) -> Result<Json<PublishedView>, ApiError> {
    Ok(Json(s.names.publish(req).await?))
}

pub(super) async fn resolve(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ResolvedView>, ApiError> {
    Ok(Json(s.names.resolve(&name).await?))
}
