//! The relay's runner: performs a circuit's request as the relay itself, with no authority inside
//! the node; the work on the stranger's bytes runs in a sandboxed worker process.
//!
//! A runner gets exactly one thing from its node: a [`MeshAccess`], which can fetch a file from the
//! mesh and read it back, store a new (unpinned) file and replicate it, or (when the node has its
//! inference service) run one text generation on the mesh's operators as this node, within
//! [`Limits`]. It never holds the node's identity or onion key, the API token, the pin list or the
//! control API: `MeshAccess` is built from the mesh, the store and the inference requester alone,
//! and offers no other method. Every run is bounded in bytes, in time, and in how many run at
//! once.
//!
//! The hostile-input work is not done here but in relay workers ([`crate::worker::relay`],
//! `warren __worker relay`: rlimits, no_new_privs, Landlock, seccomp): one decodes the `BEGIN`'s
//! request, and an upload gets one of its own that encodes its chunks (brotli, BLAKE3); the node
//! stores those blocks only after checking each against its id (`Store::put_encoded`). A GET
//! streams the stored blocks as they are (the client's node decodes and verifies them).

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tracing::info;
use warren_protocol::onion::request::Request;
use warren_protocol::{CHUNK_SIZE, ContentId};
use warren_storage_mesh::{Error as StoreError, PutOptions, Store};

pub(crate) use super::limits::CircuitLimits;
use crate::storage::Mesh;
use crate::worker::relay::{RelayWorkers, Session};

/// The refusal of an INFER request by a relay without the inference service.
pub const NO_INFERENCE: &str = "inference not available on this node";

/// What one runner may do.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest file a GET returns.
    pub max_get_bytes: u64,
    /// Largest file a PUT stores.
    pub max_put_bytes: u64,
    /// Longest a request may take.
    pub time: Duration,
    /// Runs at once on this node.
    pub concurrent: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_get_bytes: 1 << 30,
            max_put_bytes: 256 << 20,
            time: Duration::from_secs(300),
            concurrent: 16,
        }
    }
}

/// The runner's only window on the node: get and put on the mesh, nothing else.
#[derive(Clone)]
pub struct MeshAccess {
    mesh: Arc<Mesh>,
    store: Arc<Store>,
    inference: Option<Arc<crate::inference::Inference>>,
    /// Where requests are decoded and uploads encoded; none: every request is refused.
    workers: Option<Arc<RelayWorkers>>,
}

impl MeshAccess {
    /// Access to `mesh` and its `store`.
    pub fn new(mesh: Arc<Mesh>, store: Arc<Store>) -> Self {
        Self {
            mesh,
            store,
            inference: None,
            workers: None,
        }
    }

    /// Runs the requests' hostile-input work in these sandboxed workers (without them, every
    /// request is refused).
    pub fn with_workers(mut self, workers: Arc<RelayWorkers>) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Also lets runners ask the mesh's operators for one text generation as this node.
    pub fn with_inference(mut self, inference: Arc<crate::inference::Inference>) -> Self {
        self.inference = Some(inference);
        self
    }

