//! Inference on the mesh: models published as files, operators serving them, jobs on libp2p
//! streams, and the requester as its own aggregator.
//!
//! ```text
//!  API ──► Inference ──┬── serve(model):  mesh.fetch ─► files on disk ─► Executor::load_* ─► DHT provide
//!                      ├── run_inbound:   /warren/inference/1.0.0 streams ─► Executor (blocking pool)
//!                      └── embed/generate: DHT providers ─► plan (rank, split, sample) ─► streams
//!                                          ─► compare ─► arbitrate ─► redo + observation
//! ```
//!
//! The wire format is `warren_protocol::inference` (spec/inference-jobs.md); ranking, splitting,
//! sampling and arbitration are `warren_inference::plan`; this module only moves bytes between
//! them, the executor, the store and the network.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, watch};
use tracing::{debug, info, warn};
use warren_inference::digest::{Verdict, compare_embeddings};
use warren_inference::embed::EmbedFiles;
use warren_inference::plan::{self, Candidate, Fault, Strategy};
use warren_inference::{Backend, Executor, GenerateParams, ModelFile};
use warren_protocol::inference::{
    self as wire, EmbedRequest, EmbedResult, GenerateRequest, GenerateResult, JobFailure,
    ModelFileEntry, ModelManifest, TokenChunk,
};
use warren_protocol::observation::Kind;
use warren_protocol::{ContentId, Envelope, Keypair, State};
use warren_storage_mesh::{PutOptions, Store};

use crate::config::FaultInject;
use crate::error::NodeError;
use crate::mesh::Mesh;
use crate::network::Client;

/// The job stream protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new(wire::PROTOCOL_NAME);
/// Inbound job streams handled at once (each waits for an executor slot or is refused).
const MAX_INBOUND_STREAMS: usize = 16;
/// Time a peer has to send its request after opening a stream.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a remote job may take before the requester gives up on it.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(300);
/// Jobs remembered for `warren jobs`.
const JOB_LOG: usize = 256;
/// Texts sent to one operator in one job (also bounded by the wire limit).
const MAX_PART: usize = 64;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A model this node serves.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelView {
    /// Its id (the manifest's content id).
    pub model: String,
    /// Its name.
    pub name: String,
    /// `embed` or `generate`.
    pub kind: String,
    /// `bert` or `llama`.
    pub architecture: String,
    /// Total bytes of its files.
    pub bytes: u64,
}

/// One job this node ran or requested, for `warren jobs`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobView {
    /// Random id.
    pub id: String,
    /// `embed` or `generate`.
    pub kind: String,
    /// `served` (ran here for a peer), `local` (ran here for this node's user) or `remote`.
    pub role: String,
    /// The model.
    pub model: String,
    /// The other peer (requester or operator), if any.
    pub peer: Option<String>,
    /// Texts or tokens.
    pub items: usize,
    /// `completed`, `failed: …`, `mismatch`, `refused: busy`, …
    pub outcome: String,
    /// Wall time in milliseconds.
    pub ms: u64,
    /// When it ended, Unix milliseconds.
    pub at_ms: u64,
}

/// What the requester measured about an operator.
#[derive(Clone, Copy, Debug, Default)]
struct Measured {
    throughput: Option<f64>,
    latency_ms: Option<u32>,
}

/// One operator's part of an embedding job, as reported to the user.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartView {
    /// The operator that computed the part in the end.
    pub peer: String,
    /// First item index.
    pub start: usize,
    /// One past the last item index.
    pub end: usize,
    /// Operators whose results for this part were discarded.
    pub discarded: Vec<String>,
}

/// One sample re-run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckView {
    /// Whose results were checked.
    pub original: String,
    /// Who re-ran them.
    pub verifier: String,
    /// Items re-run.
    pub items: Vec<usize>,
    /// `match`, `mismatch`, `incomparable` or `failed: …`.
    pub verdict: String,
    /// The peer found at fault, if any.
    pub fault: Option<String>,
}

/// The answer to a distributed embedding job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EmbedOutcome {
    /// One vector per input text.
    pub vectors: Vec<Vec<f32>>,
    /// Where each part ran.
    pub parts: Vec<PartView>,
    /// The sample re-runs.
    pub checks: Vec<CheckView>,
    /// Operators caught returning wrong results (each named in a signed observation).
    pub faulty: Vec<String>,
    /// Backend of the vectors' operators.
    pub backend: String,
}

/// Inference state of a node.
pub struct Inference {
    me: PeerId,
    executor: Arc<Executor>,
    served: Mutex<BTreeMap<ContentId, ModelManifest>>,
    models_dir: PathBuf,
    fault: FaultInject,
    control: Mutex<libp2p_stream::Control>,
    client: Client,
    store: Arc<Store>,
    mesh: Arc<Mesh>,
    measured: Mutex<HashMap<PeerId, Measured>>,
    jobs: Mutex<VecDeque<JobView>>,
}

impl std::fmt::Debug for Inference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inference").field("me", &self.me).finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn job_id() -> [u8; 16] {
    rand::random()
}

async fn read_frame(io: &mut Stream) -> Result<Option<Envelope>, String> {
    let mut header = [0u8; 4];
    match io.read_exact(&mut header).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let len = wire::frame_len(header).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    Envelope::decode(&buf).map(Some).map_err(|e| e.to_string())
}

