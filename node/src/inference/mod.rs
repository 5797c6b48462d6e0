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
//! them, the executor, the store and the network: `operator` serves jobs to peers (admitted per
//! peer by `warren_inference::admission`), `requester` sends them and aggregates the results,
//! `generation` checks a generation and decodes its text here from its tokens, `local` runs them
//! on this node's executor.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use serde::{Deserialize, Serialize};
use tracing::info;
use warren_inference::admission::{Admission, AdmissionLimits};
use warren_inference::embed::EmbedFiles;
use warren_inference::signals::Signals;
use warren_inference::{Backend, Detokenizer, ModelFile};
use warren_protocol::inference::{self as wire, JobFailure, ModelFileEntry, ModelManifest};
use warren_protocol::{ContentId, Envelope, Keypair};
use warren_storage_mesh::placement::MAX_RF;
use warren_storage_mesh::{PutOptions, Store};

use crate::config::FaultInject;
use crate::error::NodeError;
use crate::net::Client;
use crate::storage::Mesh;
use crate::view::ReplicationReport;

mod embed_credit;
mod generation;
mod local;
mod operator;
mod requester;
mod slots;

pub use requester::route_through_circuit;

/// The job stream protocol.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new(wire::PROTOCOL_NAME);
/// Time a peer has to send its request after opening a stream.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a requester has to take each answer frame off the stream (its flow-control window full).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
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