    /// Runs the generation job `job` (an encoded `GenerateRequest`; an `EmbedRequest` goes to
    /// [`Self::embed`]) on the mesh's operators as
    /// this node, picked for speed, and streams the answer to `out` as the NDJSON lines of
    /// `POST /v1/infer`: `{"text":…}` per chunk, then `{"done":…}`. Returns a summary.
    async fn infer(&self, job: Vec<u8>, out: mpsc::Sender<Vec<u8>>) -> Result<String, String> {
        use warren_inference::plan::Strategy;
        use warren_protocol::inference::GenerateRequest;
        let inference = self.inference.clone().ok_or(NO_INFERENCE)?;
        let request = match GenerateRequest::decode(&job) {
            Ok(r) => r,
            Err(e) => match warren_protocol::inference::EmbedRequest::decode(&job) {
                Ok(r) => return Self::embed(&inference, r, out).await,
                Err(_) => return Err(format!("bad inference job: {e}")),
            },
        };
        let line = |v: serde_json::Value| {
            let mut l = serde_json::to_vec(&v).unwrap_or_default();
            l.push(b'\n');
            l
        };
        let (chunk_tx, mut chunk_rx) = mpsc::channel::<String>(64);
        // Sampled like any job: an operator cannot tell an anonymous job from another.
        let sample = warren_inference::plan::DEFAULT_SAMPLE_FRACTION;
        let job = inference.generate(request, Strategy::Speed, false, sample, chunk_tx);
        tokio::pin!(job);
        let result = loop {
            tokio::select! {
                Some(text) = chunk_rx.recv() => {
                    out.send(line(serde_json::json!({ "text": text })))
                        .await
                        .map_err(|_| "the circuit closed".to_owned())?;
                }
                r = &mut job => break r,
            }
        };
        while let Ok(text) = chunk_rx.try_recv() {
            out.send(line(serde_json::json!({ "text": text })))
                .await
                .map_err(|_| "the circuit closed".to_owned())?;
        }
        let (operator, r, check) = result.map_err(|e| e.to_string())?;
        let tokens = r.tokens.len();
        out.send(line(serde_json::json!({ "done": {
            "operator": operator.map(|p| p.to_string()),
            "text": r.text,
            "tokens": r.tokens,
            "backend": r.backend,
            "digest": hex::encode(&r.digest),
            "compute_ms": r.compute_ms,
            "prompt_tokens": r.prompt_tokens,
            "finish": r.finish,
            "verified": check.is_some_and(|c| c.verified),
        }})))
        .await
        .map_err(|_| "the circuit closed".to_owned())?;
        Ok(format!("{tokens} tokens"))
    }

    /// Runs the embedding job `request` on the mesh's operators as this node (one operator,
    /// picked for speed) and sends one NDJSON line `{"done": {"vectors", "backend"}}`.
    async fn embed(
        inference: &crate::inference::Inference,
        request: warren_protocol::inference::EmbedRequest,
        out: mpsc::Sender<Vec<u8>>,
    ) -> Result<String, String> {
        use warren_inference::plan::Strategy;
        let n = request.texts.len();
        let r = inference
            .embed(request.model, request.texts, Strategy::Speed, 1, 0.0)
            .await
            .map_err(|e| e.to_string())?;
        let mut line = serde_json::to_vec(&serde_json::json!({ "done": {
            "vectors": r.vectors,
            "backend": r.backend,
        }}))
        .map_err(|e| e.to_string())?;
        line.push(b'\n');
        out.send(line)
            .await
            .map_err(|_| "the circuit closed".to_owned())?;
        Ok(format!("{n} vectors"))
    }

