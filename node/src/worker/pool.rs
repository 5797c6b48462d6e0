//! The node's side of its model workers: one sandboxed process per loaded model.
//!
//! [`Models`] offers what `warren_inference::Executor` offered the inference service (slots,
//! limits, `load_*`, `generate`, `embed`; blocking calls, run on the blocking pool) but runs
//! every model in its own worker process. Each call has a deadline; a worker that dies, hangs
//! past it, breaks the framing or runs out of its memory is killed, the job fails with
//! [`Error::Worker`], and the worker is started again (and its model loaded again) on the next
//! job, no sooner than its backoff allows: 250 ms after a first failure, doubling to 30 s, reset by
//! a job that completes.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;
use warren_inference::embed::EmbedFiles;
use warren_inference::{
    Backend, EmbedOutput, Error, Executor, Finish, GenerateOutput, GenerateParams, Generation,
    JobSlot, Limits, ModelFile, ModelKind, Prompt,
};

use super::child::SUBCOMMAND;
use super::confine::NO_SANDBOX_ENV;
use super::wire::{self, FromWorker, Params, ToWorker};

/// First wait before a failed worker is started again; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait before a failed worker is started again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest a worker may take to say whether it could confine itself.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How workers are started.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The `warren` binary (the node's own).
    pub program: PathBuf,
    /// Address space a worker may add to its own at start, in bytes; `None`: twice its model's
    /// files plus 1 GiB.
    pub memory: Option<u64>,
    /// Longest a load or a job may take.
    pub deadline: Duration,
}

impl Settings {
    /// Workers of this very binary, with the given memory allowance (0: automatic) and deadline.
    pub fn this_binary(memory_mb: u64, deadline: Duration) -> Result<Self, String> {
        Ok(Self {
            program: std::env::current_exe().map_err(|e| format!("own binary: {e}"))?,
            memory: (memory_mb > 0).then_some(memory_mb << 20),
            deadline,
        })
    }
}

/// Starts a worker with no model, waits for it to confine itself, and stops it: the Landlock ABI
/// in force, or why this machine cannot sandbox a worker.
pub fn preflight(settings: &Settings) -> Result<u32, String> {
    let proc = Proc::spawn(settings, "model", None, 256 << 20)?;
    Ok(proc.abi)
}

