//! The runner's sandbox: Linux Landlock applied to the runner's own thread.
//!
//! [`enter`] restricts the calling thread (and anything it would spawn) for good: every file-system
//! access right Landlock knows is handled and none is granted, so the thread cannot open, read,
//! write or list any file (the node's keys, its API token and address, its store); TCP `bind` and
//! `connect` are handled and none granted (ABI ≥ 4), so it cannot reach the control API or anything
//! else; abstract unix sockets and signals are scoped (ABI ≥ 6). `PR_SET_NO_NEW_PRIVS` is set first,
//! as Landlock requires of unprivileged callers.
//!
//! Landlock is per thread: the node's other threads (the swarm, the store's blocking pool) keep
//! their rights, and the runner reaches the mesh only through [`super::runner::MeshAccess`], whose
//! work runs on them. The runner shares the node's address space, so this contains logic bugs and
//! hostile input driving the runner's own I/O, not a memory-corruption exploit; a separate process
//! is the next step for work that parses hostile input at length: models and their jobs already
//! run in one (`crate::worker`, spec/worker.md), and a node whose worker cannot be sandboxed does
//! not offer the relay role at all.

use std::io;

/// The Landlock ABI version the kernel offers (0 when it has none).
pub fn abi() -> u32 {
    crate::worker::confine::landlock_abi()
}

/// Restricts the calling thread as described in the module doc; returns the ABI used. Fails (and
/// leaves the thread as it was) when the kernel has no Landlock.
pub fn enter() -> Result<u32, io::Error> {
    crate::worker::confine::landlock()
}

/// Runs `f` on a new thread named `name` that first enters the sandbox; `f` gets the ABI used,
/// or why the sandbox could not be entered (then it must refuse to work).
pub fn spawn<T: Send + 'static>(
    name: String,
    f: impl FnOnce(Result<u32, io::Error>) -> T + Send + 'static,
) -> io::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || f(enter()))
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    use super::*;

    /// What a thread can do: read `path`, connect to `addr`.
    fn probe(path: &std::path::Path, addr: std::net::SocketAddr) -> (bool, bool) {
        let read = std::fs::File::open(path)
            .and_then(|mut f| {
                let mut s = Vec::new();
                f.read_to_end(&mut s).map(|_| s)
            })
            .is_ok();
        let connect = TcpStream::connect(addr).is_ok();
        (read, connect)
    }

    #[test]
    fn a_runner_thread_can_neither_read_the_key_file_nor_call_the_api() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("identity.key");
        std::fs::write(&key, b"secret").unwrap();
        let api = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = api.local_addr().unwrap();
        // Outside the sandbox both work: the probe can tell.
        assert_eq!(probe(&key, addr), (true, true));
        let k = key.clone();
        let inside = spawn("runner-test".into(), move |abi| {
            (abi.unwrap(), probe(&k, addr))
        })
        .unwrap()
        .join()
        .unwrap();
        assert!(
            inside.0 >= 4,
            "landlock ABI {} has no network rules",
            inside.0
        );
        assert_eq!(
            inside.1,
            (false, false),
            "the sandbox let the thread through"
        );
        // The rest of the process is untouched.
        assert_eq!(probe(&key, addr), (true, true));
    }
}