/// Who computed a part, its vectors and their backend; `None` when every operator failed it.
type PartResult = Option<(PeerId, Vec<Vec<f32>>, Backend)>;

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
    /// Where `model add` placed its files' blocks (summed over the files and the manifest);
    /// absent elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed: Option<ReplicationReport>,
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
    /// Whether the result returned was confirmed by an independent run on the same backend
    /// (`false`: unverified, whatever the reason the verdict gives).
    #[serde(default)]
    pub verified: bool,
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
    executor: Arc<crate::worker::Models>,
    served: Mutex<BTreeMap<ContentId, ModelManifest>>,
    models_dir: PathBuf,
    fault: FaultInject,
    control: Mutex<libp2p_stream::Control>,
    client: Client,
    store: Arc<Store>,
    mesh: Arc<Mesh>,
    /// Latency (job round trips, pings) and throughput per operator, bounded.
    measured: Mutex<Signals<PeerId>>,
    /// This operator's load, per mille, read by the node record (`RecordBuilder::load_gauge`).
    load: Arc<std::sync::atomic::AtomicU16>,
    /// The models served, named in the node record (`RecordBuilder::served_models`).
    served_models: crate::record::ServedModels,
    jobs: Mutex<VecDeque<JobView>>,
    /// Inbound streams and running jobs per requesting peer.
    admission: Mutex<Admission<PeerId>>,
    /// Job slots, taken in order of credit when all are busy.
    slots: slots::Slots,
    /// Tokenizers of generation models, to decode operators' tokens here (a few models).
    detokenizers: Mutex<HashMap<ContentId, Arc<Detokenizer>>>,
    /// Sizers of embedding models, to count verified embedding work here (a few models).
    sizers: Mutex<HashMap<ContentId, Arc<warren_inference::embed::EmbedSizer>>>,
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
        executor: Arc<crate::worker::Models>,
        models_dir: PathBuf,
        fault: FaultInject,
        control: libp2p_stream::Control,
        client: Client,
        store: Arc<Store>,
        mesh: Arc<Mesh>,
        load: Arc<std::sync::atomic::AtomicU16>,
        served_models: crate::record::ServedModels,
    ) -> Arc<Self> {
        Arc::new(Self {
            me: key.public().to_peer_id(),
            served: Mutex::new(BTreeMap::new()),
            models_dir,
            fault,
            control: Mutex::new(control),
            client,
            store,
            mesh,
            measured: Mutex::new(Signals::default()),
            jobs: Mutex::new(VecDeque::new()),
            admission: Mutex::new(Admission::new(AdmissionLimits::for_slots(
                executor.limits().max_concurrent_jobs,
            ))),
            detokenizers: Mutex::new(HashMap::new()),
            sizers: Mutex::new(HashMap::new()),
            slots: slots::Slots::new(match fault {
                FaultInject::BusyInference => 1,
                _ => executor.limits().max_concurrent_jobs,
            }),
            executor,
            load,
            served_models,
        })
    }

    fn log(&self, job: JobView) {
        self.mesh.metrics().counters.jobs.inc();
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

    /// The models served here, then those added here and not served (their manifests kept in
    /// the models directory), each once.
    pub fn catalog(&self) -> Vec<ModelView> {
        let mut out = self.models();
        for (name, id) in self.added_names() {
            if out.iter().any(|m| m.model == id.to_string()) {
                continue;
            }
            let manifest = std::fs::read(self.models_dir.join(format!("{name}.manifest")))
                .ok()
                .and_then(|b| ModelManifest::decode(&b).ok());
            if let Some(m) = manifest {
                out.push(view(&id, &m));
            }
        }
        out
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

    /// Puts the file at `path` in the store and places its blocks at `rf` like any file put (RF 0
    /// keeps it here, announced); adds what was placed to `placed`.
    async fn put_file(
        &self,
        path: PathBuf,
        name: Option<String>,
        rf: usize,
        placed: &mut ReplicationReport,
    ) -> Result<ContentId, NodeError> {
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
        .map_err(|source| NodeError::Task {
            what: "store",
            source,
        })??;
        if rf > 0 {
            let r = self.mesh.replicate(cid, rf).await?;
            placed.blocks += r.blocks;
            placed.copies += r.copies;
            placed.failed += r.failed;
            for h in r.holders {
                if !placed.holders.contains(&h) {
                    placed.holders.push(h);
                }
            }
        } else {
            self.mesh.keep_here(cid).await?;
        }
        Ok(cid)
    }

    /// `warren model add`: puts each file on the mesh, then a manifest naming them, each placed
    /// at `rf` (default: the node's RF) like any file; returns the manifest's id, which is the
    /// model's id.
    pub async fn add(
        &self,
        name: &str,
        paths: &[PathBuf],
        rf: Option<usize>,
    ) -> Result<ModelView, NodeError> {
        let bad = |detail: String| NodeError::Model {
            model: name.to_string(),
            detail,
        };
        let rf = rf.unwrap_or(self.mesh.default_rf());
        if rf > MAX_RF {
            return Err(bad(format!("rf {rf} is above the limit of {MAX_RF}")));
        }
        let mut placed = ReplicationReport {
            rf,
            ..Default::default()
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
            .map_err(|source| NodeError::Task {
                what: "hash",
                source,
            })??;
            let content = self
                .put_file(path.clone(), Some(file_name.clone()), rf, &mut placed)
                .await?;
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
            .put_file(
                manifest_path,
                Some(format!("{name}.warren-model")),
                rf,
                &mut placed,
            )
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
        info!(model = %id, name, rf, copies = placed.copies, "model added to the mesh");
        let mut v = view(&id, &manifest);
        v.placed = Some(placed);
        Ok(v)
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
        .map_err(|source| NodeError::Task {
            what: "fetch",
            source,
        })?
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
        .map_err(|source| NodeError::Task {
            what: "load",
            source,
        })??;
        self.client.provide(vec![operator_key(&id)]).await?;
        {
            let mut served = lock(&self.served);
            served.insert(id, manifest.clone());
            self.served_models
                .set(served.iter().map(|(id, m)| (m.name.as_str(), id)));
        }
        info!(model = %id, name = %manifest.name, "serving model");
        Ok(view(&id, &manifest))
    }
}

/// The DHT key operators of `model` announce themselves under: the id of the raw block
/// `"warren/inference/operators/v1\0" || model id bytes`. Distinct from the model id itself, whose
/// provider records name the peers *storing* the manifest, not those serving the model.
pub fn operator_key(model: &ContentId) -> ContentId {
    let mut bytes = b"warren/inference/operators/v1\0".to_vec();
    bytes.extend_from_slice(&model.to_bytes());
    ContentId::of_block(warren_protocol::Codec::Raw, &bytes)
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
        placed: None,
    }
}