/// One running worker.
pub(super) struct Proc {
    child: Child,
    pipe: UnixStream,
    abi: u32,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Starts `warren __worker MODE MEMORY` (stdin: `model`, or nothing) and waits for it to
    /// say it confined itself.
    pub(super) fn spawn(
        settings: &Settings,
        mode: &str,
        model: Option<&File>,
        memory: u64,
    ) -> Result<Self, String> {
        let (ours, theirs) = UnixStream::pair().map_err(|e| format!("pipe: {e}"))?;
        let stdin = match model {
            Some(f) => Stdio::from(f.try_clone().map_err(|e| format!("model file: {e}"))?),
            None => Stdio::null(),
        };
        let mut cmd = Command::new(&settings.program);
        cmd.arg(SUBCOMMAND)
            .arg(mode)
            .arg(memory.to_string())
            .stdin(stdin)
            .stdout(Stdio::from(OwnedFd::from(theirs)))
            .stderr(Stdio::piped())
            .env_clear();
        for var in [NO_SANDBOX_ENV, "RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", settings.program.display()))?;
        // What the worker says on stderr (a panic, a failed allocation) goes to the node's log.
        // Not inherited: the node's stderr may be a file, which the worker may not grow.
        if let Some(err) = child.stderr.take() {
            let pid = child.id();
            let _ = std::thread::Builder::new()
                .name("worker-stderr".into())
                .spawn(move || {
                    use std::io::{BufRead, Read};
                    let mut lines = std::io::BufReader::new(err).take(1 << 20);
                    let mut line = Vec::new();
                    while lines.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                        line.truncate(2000);
                        let text = String::from_utf8_lossy(&line);
                        tracing::warn!(worker = pid, "{}", text.trim_end());
                        line.clear();
                    }
                });
        }
        let mut proc = Self {
            child,
            pipe: ours,
            abi: 0,
        };
        proc.pipe
            .set_read_timeout(Some(READY_TIMEOUT))
            .map_err(|e| e.to_string())?;
        match wire::read::<FromWorker>(&mut proc.pipe) {
            Ok(Some(FromWorker::Ready { landlock })) => {
                proc.abi = landlock;
                Ok(proc)
            }
            Ok(Some(FromWorker::Refused { why })) => Err(why),
            Ok(Some(other)) => Err(format!("the worker said {other:?} before Ready")),
            Ok(None) => Err(format!("the worker ended at start ({})", proc.status())),
            Err(e) => Err(format!("the worker did not start: {e}")),
        }
    }

    /// Whether the process still runs.
    pub(super) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How the process ended, after a short wait (or that it still runs).
    fn status(&mut self) -> String {
        for _ in 0..20 {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.to_string();
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        "still running".into()
    }

    /// Sends `msg` and reads the answer by `deadline` (texts go to `on_text` first, each
    /// answered `Go` or `Stop`). An error means the worker is unusable.
    pub(super) fn call(
        &mut self,
        msg: &ToWorker,
        deadline: Instant,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<FromWorker, String> {
        let io = |e: std::io::Error| e.to_string();
        wire::write(&mut self.pipe, msg).map_err(io)?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("past its deadline".into());
            }
            self.pipe.set_read_timeout(Some(left)).map_err(io)?;
            match wire::read::<FromWorker>(&mut self.pipe) {
                Ok(Some(FromWorker::Text(t))) => {
                    let go = if on_text(&t) {
                        ToWorker::Go
                    } else {
                        ToWorker::Stop
                    };
                    wire::write(&mut self.pipe, &go).map_err(io)?;
                }
                Ok(Some(answer)) => return Ok(answer),
                Ok(None) => return Err(format!("it ended ({})", self.status())),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err("past its deadline".into());
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// What a worker loads, kept to start it again.
struct Spec {
    file: File,
    load: ToWorker,
    bytes: u64,
}

/// A loaded model: what the map needs without waiting on its worker.
struct Entry {
    kind: ModelKind,
    bytes: u64,
    worker: Arc<Mutex<Worker>>,
}

struct Worker {
    spec: Spec,
    proc: Option<Proc>,
    failures: u32,
    retry_at: Option<Instant>,
}

impl Worker {
    fn fail(&mut self, what: String) -> Error {
        self.proc = None;
        self.failures += 1;
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << self.failures.saturating_sub(1).min(10))
            .min(MAX_BACKOFF);
        self.retry_at = Some(Instant::now() + backoff);
        Error::Worker {
            detail: format!("{what}; the worker was stopped and starts again in {backoff:?}"),
        }
    }
}

/// The models this node runs, each in its own sandboxed worker.
pub struct Models {
    settings: Settings,
    /// Slots and limits (it loads no model itself).
    slots: Executor,
    sandbox: Result<u32, String>,
    workers: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models")
            .field("sandbox", &self.sandbox)
            .field("models", &self.models().len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Models {
    /// Models run by workers started with `settings`, within `limits`; `sandbox` is the outcome
    /// of [`preflight`]: without a sandbox nothing is loaded.
    pub fn new(settings: Settings, limits: Limits, sandbox: Result<u32, String>) -> Self {
        Self {
            settings,
            slots: Executor::new(Backend::Cpu, limits),
            sandbox,
            workers: Mutex::new(HashMap::new()),
        }
    }

    /// The backend models run on (workers run on the CPU).
    pub fn backend(&self) -> Backend {
        Backend::Cpu
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        self.slots.limits()
    }

    /// The Landlock ABI workers run under, or why this node cannot sandbox them.
    pub fn sandbox(&self) -> &Result<u32, String> {
        &self.sandbox
    }

    /// Ids and kinds of the loaded models, sorted by id.
    pub fn models(&self) -> Vec<(String, ModelKind)> {
        let mut v: Vec<_> = lock(&self.workers)
            .iter()
            .map(|(id, e)| (id.clone(), e.kind))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Jobs running now.
    pub fn active_jobs(&self) -> usize {
        self.slots.active_jobs()
    }

    /// Takes a job slot, or refuses with [`Error::Busy`].
    pub fn try_slot(&self) -> Result<JobSlot, Error> {
        self.slots.try_slot()
    }

    fn memory_for(&self, bytes: u64) -> u64 {
        self.settings
            .memory
            .unwrap_or_else(|| bytes.saturating_mul(2).saturating_add(1 << 30))
    }

    fn load(
        &self,
        id: &str,
        kind: ModelKind,
        path: &ModelFile,
        load: ToWorker,
    ) -> Result<(), Error> {
        if let Err(why) = &self.sandbox {
            return Err(Error::Worker {
                detail: format!(
                    "this node cannot sandbox its model workers, so it runs no model: {why}"
                ),
            });
        }
        let file = File::open(&path.path).map_err(|source| Error::Io {
            path: path.path.clone(),
            source,
        })?;
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        let used: u64 = lock(&self.workers)
            .iter()
            .filter(|(k, _)| k.as_str() != id)
            .map(|(_, e)| e.bytes)
            .sum();
        let available = self.limits().memory_budget_bytes.saturating_sub(used);
        if bytes > available {
            return Err(Error::OutOfMemoryBudget {
                model: id.to_string(),
                needed: bytes,
                available,
            });
        }
        let mut worker = Worker {
            spec: Spec { file, load, bytes },
            proc: None,
            failures: 0,
            retry_at: None,
        };
        self.start(id, &mut worker)?;
        let worker = Arc::new(Mutex::new(worker));
        lock(&self.workers).insert(
            id.to_string(),
            Entry {
                kind,
                bytes,
                worker,
            },
        );
        Ok(())
    }

    /// Starts `worker`'s process and loads its model (a failure is returned and counted).
    fn start(&self, id: &str, worker: &mut Worker) -> Result<(), Error> {
        let memory = self.memory_for(worker.spec.bytes);
        let mut proc = match Proc::spawn(&self.settings, "model", Some(&worker.spec.file), memory) {
            Ok(p) => p,
            Err(e) => return Err(worker.fail(format!("cannot start: {e}"))),
        };
        let deadline = Instant::now() + self.settings.deadline;
        match proc.call(&worker.spec.load, deadline, &mut |_| false) {
            Ok(FromWorker::Loaded) => {
                worker.proc = Some(proc);
                Ok(())
            }
            Ok(FromWorker::Failed(f)) => {
                drop(proc);
                let _ = worker.fail(String::new());
                Err(Error::Load {
                    model: id.to_string(),
                    detail: f.detail,
                })
            }
            Ok(other) => Err(worker.fail(format!("it answered a load with {other:?}"))),
            Err(e) => Err(worker.fail(format!("loading the model failed: {e}"))),
        }
    }

    /// Loads (or reloads) a generation model under `id` in a worker of its own.
    pub fn load_generator(&self, id: &str, file: &ModelFile) -> Result<(), Error> {
        let load = ToWorker::LoadGenerator {
            id: id.to_string(),
            blake3: ByteBuf::from(file.blake3.map(|h| h.to_vec()).unwrap_or_default()),
        };
        self.load(id, ModelKind::Generate, file, load)
    }

    /// Loads (or reloads) an embedding model under `id` in a worker of its own.
    pub fn load_embedder(&self, id: &str, files: &EmbedFiles) -> Result<(), Error> {
        let load = ToWorker::LoadEmbedder {
            id: id.to_string(),
            blake3: ByteBuf::from(files.weights.blake3.map(|h| h.to_vec()).unwrap_or_default()),
            tokenizer: ByteBuf::from(files.tokenizer.read()?),
            config: ByteBuf::from(files.config.read()?),
        };
        self.load(id, ModelKind::Embed, &files.weights, load)
    }

    /// Runs `msg` on model `id`'s worker, starting it again first when it failed before.
    fn run(
        &self,
        id: &str,
        kind: ModelKind,
        msg: ToWorker,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<FromWorker, Error> {
        let worker = lock(&self.workers)
            .get(id)
            .filter(|e| e.kind == kind)
            .map(|e| e.worker.clone())
            .ok_or_else(|| Error::Load {
                model: id.to_string(),
                detail: format!("no {} model loaded under this id", kind.as_str()),
            })?;
        let mut w = lock(&worker);
        if w.proc.is_none() {
            if let Some(at) = w.retry_at
                && Instant::now() < at
            {
                return Err(Error::Worker {
                    detail: format!(
                        "the model's worker failed and starts again in {:?}",
                        at - Instant::now()
                    ),
                });
            }
            self.start(id, &mut w)?;
        }
        let deadline = Instant::now() + self.settings.deadline;
        let Some(proc) = w.proc.as_mut() else {
            return Err(Error::Worker {
                detail: "no worker".into(),
            });
        };
        match proc.call(&msg, deadline, on_text) {
            Ok(FromWorker::Failed(f)) => Err(match (f.code.as_str(), f.over) {
                ("limit", Some((what, got, limit))) => Error::OverLimit {
                    job: String::new(),
                    what: static_what(&what),
                    got,
                    limit,
                },
                ("unknown-model", _) => Error::Load {
                    model: id.to_string(),
                    detail: f.detail,
                },
                _ => Error::Worker { detail: f.detail },
            }),
            Ok(answer) => {
                w.failures = 0;
                w.retry_at = None;
                Ok(answer)
            }
            Err(e) => Err(w.fail(format!("the model's worker failed the job: {e}"))),
        }
    }

    /// Runs a generation job with model `id`, streaming text to `on_text` (which returns `false`
    /// to cancel). `model_id_bytes` is what the digest binds the result to.
    #[allow(clippy::too_many_arguments)] // the executor's signature, kept for its callers
    pub fn generate(
        &self,
        _slot: &JobSlot,
        job: &str,
        id: &str,
        model_id_bytes: &[u8],
        prompt: &Prompt,
        params: &GenerateParams,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<GenerateOutput, Error> {
        self.slots.check_generate(job, prompt, params)?;
        let msg = ToWorker::Generate {
            job: job.to_string(),
            model_id: ByteBuf::from(model_id_bytes.to_vec()),
            prompt: match prompt {
                Prompt::User(p) => wire::Prompt::User(p.clone()),
                Prompt::Raw(p) => wire::Prompt::Raw(p.clone()),
                Prompt::Chat(m) => wire::Prompt::Chat(m.clone()),
            },
            params: Params {
                max_tokens: params.max_tokens,
                temperature: params.temperature,
                seed: params.seed,
                top_p: params.top_p,
                stop: params.stop.clone(),
            },
        };
        match self.run(id, ModelKind::Generate, msg, &mut on_text)? {
            FromWorker::Generated {
                tokens,
                text,
                prompt_tokens,
                finish,
                digest,
            } => Ok(GenerateOutput {
                generation: Generation {
                    tokens,
                    text,
                    prompt_tokens,
                    finish: if finish == "length" {
                        Finish::Length
                    } else {
                        Finish::Stop
                    },
                },
                backend: self.backend(),
                digest: digest.as_slice().try_into().unwrap_or([0; 32]),
            }),
            other => Err(Error::Worker {
                detail: format!("the worker answered a generation with {other:?}"),
            }),
        }
    }

    /// Runs an embedding job with model `id`.
    pub fn embed(
        &self,
        _slot: &JobSlot,
        job: &str,
        id: &str,
        texts: &[String],
    ) -> Result<EmbedOutput, Error> {
        self.slots.check_embed(job, texts)?;
        let msg = ToWorker::Embed {
            job: job.to_string(),
            texts: texts.to_vec(),
        };
        match self.run(id, ModelKind::Embed, msg, &mut |_| false)? {
            FromWorker::Embedded {
                dim,
                vectors,
                digest,
            } => {
                let floats: Vec<f32> = vectors
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                let dim = (dim as usize).max(1);
                if floats.len() != dim * texts.len() {
                    return Err(Error::Worker {
                        detail: format!(
                            "{} floats for {} texts of dimension {dim}",
                            floats.len(),
                            texts.len()
                        ),
                    });
                }
                Ok(EmbedOutput {
                    vectors: floats.chunks(dim).map(<[f32]>::to_vec).collect(),
                    backend: self.backend(),
                    digest: digest.as_slice().try_into().unwrap_or([0; 32]),
                })
            }
            other => Err(Error::Worker {
                detail: format!("the worker answered an embedding with {other:?}"),
            }),
        }
    }
}

/// The executor's names for what is over a limit (the worker sends them as text).
fn static_what(what: &str) -> &'static str {
    ["max tokens", "batch size", "text bytes", "prompt bytes"]
        .into_iter()
        .find(|w| *w == what)
        .unwrap_or("a limit")
}
