//! The sandboxed worker process: where the node runs work on hostile input (model files and
//! the jobs on them; the onion relay runner's requests and uploads), out of its own address space and with no authority (spec/worker.md).
//!
//! ```text
//!  node ──(socketpair: wire frames)──► warren __worker model MEMORY   (one per loaded model)
//!   │ stdin = the model file, opened and hash-named by the node     confine(): rlimits,
//!   │                                                                no_new_privs, Landlock,
//!   └─ pool::Models: deadline, kill, backoff, restart               seccomp; then jobs
//! ```
//!
//! | module      | holds                                                             |
//! |-------------|-------------------------------------------------------------------|
//! | [`wire`]    | the pipe's framing and messages (sans-I/O codec)                  |
//! | [`confine`] | rlimits, Landlock and the seccomp allowlist; the probes           |
//! | [`child`]   | the worker process's main loop (`warren __worker`)                |
//! | [`pool`]    | the node's side: one worker per model, restarts with backoff      |
//! | [`relay`]   | the node's side of the relay workers (the onion runner's work)    |
//! | [`relay_child`] | the relay worker: request decoding, upload encoding           |

pub mod child;
pub mod confine;
pub mod pool;
pub mod relay;
pub mod relay_child;
pub mod wire;

pub use pool::{Models, Settings, preflight};