    /// Fetches `cid` from its holders (as this node) and streams it to `out` as blocks
    /// (`warren_storage_mesh::stream`), which the client's node verifies. The root comes first:
    /// a file above `max` is refused before any other block of it is fetched.
    async fn get(
        &self,
        cid: ContentId,
        max: u64,
        out: mpsc::Sender<Vec<u8>>,
    ) -> Result<u64, String> {
        let size = super::relay_get::root_size(&self.mesh, cid)
            .await
            .map_err(|e| e.to_string())?;
        if size > max {
            return Err(format!(
                "{cid} is {size} bytes, above the runner's limit of {max}"
            ));
        }
        self.mesh.fetch(cid).await.map_err(|e| e.to_string())?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut w = ChannelWriter {
                tx: out,
                buf: Vec::with_capacity(WRITE_CHUNK),
            };
            let n = warren_storage_mesh::stream::send(&store, &cid, max, &mut w)
                .map_err(|e| e.to_string())?;
            super::relay_get::trim(&store);
            Ok(n)
        })
        .await
        .map_err(|e| format!("runner task: {e}"))?
    }

    /// Stores the bytes from `input` (`None` marks the end; a closed channel before it is a cut-off
    /// upload, and nothing is stored) as an unpinned file and replicates it. The chunks are
    /// encoded by the request's relay worker (`session`); the node checks and stores the blocks.
    /// An upload not complete by `deadline` fails there: the blocking store task stops with it
    /// (dropping this future alone would leave that task waiting on the circuit).
    async fn put(
        &self,
        mut session: Session,
        input: mpsc::Receiver<Option<Vec<u8>>>,
        name: Option<String>,
        max: u64,
        deadline: tokio::time::Instant,
    ) -> Result<ContentId, String> {
        let store = self.store.clone();
        let runtime = tokio::runtime::Handle::current();
        let out = tokio::task::spawn_blocking(move || {
            let reader = ChannelReader {
                rx: input,
                current: Vec::new(),
                pos: 0,
                total: 0,
                max,
                done: false,
                deadline: Some((runtime, deadline)),
            };
            let opts = PutOptions {
                name,
                media_type: None,
                pin: false,
            };
            std::thread::scope(|scope| {
                // The circuit is read on its own thread, a chunk ahead of the worker.
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                scope.spawn(move || read_chunks(reader, tx));
                let chunks = rx.into_iter().map(|chunk: io::Result<Vec<u8>>| {
                    let chunk = chunk.map_err(StoreError::Read)?;
                    session
                        .encode(chunk)
                        .map_err(|e| StoreError::Read(io::Error::other(e)))
                });
                store.put_encoded(chunks, &opts).map_err(|e| e.to_string())
            })
        })
        .await
        .map_err(|e| format!("runner task: {e}"))??;
        let rf = self.mesh.default_rf();
        if rf > 0 {
            self.mesh
                .replicate(out.cid, rf)
                .await
                .map_err(|e| e.to_string())?;
        } else {
            self.mesh
                .announce(out.cid)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(out.cid)
    }
}

/// What a runner sends back to its circuit.
#[derive(Debug)]
pub(crate) enum Out {
    /// Answer bytes.
    Data(u16, Vec<u8>),
    /// The end of the answer.
    End(u16, Result<String, String>),
}

/// Starts runners within the limits.
#[derive(Clone)]
pub struct Runner {
    access: MeshAccess,
    limits: Limits,
    slots: Arc<Semaphore>,
    /// Requests and answer bytes per circuit and per previous hop.
    quota: Arc<std::sync::Mutex<warren_protocol::onion::quota::Quota>>,
}

impl Runner {
    /// A runner pool over `access`.
    pub fn new(access: MeshAccess, limits: Limits) -> Self {
        Self {
            access,
            slots: Arc::new(Semaphore::new(limits.concurrent)),
            limits,
            quota: super::limits::table(Default::default()),
        }
    }

    /// The limits of a new circuit that reached this relay from `prev`.
    pub(crate) fn circuit(&self, prev: &libp2p::PeerId) -> CircuitLimits {
        CircuitLimits::new(self.quota.clone(), prev.to_bytes())
    }

    /// Starts the run of the request `request` (a `BEGIN`'s bytes, not yet decoded) on
    /// `stream`: answer bytes and the end go to `out`; uploaded bytes come from `input`. Refuses
    /// at once when all slots are busy.
    pub(crate) fn start(
        &self,
        stream: u16,
        request: Vec<u8>,
        input: mpsc::Receiver<Option<Vec<u8>>>,
        out: mpsc::Sender<Out>,
        circuit: &CircuitLimits,
    ) -> Result<(), String> {
        circuit.begin()?;
        let circuit = circuit.clone();
        let permit = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| format!("runner busy ({} runs at once)", self.limits.concurrent))?;
        let access = self.access.clone();
        let limits = self.limits;
        tokio::spawn(async move {
            let _permit = permit;
            let run = access.run(stream, request, input, &out, &circuit, limits);
            let result = tokio::time::timeout(limits.time, run)
                .await
                .unwrap_or_else(|_| Err(format!("runner time limit of {:?} reached", limits.time)));
            let _ = out.send(Out::End(stream, result)).await;
        });
        Ok(())
    }
}

