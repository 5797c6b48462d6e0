//! Verified embedding work earns credit (spec/credits.md, "Verified inference work"): the
//! requester sizes a confirmed part itself, its tokens counted with the model's tokenizer and
//! the parameter count read from the model's safetensors header (both files fetched from the
//! mesh and checked against the manifest, as the GGUF of a generation model is), and owes it to
//! the operator in its next receipt.

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;

use libp2p::PeerId;
use tracing::warn;
use warren_inference::embed::EmbedSizer;
use warren_protocol::ContentId;
use warren_protocol::inference::{self as wire, ModelFileEntry, ModelManifest};

use super::{Inference, lock};
use crate::error::NodeError;
use crate::storage::{Arrivals, FetchSession};

/// A reader's `Write` that keeps the first bytes of a safetensors file, up to the end of its
/// header, and then stops the read (an error), so that no more of the file is fetched.
#[derive(Default)]
struct HeaderPrefix {
    bytes: Vec<u8>,
    /// Where the header ends, once the first eight bytes are here (or why it is refused).
    end: Option<Result<u64, String>>,
}

impl std::io::Write for HeaderPrefix {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut used = 0;
        loop {
            let want = match &self.end {
                Some(Ok(end)) => *end,
                Some(Err(_)) => return Err(std::io::Error::other("a refused header")),
                None => 8,
            };
            let have = self.bytes.len() as u64;
            if have >= want {
                // The header is here: the read stops.
                return Err(std::io::Error::other("the header is read"));
            }
            let take = usize::try_from(want - have)
                .unwrap_or(usize::MAX)
                .min(buf.len() - used);
            self.bytes.extend_from_slice(&buf[used..used + take]);
            used += take;
            if self.end.is_none() && self.bytes.len() >= 8 {
                let mut first = [0u8; 8];
                first.copy_from_slice(&self.bytes[..8]);
                self.end = Some(warren_inference::embed::safetensors_header_end(first));
                continue;
            }
            return Ok(used);
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn bad_detail(what: &str, detail: String) -> NodeError {
    NodeError::Model {
        model: what.to_owned(),
        detail,
    }
}

/// Largest tokenizer file fetched to size embedding jobs (bytes).
const MAX_TOKENIZER: u64 = 64 << 20;
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
        let file = |role: &str| {
            manifest
                .file(role)
                .cloned()
                .ok_or_else(|| bad(format!("not an embedding model (no {role} file)")))
        };
        let (weights, tokenizer) = (file(wire::role::WEIGHTS)?, file(wire::role::TOKENIZER)?);
        // The weights only for their header (the parameter count): read from a local copy
        // when there is a good one, else from the first blocks of the file on the mesh, never
        // the whole file.
        let local = dir.join(&weights.name);
        let parameters = if self.local_copy_is_good(&local, &weights, served).await {
            let what = weights.name.clone();
            tokio::task::spawn_blocking(move || {
                warren_inference::embed::safetensors_parameters(&local)
                    .map_err(|e| bad_detail(&what, e.to_string()))
            })
            .await
            .map_err(|source| NodeError::Task {
                what: "embedding sizer",
                source,
            })??
        } else {
            self.safetensors_parameters_on_mesh(weights.content).await?
        };
        let path = dir.join(&tokenizer.name);
        if !self.local_copy_is_good(&path, &tokenizer, served).await {
            if tokenizer.size > MAX_TOKENIZER {
                return Err(bad(format!(
                    "its {} ({} bytes) is too large to fetch to size its jobs",
                    tokenizer.name, tokenizer.size
                )));
            }
            self.fetch_to(tokenizer.content, path.clone()).await?;
        }
        let name = model.to_string();
        let s = tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&path).map_err(|source| NodeError::Io { path, source })?;
            Ok::<_, NodeError>(EmbedSizer::new(&name, parameters, bytes)?)
        })
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

    /// Whether `path` holds `file` as the manifest names it. A model served here was checked
    /// against the manifest when it was loaded; any other copy is hashed again.
    async fn local_copy_is_good(&self, path: &Path, file: &ModelFileEntry, served: bool) -> bool {
        if !path.exists() {
            return false;
        }
        if served {
            return true;
        }
        let Ok(blake3) = <[u8; 32]>::try_from(file.blake3.as_slice()) else {
            return false;
        };
        let p = path.to_owned();
        tokio::task::spawn_blocking(move || {
            warren_inference::files::hash_file(&p).ok() == Some(blake3)
        })
        .await
        .unwrap_or(false)
    }

    /// The parameter count in the header of the safetensors file `cid` on the mesh: fetches its
    /// manifests and its blocks in file order and stops once the header is read (a few blocks
    /// of a file of gigabytes). Every block is verified against its id on the way, and the file
    /// id is the one the model's manifest names, so the header is the one the operators load.
    async fn safetensors_parameters_on_mesh(&self, cid: ContentId) -> Result<u64, NodeError> {
        let session = FetchSession::default();
        let missing = self.mesh.fetch_manifests(cid, &session).await?;
        let store = self.store.clone();
        let uses = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || store.chunk_uses(&cid))
                .await
                .map_err(|source| NodeError::Task {
                    what: "store",
                    source,
                })??
        };
        // Nothing fetched for the header is kept: the reader's copy is the only one.
        let arrivals = Arrivals::with_cache(
            missing
                .iter()
                .map(|c| (*c, uses.get(c).copied().unwrap_or(1))),
            false,
        );
        let (mesh, closer) = (self.mesh.clone(), arrivals.closer());
        let fetch = tokio::spawn(async move {
            let session = session;
            mesh.fetch_blocks(missing, &session, Some(closer.0.clone()))
                .for_each(|_| async {})
                .await;
            drop(closer);
        });
        let board = arrivals.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut header = HeaderPrefix::default();
            let ready = |c: &ContentId| board.wait(c);
            let result = store.get_when_ready(&cid, &mut header, &|_| {}, &ready);
            board.finished();
            (header, result)
        })
        .await;
        // The header is read: the rest of the file is not wanted.
        fetch.abort();
        let (header, result) = read.map_err(|source| NodeError::Task {
            what: "safetensors header",
            source,
        })?;
        let what = format!("safetensors file {cid}");
        match (header.end, result) {
            (Some(Ok(end)), _) if header.bytes.len() as u64 >= end => {
                warren_inference::embed::safetensors_parameters_from(&header.bytes[..], &what)
                    .map_err(NodeError::from)
            }
            (Some(Err(detail)), _) => Err(bad_detail(&what, detail)),
            (_, Err(e)) => Err(e.into()),
            (_, Ok(_)) => Err(bad_detail(&what, "the file ends inside its header".into())),
        }
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
