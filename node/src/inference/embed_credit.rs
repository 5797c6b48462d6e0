//! Verified embedding work earns credit (spec/credits.md, "Verified inference work"): the
//! requester sizes a confirmed part itself, its tokens counted with the model's tokenizer and
//! the parameter count read from the model's safetensors header (both files fetched from the
//! mesh and checked against the manifest, as the GGUF of a generation model is), and owes it to
//! the operator in its next receipt.

use std::sync::Arc;

use libp2p::PeerId;
use tracing::warn;
use warren_inference::embed::EmbedSizer;
use warren_protocol::ContentId;
use warren_protocol::inference::{self as wire, ModelManifest};

use super::{Inference, lock};
use crate::error::NodeError;

/// Largest safetensors file fetched only to size embedding jobs (bytes).
const MAX_SIZER_SOURCE: u64 = 4 << 30;
/// Models whose sizers are kept.
const MAX_SIZERS: usize = 8;

impl Inference {
    /// The sizer of embedding model `model`: its files as served here, else fetched from the
    /// mesh once (checked against the manifest) into the models directory.
    async fn embed_sizer(&self, model: ContentId) -> Result<Arc<EmbedSizer>, NodeError> {
        if let Some(s) = lock(&self.sizers).get(&model) {
            return Ok(s.clone());
        }
        let bad = |detail: String| NodeError::Model {
            model: model.to_string(),
            detail,
        };
        let dir = self.models_dir.join(model.to_string());
        std::fs::create_dir_all(&dir).map_err(|source| NodeError::Io {
            path: dir.clone(),
            source,
        })?;
        let manifest_path = dir.join("manifest.cbor");
        if !manifest_path.exists() {
            self.fetch_to(model, manifest_path.clone()).await?;
        }
        let bytes = std::fs::read(&manifest_path).map_err(|source| NodeError::Io {
            path: manifest_path,
            source,
        })?;
        let manifest = ModelManifest::decode(&bytes)?;
        let served = lock(&self.served).contains_key(&model);
        let mut paths = Vec::new();
        for role in [wire::role::WEIGHTS, wire::role::TOKENIZER] {
            let f = manifest
                .file(role)
                .ok_or_else(|| bad(format!("not an embedding model (no {role} file)")))?
                .clone();
            let path = dir.join(&f.name);
            let blake3: [u8; 32] = f.blake3.as_slice().try_into().unwrap_or([0; 32]);
            // A model served here was checked against the manifest when it was loaded.
            let fresh = path.exists()
                && (served
                    || tokio::task::spawn_blocking({
                        let p = path.clone();
                        move || warren_inference::files::hash_file(&p).ok() == Some(blake3)
                    })
                    .await
                    .unwrap_or(false));
            if !fresh {
                if f.size > MAX_SIZER_SOURCE {
                    return Err(bad(format!(
                        "its {} ({} bytes) is too large to fetch to size its jobs",
                        f.name, f.size
                    )));
                }
                self.fetch_to(f.content, path.clone()).await?;
            }
            paths.push(path);
        }
        let name = model.to_string();
        let s = tokio::task::spawn_blocking(move || EmbedSizer::load(&name, &paths[0], &paths[1]))
            .await
            .map_err(|source| NodeError::Task {
                what: "embedding sizer",
                source,
            })??;
        let s = Arc::new(s);
        let mut cache = lock(&self.sizers);
        if cache.len() >= MAX_SIZERS {
            cache.clear();
        }
        cache.insert(model, s.clone());
        Ok(s)
    }

    /// Owes each operator of `confirmed` (peer, the texts of its work a comparable run
    /// confirmed) the tokens of those texts on `model`, as this node counts them.
    pub(super) async fn credit_embeddings(
        &self,
        model: ContentId,
        confirmed: Vec<(PeerId, Vec<String>)>,
    ) {
        let Some(credits) = self.mesh.credits() else {
            return;
        };
        let confirmed: Vec<_> = confirmed
            .into_iter()
            .filter(|(p, t)| *p != self.me && !t.is_empty())
            .collect();
        if confirmed.is_empty() {
            return;
        }
        let sizer = match self.embed_sizer(model).await {
            Ok(s) => s,
            Err(e) => return warn!(%model, "verified embedding work not credited: {e}"),
        };
        let counted = tokio::task::spawn_blocking(move || {
            confirmed
                .into_iter()
                .map(|(p, texts)| (p, sizer.count_tokens(&texts), sizer.parameters()))
                .collect::<Vec<_>>()
        })
        .await;
        for (peer, tokens, params) in counted.unwrap_or_default() {
            credits.embedding_verified(peer, &model.to_string(), params, tokens);
        }
    }
}