impl MeshAccess {
    /// One request: decoded by a relay worker of its own, then done.
    async fn run(
        &self,
        stream: u16,
        request: Vec<u8>,
        input: mpsc::Receiver<Option<Vec<u8>>>,
        out: &mpsc::Sender<Out>,
        circuit: &CircuitLimits,
        limits: Limits,
    ) -> Result<String, String> {
        let workers = self
            .workers
            .clone()
            .ok_or("runner sandbox unavailable: this node has no relay worker")?;
        let w = workers.clone();
        let request = tokio::task::spawn_blocking(move || w.decode(&request))
            .await
            .map_err(|e| format!("runner task: {e}"))??;
        info!("runner sandboxed: request decoded by a relay worker");
        match request {
            Request::Get(cid) => {
                info!("runner: get"); // never the CID at info: the relay must not log what is read
                let (data, rx) = mpsc::channel(16);
                let (r, sent) = tokio::join!(
                    self.get(cid, limits.max_get_bytes, data),
                    forward(stream, rx, out, circuit)
                );
                sent?;
                r.map(|n| n.to_string())
            }
            Request::Put { name } => {
                info!("runner: put");
                // The upload gets a worker of its own, stopped after it.
                let session = tokio::task::spawn_blocking(move || workers.session())
                    .await
                    .map_err(|e| format!("runner task: {e}"))??;
                // The upload's reader fails at the deadline too, so the store task ends with the
                // run instead of outliving it.
                let deadline = tokio::time::Instant::now() + limits.time;
                self.put(session, input, name, limits.max_put_bytes, deadline)
                    .await
                    .map(|c| c.to_string())
            }
            Request::Infer(job) => {
                info!("runner: infer");
                let (data, rx) = mpsc::channel(16);
                let (r, sent) =
                    tokio::join!(self.infer(job, data), forward(stream, rx, out, circuit));
                sent?;
                r
            }
        }
    }
}

/// Forwards a streamed answer into the circuit as it comes, within the circuit's byte limit.
async fn forward(
    stream: u16,
    mut rx: mpsc::Receiver<Vec<u8>>,
    out: &mpsc::Sender<Out>,
    circuit: &CircuitLimits,
) -> Result<(), String> {
    while let Some(d) = rx.recv().await {
        circuit.bytes(d.len())?;
        out.send(Out::Data(stream, d))
            .await
            .map_err(|_| "the circuit closed".to_owned())?;
    }
    Ok(())
}

/// Reads the upload in chunks of `CHUNK_SIZE` (the last may be shorter) until its end, a
/// failure, or the taker is gone.
fn read_chunks(mut reader: impl Read, tx: std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>) {
    loop {
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut filled = 0;
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        if filled == 0 {
            return;
        }
        buf.truncate(filled);
        if tx.send(Ok(buf)).is_err() || filled < CHUNK_SIZE {
            return;
        }
    }
}

const WRITE_CHUNK: usize = 64 * 1024;

struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= WRITE_CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(WRITE_CHUNK));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "circuit gone"))
    }
}

struct ChannelReader {
    rx: mpsc::Receiver<Option<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
    total: u64,
    max: u64,
    done: bool,
    /// When reading fails with `TimedOut`, on the runtime that keeps the time (`None`: never).
    deadline: Option<(tokio::runtime::Handle, tokio::time::Instant)>,
}

