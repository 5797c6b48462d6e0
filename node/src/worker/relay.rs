//! The node's side of its relay workers: the onion relay runner's work on a stranger's bytes
//! (decoding a request, encoding an upload's chunks) runs in a `warren __worker relay` process
//! (spec/worker.md), never in the node.
//!
//! A request's bytes are decoded by one of a few long-lived decoder workers
//! ([`RelayWorkers::decode`]: decoding is stateless and what it answers is checked again, and a
//! worker start per request would cost every small GET a process start). An upload gets a
//! [`Session`]: a worker of its own, used for that upload alone and stopped after it, so nothing
//! one stranger's upload does to a worker reaches another's. A few confined workers wait ready
//! ([`SPARES`]), so an upload does not wait for a start. A worker that dies, hangs past [`CALL_DEADLINE`], breaks the framing or runs out of its memory
//! fails its request only; the next request gets a fresh worker. Failures to *start* a worker
//! back off (250 ms doubling to 30 s, reset by a start that works): requests then fail at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;
use warren_protocol::ContentId;
use warren_protocol::onion::request::Request;
use warren_storage_mesh::EncodedChunk;

use super::pool::{Proc, Settings};
use super::wire::{FromWorker, RelayRequest, ToWorker};

/// Address space a relay worker may add to its own at start.
pub const RELAY_MEMORY: u64 = 512 << 20;
/// Longest one decode or one chunk's encoding may take.
pub const CALL_DEADLINE: Duration = Duration::from_secs(30);
/// Workers kept started and confined, waiting for an upload.
pub const SPARES: usize = 2;
/// Idle decoder workers kept (more start when more requests come at once).
pub const DECODERS: usize = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The relay workers of a node.
pub struct RelayWorkers {
    settings: Settings,
    spares: Mutex<Vec<Proc>>,
    /// Idle decoder workers.
    decoders: Mutex<Vec<Proc>>,
    /// A thread is starting spares.
    refilling: AtomicBool,
    /// Failed starts in a row, and when the next start may be tried.
    backoff: Mutex<(u32, Option<Instant>)>,
}

impl std::fmt::Debug for RelayWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayWorkers").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RelayWorkers {
    /// Relay workers started with `settings`; the spares start in the background.
    pub fn new(settings: Settings) -> Arc<Self> {
        let me = Arc::new(Self {
            settings,
            spares: Mutex::new(Vec::new()),
            decoders: Mutex::new(Vec::new()),
            refilling: AtomicBool::new(false),
            backoff: Mutex::new((0, None)),
        });
        me.refill();
        me
    }

    /// Starts spares on a thread of its own (one at a time) until there are [`SPARES`].
    fn refill(self: &Arc<Self>) {
        if self.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("relay-spares".into())
            .spawn(move || {
                while lock(&me.spares).len() < SPARES {
                    match me.start() {
                        Ok(p) => lock(&me.spares).push(p),
                        Err(_) => break,
                    }
                }
                if lock(&me.decoders).is_empty()
                    && let Ok(p) = me.start()
                {
                    lock(&me.decoders).push(p);
                }
                me.refilling.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.refilling.store(false, Ordering::Release);
        }
    }

    /// Starts one worker, within the backoff.
    fn start(&self) -> Result<Proc, String> {
        if let (_, Some(at)) = *lock(&self.backoff)
            && Instant::now() < at
        {
            return Err(format!(
                "the relay worker could not start; it is tried again in {:?}",
                at - Instant::now()
            ));
        }
        match Proc::spawn(&self.settings, "relay", None, RELAY_MEMORY) {
            Ok(p) => {
                *lock(&self.backoff) = (0, None);
                Ok(p)
            }
            Err(e) => {
                let mut b = lock(&self.backoff);
                b.0 += 1;
                let wait = FIRST_BACKOFF
                    .saturating_mul(1 << b.0.saturating_sub(1).min(10))
                    .min(MAX_BACKOFF);
                b.1 = Some(Instant::now() + wait);
                tracing::warn!("cannot start a relay worker (next try in {wait:?}): {e}");
                Err(format!("cannot start a relay worker: {e}"))
            }
        }
    }

    /// Decodes a relay request's bytes in a decoder worker (an idle one, or a new one). Blocking.
    pub fn decode(self: &Arc<Self>, bytes: &[u8]) -> Result<Request, String> {
        let idle = {
            let mut decoders = lock(&self.decoders);
            decoders.retain_mut(Proc::running);
            decoders.pop()
        };
        let proc = match idle {
            Some(p) => p,
            None => self.start()?,
        };
        let mut session = Session { proc: Some(proc) };
        let request = session.decode(bytes);
        if let Some(proc) = session.proc.take() {
            let mut decoders = lock(&self.decoders);
            if decoders.len() < DECODERS {
                decoders.push(proc);
            }
        }
        request
    }

    /// A worker for one upload: a spare (another starts in its place), or a new one. Blocking.
    pub fn session(self: &Arc<Self>) -> Result<Session, String> {
        // A spare that ended while it waited (killed, or out of memory) is dropped.
        let spare = {
            let mut spares = lock(&self.spares);
            spares.retain_mut(Proc::running);
            spares.pop()
        };
        self.refill();
        let proc = match spare {
            Some(p) => p,
            None => self.start()?,
        };
        Ok(Session { proc: Some(proc) })
    }
}

