//! The emulated switch's I/O: one TAP device per port (each later moved into a node's or a home
//! router's namespace), a reader task per port that asks [`Switch`] where and when each frame
//! goes, and a writer task per port that writes it out then. The kernel has no `netem` here, so
//! the links are shaped in this process instead of with `tc`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, bail};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::link::{LinkShape, Switch};

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// Frames waiting in one port's writer queue at most (past that, tail drop).
const PORT_QUEUE: usize = 8192;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens a TAP device named `name` (no packet-info header) in this process's namespace.
#[allow(unsafe_code)]
pub(super) fn open_tap(name: &str) -> anyhow::Result<OwnedFd> {
    if name.len() >= libc::IFNAMSIZ {
        bail!("interface name {name:?} is too long");
    }
    // SAFETY: open(2) on a constant C string; the fd is owned below.
    let fd = unsafe {
        libc::open(
            c"/dev/net/tun".as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("opening /dev/net/tun");
    }
    // SAFETY: fd was just opened and is owned by nothing else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes one ifreq, which `req` is (same layout).
    if unsafe { libc::ioctl(owned.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("creating TAP {name}"));
    }
    Ok(owned)
}

#[allow(unsafe_code)]
fn read_frame(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: buf is valid for buf.len() bytes.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[allow(unsafe_code)]
fn write_frame(fd: &OwnedFd, frame: &[u8]) -> std::io::Result<usize> {
    // SAFETY: frame is valid for frame.len() bytes.
    let n = unsafe { libc::write(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[allow(unsafe_code)]
fn register(fd: OwnedFd) -> anyhow::Result<Arc<AsyncFd<OwnedFd>>> {
    // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open (and is not reused)
    // for as long as it is registered.
    let afd = unsafe { AsyncFd::register(fd) }
        .map_err(|e| anyhow::anyhow!("registering a TAP device: {e}"))?;
    Ok(Arc::new(afd))
}

/// Runs the switch over these TAP devices until the returned set is dropped or aborted.
pub(super) fn run_switch(taps: Vec<OwnedFd>, shape: LinkShape) -> anyhow::Result<JoinSet<()>> {
    let seed = u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15;
    let switch = Arc::new(Mutex::new(Switch::new(
        shape,
        taps.len(),
        seed,
        Instant::now(),
    )));
    let fds: Vec<Arc<AsyncFd<OwnedFd>>> = taps
        .into_iter()
        .map(register)
        .collect::<anyhow::Result<_>>()?;
    let mut queues = Vec::new();
    let mut set = JoinSet::new();
    for fd in &fds {
        let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(PORT_QUEUE);
        queues.push(tx);
        let fd = fd.clone();
        set.spawn(async move {
            while let Some((at, frame)) = rx.recv().await {
                tokio::time::sleep_until(at.into()).await;
                loop {
                    let Ok(mut guard) = fd.writable().await else {
                        return;
                    };
                    match guard.try_io(|inner| write_frame(inner.get_ref(), &frame)) {
                        Ok(_) => break, // written, or refused (the interface is down): gone
                        Err(_would_block) => continue,
                    }
                }
            }
        });
    }
    for (port, fd) in fds.into_iter().enumerate() {
        let switch = switch.clone();
        let queues = queues.clone();
        set.spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok(mut guard) = fd.readable().await else {
                    return;
                };
                let n = match guard.try_io(|inner| read_frame(inner.get_ref(), &mut buf)) {
                    Ok(Ok(n)) => n,
                    Ok(Err(_)) => {
                        // The interface is down (EIO) for a moment: nothing to forward.
                        drop(guard);
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        continue;
                    }
                    Err(_would_block) => continue,
                };
                let frame = &buf[..n];
                // One lock around deciding and queueing keeps each port's deliveries in order.
                let Ok(mut sw) = switch.lock() else { return };
                for (to, at) in sw.forward(port, frame, Instant::now()) {
                    if queues[to].try_send((at, frame.to_vec())).is_err() {
                        sw.dropped += 1;
                    }
                }
            }
        });
    }
    Ok(set)
}