async fn write_frame(io: &mut Stream, envelope: &Envelope) -> Result<(), String> {
    let bytes = envelope
        .encode()
        .and_then(|b| wire::frame(&b))
        .map_err(|e| e.to_string())?;
    io.write_all(&bytes).await.map_err(|e| e.to_string())?;
    io.flush().await.map_err(|e| e.to_string())
}

fn failure(code: &str, reason: String) -> Vec<u8> {
    let mut reason = reason;
    reason.truncate(wire::MAX_REASON_BYTES);
    while std::str::from_utf8(reason.as_bytes()).is_err() {
        reason.pop();
    }
    JobFailure {
        code: code.to_string(),
        reason,
    }
    .encode()
    .unwrap_or_default()
}

fn failure_code(e: &warren_inference::Error) -> &'static str {
    match e {
        warren_inference::Error::Busy { .. } => "busy",
        warren_inference::Error::OverLimit { .. } => "limit",
        warren_inference::Error::Load { .. } => "unknown-model",
        _ => "error",
    }
}

impl Inference {
    /// Inference state over the node's executor, store, mesh and network.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: Keypair,
        executor: Arc<Executor>,
        models_dir: PathBuf,
        fault: FaultInject,
        control: libp2p_stream::Control,
        client: Client,
        store: Arc<Store>,
        mesh: Arc<Mesh>,
    ) -> Arc<Self> {
        Arc::new(Self {
            me: key.public().to_peer_id(),
            executor,
            served: Mutex::new(BTreeMap::new()),
            models_dir,
            fault,
            control: Mutex::new(control),
            client,
            store,
            mesh,
            measured: Mutex::new(HashMap::new()),
            jobs: Mutex::new(VecDeque::new()),
        })
    }

    fn log(&self, job: JobView) {
        let mut jobs = lock(&self.jobs);
        if jobs.len() == JOB_LOG {
            jobs.pop_front();
        }
        jobs.push_back(job);
    }

    /// Recent jobs, newest last.
    pub fn jobs(&self) -> Vec<JobView> {
        lock(&self.jobs).iter().cloned().collect()
    }

    /// Models this node serves.
    pub fn models(&self) -> Vec<ModelView> {
        lock(&self.served)
            .iter()
            .map(|(id, m)| view(id, m))
            .collect()
    }

    /// Resolves `NAME|CID` to a model id: a CID as is, a name among the models served or added
    /// here.
    pub fn resolve(&self, model: &str) -> Result<ContentId, NodeError> {
        if let Ok(cid) = model.parse::<ContentId>() {
            return Ok(cid);
        }
        lock(&self.served)
            .iter()
            .find(|(_, m)| m.name == model)
            .map(|(id, _)| *id)
            .or_else(|| self.added_names().get(model).copied())
            .ok_or_else(|| NodeError::Model {
                model: model.to_string(),
                detail: "not a model id, nor the name of a model served or added here".into(),
            })
    }

    fn names_file(&self) -> PathBuf {
        self.models_dir.join("names.json")
    }

    fn added_names(&self) -> BTreeMap<String, ContentId> {
        std::fs::read(self.names_file())
            .ok()
            .and_then(|b| serde_json::from_slice::<BTreeMap<String, String>>(&b).ok())
            .map(|m| {
                m.into_iter()
                    .filter_map(|(k, v)| v.parse().ok().map(|c| (k, c)))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn put_file(&self, path: PathBuf, name: Option<String>) -> Result<ContentId, NodeError> {
        let store = self.store.clone();
        let cid = tokio::task::spawn_blocking(move || -> Result<ContentId, NodeError> {
            let file = std::fs::File::open(&path).map_err(|source| NodeError::Io {
                path: path.clone(),
                source,
            })?;
            let opts = PutOptions {
                name,
                media_type: None,
                pin: true,
            };
            Ok(store
                .put(std::io::BufReader::new(file), &opts, &|_| {})?
                .cid)
        })
        .await
        .map_err(|e| NodeError::Network(format!("store task: {e}")))??;
        self.mesh.announce(cid).await?;
        Ok(cid)
    }

    /// `warren model add`: puts each file on the mesh, then a manifest naming them; returns the
    /// manifest's id, which is the model's id.
    pub async fn add(&self, name: &str, paths: &[PathBuf]) -> Result<ModelView, NodeError> {
        let bad = |detail: String| NodeError::Model {
            model: name.to_string(),
            detail,
        };
        let mut files = Vec::new();
        for path in paths {
            let file_name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| bad(format!("{} has no file name", path.display())))?
                .to_string();
            let role = match file_name.as_str() {
                n if n.ends_with(".gguf") => wire::role::GGUF,
                n if n.ends_with(".safetensors") => wire::role::WEIGHTS,
                "tokenizer.json" => wire::role::TOKENIZER,
                "config.json" => wire::role::CONFIG,
                other => return Err(bad(format!("{other}: not a model file this node knows"))),
            };
            let p = path.clone();
            let (blake3, size) = tokio::task::spawn_blocking(move || {
                warren_inference::files::hash_file(&p).map(|h| {
                    let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                    (h, size)
                })
            })
            .await
            .map_err(|e| NodeError::Network(format!("hash task: {e}")))??;
            let content = self.put_file(path.clone(), Some(file_name.clone())).await?;
            files.push(ModelFileEntry {
                role: role.to_string(),
                name: file_name,
                size,
                blake3: blake3.to_vec(),
                content,
            });
        }
        let (kind, architecture) = if files.iter().any(|f| f.role == wire::role::GGUF) {
            ("generate", "llama")
        } else {
            ("embed", "bert")
        };
        let manifest = ModelManifest {
            version: wire::MODEL_MANIFEST_VERSION,
            name: name.to_string(),
            kind: kind.to_string(),
            architecture: architecture.to_string(),
            files,
        };
        check_complete(&manifest).map_err(bad)?;
        let bytes = manifest.encode()?;
        std::fs::create_dir_all(&self.models_dir).map_err(|source| NodeError::Io {
            path: self.models_dir.clone(),
            source,
        })?;
        let manifest_path = self.models_dir.join(format!("{name}.manifest"));
        std::fs::write(&manifest_path, &bytes).map_err(|source| NodeError::Io {
            path: manifest_path.clone(),
            source,
        })?;
        let id = self
            .put_file(manifest_path, Some(format!("{name}.warren-model")))
            .await?;
        let mut names: BTreeMap<String, String> = self
            .added_names()
            .into_iter()
            .map(|(k, v)| (k, v.to_string()))
            .collect();
        names.insert(name.to_string(), id.to_string());
        let json = serde_json::to_vec_pretty(&names).unwrap_or_default();
        std::fs::write(self.names_file(), json).map_err(|source| NodeError::Io {
            path: self.names_file(),
            source,
        })?;
        info!(model = %id, name, "model added to the mesh");
        Ok(view(&id, &manifest))
    }

    async fn fetch_to(&self, cid: ContentId, path: PathBuf) -> Result<(), NodeError> {
        self.mesh.fetch(cid).await?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || -> Result<(), NodeError> {
            let tmp = path.with_extension("part");
            let file = std::fs::File::create(&tmp).map_err(|source| NodeError::Io {
                path: tmp.clone(),
                source,
            })?;
            let mut w = std::io::BufWriter::new(file);
            store.get(&cid, &mut w, &|_| {})?;
            std::io::Write::flush(&mut w).map_err(|source| NodeError::Io {
                path: tmp.clone(),
                source,
            })?;
            std::fs::rename(&tmp, &path).map_err(|source| NodeError::Io { path, source })
        })
        .await
        .map_err(|e| NodeError::Network(format!("fetch task: {e}")))?
    }

    /// `warren model serve`: fetches the manifest and files from the mesh, checks each file
    /// against the manifest's hash, loads the model and announces this node as its operator.
    pub async fn serve(&self, model: &str) -> Result<ModelView, NodeError> {
        let id = self.resolve(model)?;
        let dir = self.models_dir.join(id.to_string());
        std::fs::create_dir_all(&dir).map_err(|source| NodeError::Io {
            path: dir.clone(),
            source,
        })?;
        let manifest_path = dir.join("manifest.cbor");
        self.fetch_to(id, manifest_path.clone()).await?;
        let bytes = std::fs::read(&manifest_path).map_err(|source| NodeError::Io {
            path: manifest_path,
            source,
        })?;
        let manifest = ModelManifest::decode(&bytes)?;
        check_complete(&manifest).map_err(|detail| NodeError::Model {
            model: id.to_string(),
            detail,
        })?;
        let mut local = HashMap::new();
        for f in &manifest.files {
            let path = dir.join(&f.name);
            let blake3: [u8; 32] = f.blake3.as_slice().try_into().unwrap_or([0; 32]);
            let have = ModelFile::checked(&path, blake3);
            let fresh = path.exists()
                && tokio::task::spawn_blocking({
                    let p = path.clone();
                    move || warren_inference::files::hash_file(&p).ok() == Some(blake3)
                })
                .await
                .unwrap_or(false);
            if !fresh {
                self.fetch_to(f.content, path.clone()).await?;
            }
            local.insert(f.role.clone(), have);
        }
        let executor = self.executor.clone();
        let key = id.to_string();
        let kind = manifest.kind.clone();
        tokio::task::spawn_blocking(move || -> Result<(), warren_inference::Error> {
            let get = |role: &str| local.get(role).cloned();
            match kind.as_str() {
                "generate" => match get(wire::role::GGUF) {
                    Some(f) => executor.load_generator(&key, &f),
                    None => Err(warren_inference::Error::Load {
                        model: key.clone(),
                        detail: "no gguf file".into(),
                    }),
                },
                _ => match (
                    get(wire::role::WEIGHTS),
                    get(wire::role::TOKENIZER),
                    get(wire::role::CONFIG),
                ) {
                    (Some(weights), Some(tokenizer), Some(config)) => executor.load_embedder(
                        &key,
                        &EmbedFiles {
                            weights,
                            tokenizer,
                            config,
                        },
                    ),
                    _ => Err(warren_inference::Error::Load {
                        model: key.clone(),
                        detail: "weights, tokenizer and config needed".into(),
                    }),
                },
            }
        })
        .await
        .map_err(|e| NodeError::Network(format!("load task: {e}")))??;
        self.client.provide(vec![id]).await?;
        lock(&self.served).insert(id, manifest.clone());
        info!(model = %id, name = %manifest.name, "serving model");
        Ok(view(&id, &manifest))
    }

    /// Accepts job streams until shutdown.
    pub async fn run_inbound(
        self: Arc<Self>,
        mut incoming: libp2p_stream::IncomingStreams,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let limit = Arc::new(Semaphore::new(MAX_INBOUND_STREAMS));
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                next = incoming.next() => {
                    let Some((peer, stream)) = next else { return };
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        debug!(%peer, "job stream dropped: too many open");
                        continue;
                    };
                    let this = self.clone();
                    tokio::spawn(async move {
                        this.handle_stream(peer, stream).await;
                        drop(permit);
                    });
                }
            }
        }
    }

    async fn handle_stream(&self, peer: PeerId, mut stream: Stream) {
        let request = match tokio::time::timeout(REQUEST_TIMEOUT, read_frame(&mut stream)).await {
            Ok(Ok(Some(e))) => e,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                debug!(%peer, "bad job request: {e}");
                return;
            }
            Err(_) => {
                debug!(%peer, "job request timed out");
                return;
            }
        };
        let started = Instant::now();
        let e = &request.event;
        let reply = |state: State, payload: Vec<u8>| request.reply(state, now_ms(), payload);
        if e.service != "inference" || e.version != 1 || e.state != State::Requested {
            let _ = write_frame(
                &mut stream,
                &reply(
                    State::Failed,
                    failure("bad-request", format!("{e}: not an inference request")),
                ),
            )
            .await;
            return;
        }
        let (kind, model, items, outcome) = match e.action.as_str() {
            "embed" => self.serve_embed(&request, &mut stream).await,
            "generate" => self.serve_generate(&request, &mut stream).await,
            other => {
                let _ = write_frame(
                    &mut stream,
                    &reply(
                        State::Failed,
                        failure("bad-request", format!("no job kind {other}")),
                    ),
                )
                .await;
                return;
            }
        };
        let _ = stream.close().await;
        self.log(JobView {
            id: hex::encode(request.id),
            kind: kind.to_string(),
            role: "served".into(),
            model,
            peer: Some(peer.to_string()),
            items,
            outcome,
            ms: started.elapsed().as_millis() as u64,
            at_ms: now_ms(),
        });
    }

    async fn serve_embed(
        &self,
        request: &Envelope,
        stream: &mut Stream,
    ) -> (&'static str, String, usize, String) {
        let fail = |code: &str, reason: String| {
            request.reply(State::Failed, now_ms(), failure(code, reason))
        };
        let req = match EmbedRequest::decode(&request.payload) {
            Ok(r) => r,
            Err(e) => {
                let _ = write_frame(stream, &fail("bad-request", e.to_string())).await;
                return ("embed", String::new(), 0, format!("bad request: {e}"));
            }
        };
        let model = req.model.to_string();
        let n = req.texts.len();
        let executor = self.executor.clone();
        let job = hex::encode(request.id);
        let key = model.clone();
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let slot = executor.try_slot()?;
            executor.embed(&slot, &job, &key, &req.texts)
        })
        .await;
        let out = match result {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                let _ = write_frame(stream, &fail(failure_code(&e), e.to_string())).await;
                return ("embed", model, n, format!("failed: {e}"));
            }
            Err(e) => {
                let _ = write_frame(stream, &fail("error", e.to_string())).await;
                return ("embed", model, n, format!("failed: {e}"));
            }
        };
        let mut vectors = out.vectors;
        if self.fault == FaultInject::PerturbInference {
            for v in &mut vectors {
                if let Some(x) = v.first_mut() {
                    *x += 0.05;
                }
            }
        }
        let dim = vectors.first().map(|v| v.len()).unwrap_or(1) as u32;
        let result = EmbedResult {
            dim,
            vectors: EmbedResult::pack(&vectors),
            backend: out.backend.as_str().to_string(),
            compute_ms: started.elapsed().as_millis() as u32,
        };
        let reply = match result.encode() {
            Ok(bytes) => request.reply(State::Completed, now_ms(), bytes),
            Err(e) => fail("limit", e.to_string()),
        };
        match write_frame(stream, &reply).await {
            Ok(()) => ("embed", model, n, "completed".into()),
            Err(e) => ("embed", model, n, format!("failed: {e}")),
        }
    }

    async fn serve_generate(
        &self,
        request: &Envelope,
        stream: &mut Stream,
    ) -> (&'static str, String, usize, String) {
        let fail = |code: &str, reason: String| {
            request.reply(State::Failed, now_ms(), failure(code, reason))
        };
        let req = match GenerateRequest::decode(&request.payload) {
            Ok(r) => r,
            Err(e) => {
                let _ = write_frame(stream, &fail("bad-request", e.to_string())).await;
                return ("generate", String::new(), 0, format!("bad request: {e}"));
            }
        };
        let model = req.model.to_string();
        let (tx, mut rx) = mpsc::channel::<String>(64);
        let cancelled = Arc::new(AtomicBool::new(false));
        let executor = self.executor.clone();
        let job = hex::encode(request.id);
        let key = model.clone();
        let model_bytes = req.model.to_bytes();
        let params = GenerateParams {
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            seed: req.seed,
        };
        let flag = cancelled.clone();
        let started = Instant::now();
        let task = tokio::task::spawn_blocking(move || {
            let slot = executor.try_slot()?;
            executor.generate(
                &slot,
                &job,
                &key,
                &model_bytes,
                &req.prompt,
                &params,
                |piece| {
                    !flag.load(Ordering::Acquire) && tx.blocking_send(piece.to_string()).is_ok()
                },
            )
        });
        let processing = match wire::event("generate", State::Processing) {
            Ok(e) => e,
            Err(_) => return ("generate", model, 0, "failed: event type".into()),
        };
        let mut index = 0u32;
        while let Some(text) = rx.recv().await {
            let chunk = TokenChunk { index, text };
            index += 1;
            let Ok(payload) = chunk.encode() else {
                continue;
            };
            let mut env = request.reply(State::Processing, now_ms(), payload);
            env.event = processing.clone();
            if write_frame(stream, &env).await.is_err() {
                cancelled.store(true, Ordering::Release);
                break;
            }
        }
        let out = match task.await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                let _ = write_frame(stream, &fail(failure_code(&e), e.to_string())).await;
                return ("generate", model, 0, format!("failed: {e}"));
            }
            Err(e) => return ("generate", model, 0, format!("failed: {e}")),
        };
        if cancelled.load(Ordering::Acquire) {
            return (
                "generate",
                model,
                out.generation.tokens.len(),
                "cancelled".into(),
            );
        }
        let mut tokens = out.generation.tokens;
        let mut digest = out.digest;
        if self.fault == FaultInject::PerturbInference
            && let Some(last) = tokens.last_mut()
        {
            *last = last.wrapping_add(1);
            digest[0] ^= 1;
        }
        let n = tokens.len();
        let result = GenerateResult {
            tokens,
            text: out.generation.text,
            backend: out.backend.as_str().to_string(),
            digest: digest.to_vec(),
            compute_ms: started.elapsed().as_millis() as u32,
        };
        let reply = match result.encode() {
            Ok(bytes) => request.reply(State::Completed, now_ms(), bytes),
            Err(e) => fail("limit", e.to_string()),
        };
        match write_frame(stream, &reply).await {
            Ok(()) => ("generate", model, n, "completed".into()),
            Err(e) => ("generate", model, n, format!("failed: {e}")),
        }
    }

    async fn open(&self, peer: PeerId) -> Result<Stream, NodeError> {
        let mut control = lock(&self.control).clone();
        control
            .open_stream(peer, PROTOCOL)
            .await
            .map_err(|e| NodeError::Job {
                peer,
                detail: format!("cannot open a job stream: {e}"),
            })
    }

    /// Runs one embedding job on `peer`.
    pub async fn embed_remote(
        &self,
        peer: PeerId,
        model: ContentId,
        texts: Vec<String>,
    ) -> Result<(Vec<Vec<f32>>, Backend), NodeError> {
        let job = |detail: String| NodeError::Job { peer, detail };
        let started = Instant::now();
        let n = texts.len();
        let id = job_id();
        let run = async {
            let mut stream = self.open(peer).await?;
            let payload = EmbedRequest { model, texts }.encode()?;
            let request = Envelope::new(
                id,
                wire::event("embed", State::Requested)?,
                now_ms(),
                payload,
            );
            write_frame(&mut stream, &request).await.map_err(job)?;
            loop {
                let Some(env) = read_frame(&mut stream).await.map_err(job)? else {
                    return Err(job("stream ended before a result".into()));
                };
                if env.id != id {
                    return Err(job("reply with another job id".into()));
                }
                match env.event.state {
                    State::Completed => {
                        let r = EmbedResult::decode(&env.payload)?;
                        let backend = Backend::parse(&r.backend).unwrap_or(Backend::Cpu);
                        let vectors = r.unpack();
                        if vectors.len() != n {
                            return Err(job(format!("{} vectors for {n} texts", vectors.len())));
                        }
                        return Ok((vectors, backend));
                    }
                    State::Failed => {
                        let f = JobFailure::decode(&env.payload)?;
                        return Err(job(format!("{}: {}", f.code, f.reason)));
                    }
                    _ => continue,
                }
            }
        };
        let out = tokio::time::timeout(JOB_TIMEOUT, run)
            .await
            .map_err(|_| job("timed out".into()))?;
        let ms = started.elapsed().as_millis() as u64;
        if out.is_ok() {
            let mut m = lock(&self.measured);
            let e = m.entry(peer).or_default();
            let tput = n as f64 / (ms.max(1) as f64 / 1000.0);
            e.throughput = Some(match e.throughput {
                Some(old) => 0.7 * old + 0.3 * tput,
                None => tput,
            });
        }
        self.log(JobView {
            id: hex::encode(id),
            kind: "embed".into(),
            role: "remote".into(),
            model: model.to_string(),
            peer: Some(peer.to_string()),
            items: n,
            outcome: match &out {
                Ok(_) => "completed".into(),
                Err(e) => format!("failed: {e}"),
            },
            ms,
            at_ms: now_ms(),
        });
        out
    }

    /// Runs one generation job on `peer`, sending each text chunk to `chunks` as it arrives.
    pub async fn generate_remote(
        &self,
        peer: PeerId,
        request: GenerateRequest,
        chunks: mpsc::Sender<String>,
    ) -> Result<GenerateResult, NodeError> {
        let job = |detail: String| NodeError::Job { peer, detail };
        let id = job_id();
        let started = Instant::now();
        let model = request.model;
        let run = async {
            let mut stream = self.open(peer).await?;
            let envelope = Envelope::new(
                id,
                wire::event("generate", State::Requested)?,
                now_ms(),
                request.encode()?,
            );
            write_frame(&mut stream, &envelope).await.map_err(job)?;
            loop {
                let Some(env) = read_frame(&mut stream).await.map_err(job)? else {
                    return Err(job("stream ended before a result".into()));
                };
                if env.id != id {
                    return Err(job("reply with another job id".into()));
                }
                match env.event.state {
                    State::Processing => {
                        let c = TokenChunk::decode(&env.payload)?;
                        if chunks.send(c.text).await.is_err() {
                            // The user went away: closing the stream cancels the job.
                            let _ = stream.close().await;
                            return Err(job("cancelled".into()));
                        }
                    }
                    State::Completed => return Ok(GenerateResult::decode(&env.payload)?),
                    State::Failed => {
                        let f = JobFailure::decode(&env.payload)?;
                        return Err(job(format!("{}: {}", f.code, f.reason)));
                    }
                    State::Requested => return Err(job("operator sent a request".into())),
                }
            }
        };
        let out = tokio::time::timeout(JOB_TIMEOUT, run)
            .await
            .map_err(|_| job("timed out".into()))?;
        let ms = started.elapsed().as_millis() as u64;
        if let Ok(r) = &out {
            let mut m = lock(&self.measured);
            let e = m.entry(peer).or_default();
            e.throughput = Some(r.tokens.len() as f64 / (ms.max(1) as f64 / 1000.0));
        }
        self.log(JobView {
            id: hex::encode(id),
            kind: "generate".into(),
            role: "remote".into(),
            model: model.to_string(),
            peer: Some(peer.to_string()),
            items: out.as_ref().map(|r| r.tokens.len()).unwrap_or(0),
            outcome: match &out {
                Ok(_) => "completed".into(),
                Err(e) => format!("failed: {e}"),
            },
            ms,
            at_ms: now_ms(),
        });
        out
    }

    /// Runs a generation job on this node's own executor.
    pub async fn generate_local(
        &self,
        request: GenerateRequest,
        chunks: mpsc::Sender<String>,
    ) -> Result<GenerateResult, NodeError> {
        let executor = self.executor.clone();
        let started = Instant::now();
        let id = job_id();
        let model = request.model;
        let out = tokio::task::spawn_blocking(move || {
            let slot = executor.try_slot()?;
            executor.generate(
                &slot,
                &hex::encode(id),
                &request.model.to_string(),
                &request.model.to_bytes(),
                &request.prompt,
                &GenerateParams {
                    max_tokens: request.max_tokens,
                    temperature: request.temperature,
                    seed: request.seed,
                },
                |piece| chunks.blocking_send(piece.to_string()).is_ok(),
            )
        })
        .await
        .map_err(|e| NodeError::Network(format!("job task: {e}")))??;
        self.log(JobView {
            id: hex::encode(id),
            kind: "generate".into(),
            role: "local".into(),
            model: model.to_string(),
            peer: None,
            items: out.generation.tokens.len(),
            outcome: "completed".into(),
            ms: started.elapsed().as_millis() as u64,
            at_ms: now_ms(),
        });
        Ok(GenerateResult {
            tokens: out.generation.tokens,
            text: out.generation.text,
            backend: out.backend.as_str().to_string(),
            digest: out.digest.to_vec(),
            compute_ms: started.elapsed().as_millis() as u32,
        })
    }

    /// Runs an embedding job on this node's own executor.
    pub async fn embed_local(
        &self,
        model: ContentId,
        texts: Vec<String>,
    ) -> Result<(Vec<Vec<f32>>, Backend), NodeError> {
        let executor = self.executor.clone();
        let started = Instant::now();
        let id = job_id();
        let n = texts.len();
        let out = tokio::task::spawn_blocking(move || {
            let slot = executor.try_slot()?;
            executor.embed(&slot, &hex::encode(id), &model.to_string(), &texts)
        })
        .await
        .map_err(|e| NodeError::Network(format!("job task: {e}")))??;
        self.log(JobView {
            id: hex::encode(id),
            kind: "embed".into(),
            role: "local".into(),
            model: model.to_string(),
            peer: None,
            items: n,
            outcome: "completed".into(),
            ms: started.elapsed().as_millis() as u64,
            at_ms: now_ms(),
        });
        Ok((out.vectors, out.backend))
    }

    /// The operators of `model` found in the DHT (this node excluded), as ranking candidates.
    pub async fn candidates(&self, model: ContentId) -> Result<Vec<Candidate<PeerId>>, NodeError> {
        let mut peers = self.client.providers(model).await?;
        peers.retain(|p| *p != self.me);
        peers.sort();
        peers.dedup();
        let now = now_ms();
        let rep = self.mesh.reputation().lock().ok();
        let measured = lock(&self.measured);
        Ok(peers
            .into_iter()
            .map(|peer| {
                let m = measured.get(&peer).copied().unwrap_or_default();
                Candidate {
                    peer,
                    price: 0,
                    latency_ms: m.latency_ms,
                    throughput: m.throughput,
                    reputation: rep
                        .as_ref()
                        .and_then(|r| r.score(&peer, now))
                        .map(|s| s.total),
                    busy: false,
                }
            })
            .collect())
    }

    /// Routes a generation job: the best operator by `strategy`, or this node when it serves the
    /// model and `local` is asked for.
    pub async fn generate(
        &self,
        request: GenerateRequest,
        strategy: Strategy,
        local: bool,
        chunks: mpsc::Sender<String>,
    ) -> Result<(Option<PeerId>, GenerateResult), NodeError> {
        if local {
            return Ok((None, self.generate_local(request, chunks).await?));
        }
        if strategy == Strategy::Private {
            route_through_circuit()?;
        }
        let ranked = plan::rank(&self.candidates(request.model).await?, strategy);
        let mut last = None;
        for c in ranked {
            match self
                .generate_remote(c.peer, request.clone(), chunks.clone())
                .await
            {
                Ok(r) => return Ok((Some(c.peer), r)),
                Err(e) => {
                    warn!(peer = %c.peer, "generation job failed, trying the next operator: {e}");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| NodeError::Model {
            model: request.model.to_string(),
            detail: "no operator serves it".into(),
        }))
    }

    /// A distributed embedding job: splits `texts` across up to `max_operators` operators ranked
    /// by `strategy`, re-runs a `sample` fraction of each part on a different operator, and on a
    /// mismatch asks a third party (another operator, or this node when it serves the model) who
    /// is right; the wrong operator's part is redone elsewhere and a signed observation names it.
    pub async fn embed(
        &self,
        model: ContentId,
        texts: Vec<String>,
        strategy: Strategy,
        max_operators: usize,
        sample: f64,
    ) -> Result<EmbedOutcome, NodeError> {
        if strategy == Strategy::Private {
            route_through_circuit()?;
        }
        let candidates = self.candidates(model).await?;
        if candidates.is_empty() {
            return Err(NodeError::Model {
                model: model.to_string(),
                detail: "no operator serves it".into(),
            });
        }
        let ranked = plan::rank(&candidates, strategy);
        let max_ops = max_operators.max(texts.len().div_ceil(MAX_PART)).max(1);
        let plan = plan::plan(
            texts.len(),
            &candidates,
            strategy,
            max_ops,
            sample,
            rand::random(),
        );
        // Run every part; a part whose operator fails goes to the next operator in rank order.
        let mut results: Vec<Option<(PeerId, Vec<Vec<f32>>, Backend)>> = Vec::new();
        let runs = plan.parts.iter().map(|part| {
            let texts = texts[part.range.clone()].to_vec();
            let ranked = &ranked;
            async move {
                let mut order = vec![part.peer];
                order.extend(ranked.iter().map(|c| c.peer).filter(|p| *p != part.peer));
                for peer in order {
                    match self.embed_remote(peer, model, texts.clone()).await {
                        Ok((v, b)) => return Some((peer, v, b)),
                        Err(e) => warn!(%peer, "embedding part failed: {e}"),
                    }
                }
                None
            }
        });
        results.extend(futures::future::join_all(runs).await);
        let mut parts: Vec<PartView> = Vec::new();
        let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        let mut backend = Backend::Cpu;
        for (part, r) in plan.parts.iter().zip(&results) {
            let Some((peer, v, b)) = r else {
                return Err(NodeError::Model {
                    model: model.to_string(),
                    detail: format!(
                        "items {}..{}: every operator failed",
                        part.range.start, part.range.end
                    ),
                });
            };
            backend = *b;
            for (i, x) in part.range.clone().zip(v) {
                vectors[i] = x.clone();
            }
            parts.push(PartView {
                peer: peer.to_string(),
                start: part.range.start,
                end: part.range.end,
                discarded: Vec::new(),
            });
        }
        // Sample checks, against whoever actually computed each part.
        let mut checks = Vec::new();
        let mut faulty: Vec<PeerId> = Vec::new();
        for check in &plan.checks {
            let Some(pi) = plan.parts.iter().position(|p| p.peer == check.original) else {
                continue;
            };
            let Some((original, _, obackend)) = results[pi].clone() else {
                continue;
            };
            let verifier = if check.verifier == original {
                match ranked.iter().find(|c| c.peer != original) {
                    Some(c) => c.peer,
                    None => continue,
                }
            } else {
                check.verifier
            };
            let sample_texts: Vec<String> = check.items.iter().map(|&i| texts[i].clone()).collect();
            let theirs: Vec<Vec<f32>> = check.items.iter().map(|&i| vectors[i].clone()).collect();
            let mut view = CheckView {
                original: original.to_string(),
                verifier: verifier.to_string(),
                items: check.items.clone(),
                verdict: String::new(),
                fault: None,
            };
            let (again, vbackend) = match self
                .embed_remote(verifier, model, sample_texts.clone())
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    view.verdict = format!("failed: {e}");
                    checks.push(view);
                    continue;
                }
            };
            match compare_embeddings(obackend, &theirs, vbackend, &again) {
                Verdict::Match => {
                    view.verdict = "match".into();
                    self.observe(original, Kind::InferenceMatched, &model).await;
                }
                Verdict::Incomparable => view.verdict = "incomparable".into(),
                Verdict::Mismatch { .. } => {
                    view.verdict = "mismatch".into();
                    let fault = self
                        .arbitrate(
                            model,
                            &sample_texts,
                            &ranked,
                            original,
                            verifier,
                            (&theirs, obackend),
                            (&again, vbackend),
                        )
                        .await;
                    let culprit = match fault {
                        Fault::Original => Some(original),
                        Fault::Verifier => Some(verifier),
                        Fault::Undecided => None,
                    };
                    if let Some(bad) = culprit {
                        view.fault = Some(bad.to_string());
                        self.observe(bad, Kind::InferenceMismatched, &model).await;
                        if !faulty.contains(&bad) {
                            faulty.push(bad);
                        }
                    }
                }
            }
            checks.push(view);
        }
        // Every part computed by a faulty operator is discarded and redone by an honest one.
        if !faulty.is_empty() {
            let honest: Vec<PeerId> = ranked
                .iter()
                .map(|c| c.peer)
                .filter(|p| !faulty.contains(p))
                .collect();
            for part in &mut parts {
                let computed_by: PeerId = match part.peer.parse() {
                    Ok(p) => p,
                    Err(_) => continue,
                };
                if !faulty.contains(&computed_by) {
                    continue;
                }
                let range = part.start..part.end;
                let mut redone = None;
                for peer in &honest {
                    if let Ok((v, _)) = self
                        .embed_remote(*peer, model, texts[range.clone()].to_vec())
                        .await
                    {
                        redone = Some((*peer, v));
                        break;
                    }
                }
                let Some((peer, v)) = redone else {
                    return Err(NodeError::Model {
                        model: model.to_string(),
                        detail: format!(
                            "items {}..{}: computed by a faulty operator and no honest one could redo them",
                            range.start, range.end
                        ),
                    });
                };
                for (i, x) in range.zip(v) {
                    vectors[i] = x;
                }
                part.discarded.push(part.peer.clone());
                part.peer = peer.to_string();
            }
        }
        Ok(EmbedOutcome {
            vectors,
            parts,
            checks,
            faulty: faulty.iter().map(|p| p.to_string()).collect(),
            backend: backend.as_str().to_string(),
        })
    }

    /// Asks a third party to re-run a disputed sample: another operator, else this node's own
    /// executor when it serves the model.
    #[allow(clippy::too_many_arguments)]
    async fn arbitrate(
        &self,
        model: ContentId,
        texts: &[String],
        ranked: &[Candidate<PeerId>],
        original: PeerId,
        verifier: PeerId,
        a: (&[Vec<f32>], Backend),
        b: (&[Vec<f32>], Backend),
    ) -> Fault {
        let mut third = None;
        for c in ranked
            .iter()
            .filter(|c| c.peer != original && c.peer != verifier)
        {
            if let Ok(r) = self.embed_remote(c.peer, model, texts.to_vec()).await {
                third = Some(r);
                break;
            }
        }
        if third.is_none() && lock(&self.served).contains_key(&model) {
            third = self.embed_local(model, texts.to_vec()).await.ok();
        }
        let Some((v, backend)) = third else {
            return Fault::Undecided;
        };
        plan::arbitrate(
            compare_embeddings(backend, &v, a.1, a.0) == Verdict::Match,
            compare_embeddings(backend, &v, b.1, b.0) == Verdict::Match,
        )
    }

    async fn observe(&self, subject: PeerId, kind: Kind, model: &ContentId) {
        if subject == self.me {
            return;
        }
        let evidence = model.to_bytes();
        let evidence = evidence[..evidence
            .len()
            .min(warren_protocol::observation::MAX_EVIDENCE_LEN)]
            .to_vec();
        self.mesh
            .observe_kind(subject, kind, evidence, now_ms())
            .await;
        if kind == Kind::InferenceMismatched {
            warn!(%subject, %model, "operator returned wrong results: observation published");
        }
    }
}