/// One request's worker; stopped when dropped. Blocking calls.
pub struct Session {
    proc: Option<Proc>,
}

impl Session {
    /// Sends `msg` and returns the answer; a worker that fails is stopped, and so is the session.
    fn call(&mut self, msg: &ToWorker) -> Result<FromWorker, String> {
        let proc = self
            .proc
            .as_mut()
            .ok_or("the relay worker failed earlier in this request")?;
        match proc.call(msg, Instant::now() + CALL_DEADLINE, &mut |_| false) {
            Ok(FromWorker::Failed(f)) => Err(f.detail),
            Ok(answer) => Ok(answer),
            Err(e) => {
                self.proc = None;
                tracing::warn!("a relay worker failed and was stopped: {e}");
                Err(format!("the relay worker failed ({e}); it was stopped"))
            }
        }
    }

    /// Decodes a relay request's bytes in the worker.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Request, String> {
        let msg = ToWorker::Decode {
            request: ByteBuf::from(bytes.to_vec()),
        };
        match self.call(&msg)? {
            FromWorker::Request(RelayRequest::Get(cid)) => ContentId::from_bytes(&cid)
                .map(Request::Get)
                .map_err(|e| format!("the relay worker sent a bad id: {e}")),
            FromWorker::Request(RelayRequest::Put(name)) => Ok(Request::Put { name }),
            FromWorker::Request(RelayRequest::Infer(job)) => Ok(Request::Infer(job.into_vec())),
            _ => Err(self.unexpected("a request")),
        }
    }

    /// Encodes one chunk of an upload (1 ..= `CHUNK_SIZE` bytes) in the worker. The block is
    /// not checked here: `Store::put_encoded` checks it against its id and the chunk's length.
    pub fn encode(&mut self, chunk: Vec<u8>) -> Result<EncodedChunk, String> {
        let raw_len = chunk.len() as u64;
        let msg = ToWorker::Encode {
            chunk: ByteBuf::from(chunk),
        };
        match self.call(&msg)? {
            FromWorker::Block { cid, block } => Ok(EncodedChunk {
                cid: ContentId::from_bytes(&cid)
                    .map_err(|e| format!("the relay worker sent a bad id: {e}"))?,
                block: block.into_vec(),
                raw_len,
            }),
            _ => Err(self.unexpected("a block")),
        }
    }

    /// A worker that answers out of turn is stopped.
    fn unexpected(&mut self, wanted: &str) -> String {
        self.proc = None;
        format!("the relay worker answered with something else than {wanted}; it was stopped")
    }
}