impl ChannelReader {
    /// The next message, or `TimedOut` at the deadline. Runs on a blocking thread.
    fn next(&mut self) -> io::Result<Option<Option<Vec<u8>>>> {
        match &self.deadline {
            None => Ok(self.rx.blocking_recv()),
            // The timer is made inside `block_on`: it needs the runtime's context, which a
            // store thread (a plain thread the put spawns) does not have.
            Some((runtime, at)) => runtime
                .block_on(async { tokio::time::timeout_at(*at, self.rx.recv()).await })
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        "upload not complete by the runner's time limit",
                    )
                }),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.next()? {
                Some(None) => {
                    self.done = true;
                    return Ok(0);
                }
                Some(Some(c)) => {
                    self.total += c.len() as u64;
                    if self.total > self.max {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("upload above the runner's limit of {} bytes", self.max),
                        ));
                    }
                    self.current = c;
                    self.pos = 0;
                }
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "upload cut off: the circuit closed before the client's END",
                    ));
                }
            }
        }
        let n = out.len().min(self.current.len() - self.pos);
        out[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use std::io::Read;
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::ChannelReader;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_upload_fails_at_the_deadline_and_the_blocking_reader_ends() {
        let (tx, rx) = mpsc::channel(4);
        // One chunk, then nothing: the sender stays open, as a stalled circuit's does.
        tx.send(Some(vec![7u8; 1000])).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
        let runtime = tokio::runtime::Handle::current();
        let started = std::time::Instant::now();
        // On a plain thread, as the store's put reads its input (no runtime context there).
        let read = tokio::task::spawn_blocking(move || {
            std::thread::spawn(move || read_all(rx, runtime, deadline))
                .join()
                .unwrap()
        });
        let (r, got) = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the blocking reader ended by itself")
            .unwrap();
        assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(got, 1000);
        assert!(started.elapsed() >= Duration::from_millis(250));
        drop(tx);
    }

    fn read_all(
        rx: mpsc::Receiver<Option<Vec<u8>>>,
        runtime: tokio::runtime::Handle,
        deadline: tokio::time::Instant,
    ) -> (std::io::Result<usize>, usize) {
        {
            let mut reader = ChannelReader {
                rx,
                current: Vec::new(),
                pos: 0,
                total: 0,
                max: u64::MAX,
                done: false,
                deadline: Some((runtime, deadline)),
            };
            let mut out = Vec::new();
            let r = reader.read_to_end(&mut out);
            (r, out.len())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_put_reads_the_upload_on_its_own_thread() {
        let dir = tempfile::tempdir().unwrap();
        let store = warren_storage_mesh::Store::open(dir.path(), u64::MAX).unwrap();
        let (tx, rx) = mpsc::channel(64);
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        for part in data.chunks(100_000) {
            tx.send(Some(part.to_vec())).await.unwrap();
        }
        tx.send(None).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let runtime = tokio::runtime::Handle::current();
        let out = tokio::task::spawn_blocking(move || {
            let reader = ChannelReader {
                rx,
                current: Vec::new(),
                pos: 0,
                total: 0,
                max: 1 << 30,
                done: false,
                deadline: Some((runtime, deadline)),
            };
            store
                .put(reader, &warren_storage_mesh::PutOptions::default(), &|_| {})
                .map(|o| o.size)
        });
        let sent = tokio::spawn(async move { drop(tx) });
        assert_eq!(out.await.unwrap().unwrap(), 3_000_000);
        sent.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_upload_within_the_deadline_reads_to_its_end() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Some(b"hello ".to_vec())).await.unwrap();
        tx.send(Some(b"world".to_vec())).await.unwrap();
        tx.send(None).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let runtime = tokio::runtime::Handle::current();
        let out = tokio::task::spawn_blocking(move || {
            let mut reader = ChannelReader {
                rx,
                current: Vec::new(),
                pos: 0,
                total: 0,
                max: 1 << 20,
                done: false,
                deadline: Some((runtime, deadline)),
            };
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            out
        })
        .await
        .unwrap();
        assert_eq!(out, b"hello world");
    }
}