/// The privacy hook: jobs under [`Strategy::Private`] must travel through an onion circuit.
/// Circuits are being built separately; until they land this refuses rather than silently
/// sending the job in the clear.
pub fn route_through_circuit() -> Result<(), NodeError> {
    Err(NodeError::Model {
        model: "-".into(),
        detail: "strategy private needs onion circuits, which this node does not have yet".into(),
    })
}

fn check_complete(m: &ModelManifest) -> Result<(), String> {
    let has = |r: &str| m.file(r).is_some();
    match m.kind.as_str() {
        "generate" if has(wire::role::GGUF) => Ok(()),
        "embed"
            if has(wire::role::WEIGHTS)
                && has(wire::role::TOKENIZER)
                && has(wire::role::CONFIG) =>
        {
            Ok(())
        }
        "generate" => Err("a generation model needs a .gguf file".into()),
        _ => {
            Err("an embedding model needs model.safetensors, tokenizer.json and config.json".into())
        }
    }
}

fn view(id: &ContentId, m: &ModelManifest) -> ModelView {
    ModelView {
        model: id.to_string(),
        name: m.name.clone(),
        kind: m.kind.clone(),
        architecture: m.architecture.clone(),
        bytes: m.files.iter().map(|f| f.size).sum(),
    }
}
