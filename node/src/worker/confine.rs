//! How a worker process drops every authority before it reads hostile input (spec/worker.md).
//!
//! [`confine`] applies, in this order, to the whole process (the worker calls it while it has one
//! thread; threads made later inherit all of it):
//! 1. rlimits: address space (`RLIMIT_AS`) at what the process maps now plus the allowance it is
//!    given, no core dumps (`RLIMIT_CORE` 0), no file growth (`RLIMIT_FSIZE` 0), few descriptors;
//! 2. `PR_SET_NO_NEW_PRIVS`, then Landlock: every file-system right of the kernel's ABI handled
//!    and none granted (no open, read, write, list or exec of any path), TCP bind and connect
//!    handled and none granted (ABI ≥ 4, required), abstract unix sockets and signals scoped
//!    (ABI ≥ 6);
//! 3. a seccomp allowlist (seccompiler): memory, threads (`clone` with `CLONE_THREAD` only),
//!    futexes, time, reads and writes on descriptors it already holds; everything else — `socket`,
//!    `connect`, `open*`, `execve*`, `fork`, `ptrace`, … — fails with `EPERM` (`clone3` with
//!    `ENOSYS`, so threads fall back to `clone`).
//!
//! A kernel without Landlock ABI 4 or without seccomp fails [`confine`] with the reason, and the
//! worker then refuses all work. [`NO_SANDBOX_ENV`] simulates that (tests and documentation of the
//! refusal path only: it can only take the sandbox away, never grant anything).

use std::collections::BTreeMap;
use std::io;

/// Set (to anything) in a node's environment, its workers report that they cannot confine
/// themselves, as on a kernel without Landlock: the node then serves no inference and does not
/// offer the onion `relay` role. For tests of that refusal path.
pub const NO_SANDBOX_ENV: &str = "WARREN_SIMULATE_NO_SANDBOX";

/// Descriptors a confined worker may hold.
const MAX_FILES: u64 = 32;

/// `landlock_create_ruleset`, `landlock_restrict_self` (the generic syscall numbers).
const SYS_CREATE_RULESET: libc::c_long = 444;
const SYS_RESTRICT_SELF: libc::c_long = 446;
const CREATE_RULESET_VERSION: u32 = 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// The Landlock ABI version the kernel offers (0 when it has none).
#[allow(unsafe_code)]
pub fn landlock_abi() -> u32 {
    // SAFETY: querying the version takes no pointer (NULL, size 0) and only returns an integer.
    let v = unsafe {
        libc::syscall(
            SYS_CREATE_RULESET,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(v).unwrap_or(0)
}

/// Restricts the calling thread (and what it spawns later) with Landlock as the module doc
/// says; returns the ABI used. Fails, leaving the thread as it was, without Landlock.
#[allow(unsafe_code)]
pub fn landlock() -> Result<u32, io::Error> {
    let abi = landlock_abi();
    if abi == 0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel offers no Landlock",
        ));
    }
    // File-system rights by ABI: 13 in v1, REFER in v2, TRUNCATE in v3, IOCTL_DEV in v5.
    let fs_bits = match abi {
        1 => 13,
        2 => 14,
        3 | 4 => 15,
        _ => 16,
    };
    let attr = RulesetAttr {
        handled_access_fs: (1u64 << fs_bits) - 1,
        // BIND_TCP | CONNECT_TCP
        handled_access_net: if abi >= 4 { 0b11 } else { 0 },
        // ABSTRACT_UNIX_SOCKET | SIGNAL
        scoped: if abi >= 6 { 0b11 } else { 0 },
    };
    let size = if abi >= 6 {
        std::mem::size_of::<RulesetAttr>()
    } else if abi >= 4 {
        16
    } else {
        8
    };
    // SAFETY: `attr` is a live, properly laid out landlock_ruleset_attr of at least `size` bytes.
    let fd = unsafe { libc::syscall(SYS_CREATE_RULESET, &attr as *const RulesetAttr, size, 0u32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = fd as libc::c_int;
    // SAFETY: plain integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if r != 0 {
        let e = io::Error::last_os_error();
        // SAFETY: closing the descriptor this function opened.
        unsafe { libc::close(fd) };
        return Err(e);
    }
    // SAFETY: `fd` is the ruleset descriptor just created; flags must be 0.
    let r = unsafe { libc::syscall(SYS_RESTRICT_SELF, fd, 0u32) };
    let e = io::Error::last_os_error();
    // SAFETY: closing the descriptor this function opened.
    unsafe { libc::close(fd) };
    if r != 0 {
        return Err(e);
    }
    Ok(abi)
}

/// Bytes of address space the process maps now (from /proc, before Landlock closes it).
fn mapped_now() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmSize:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[allow(unsafe_code)]
fn set_limit(resource: libc::__rlimit_resource_t, value: u64, name: &str) -> Result<(), String> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: `lim` is a live rlimit; the call only reads it.
    if unsafe { libc::setrlimit(resource, &lim) } != 0 {
        return Err(format!("{name}: {}", io::Error::last_os_error()));
    }
    Ok(())
}

/// The rlimits: `memory` bytes of address space beyond what is mapped now, no cores, no file
/// growth, few descriptors.
fn rlimits(memory: u64) -> Result<(), String> {
    let base = mapped_now();
    set_limit(libc::RLIMIT_AS, base.saturating_add(memory), "RLIMIT_AS")?;
    set_limit(libc::RLIMIT_CORE, 0, "RLIMIT_CORE")?;
    set_limit(libc::RLIMIT_FSIZE, 0, "RLIMIT_FSIZE")?;
    set_limit(libc::RLIMIT_NOFILE, MAX_FILES, "RLIMIT_NOFILE")
}

/// System calls a confined worker may make (each with any arguments, except those given rules
/// in [`seccomp`]).
const ALLOWED: &[libc::c_long] = &[
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_pread64,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_lseek,
    libc::SYS_close,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_ppoll,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_tgkill,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_restart_syscall,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_getrandom,
    // Answered ENOSYS by the second filter (threads then use clone).
    libc::SYS_clone3,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_poll,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_arch_prctl,
];

fn seccomp() -> Result<(), String> {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op,
        SeccompCondition as Cond, SeccompFilter, SeccompRule, TargetArch,
    };
    let e = |e: seccompiler::BackendError| e.to_string();
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(e)?;
    let arg_is = |arg: u8, value: u64| -> Result<SeccompRule, String> {
        SeccompRule::new(vec![Cond::new(arg, Len::Qword, Op::Eq, value).map_err(e)?]).map_err(e)
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
    let thread = libc::CLONE_THREAD as u64;
    rules.insert(
        libc::SYS_clone,
        vec![
            SeccompRule::new(vec![
                Cond::new(0, Len::Qword, Op::MaskedEq(thread), thread).map_err(e)?,
            ])
            .map_err(e)?,
        ],
    );
    // Naming threads; nothing else of prctl.
    rules.insert(
        libc::SYS_prctl,
        vec![
            arg_is(0, libc::PR_SET_NAME as u64)?,
            arg_is(0, libc::PR_GET_NAME as u64)?,
        ],
    );
    // Reading limits (no new value).
    rules.insert(libc::SYS_prlimit64, vec![arg_is(2, 0)?]);
    let allow = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(e)?;
    let no_clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(e)?;
    let allow: BpfProgram = allow.try_into().map_err(e)?;
    let no_clone3: BpfProgram = no_clone3.try_into().map_err(e)?;
    // The second filter first: once the allowlist is on, installing a filter is denied. Of two
    // errno answers the newer filter's wins, so the allowlist lets clone3 through to this one.
    seccompiler::apply_filter(&no_clone3).map_err(|e| e.to_string())?;
    seccompiler::apply_filter(&allow).map_err(|e| e.to_string())
}

/// Confines the calling process as the module doc says, with `memory` bytes of address space
/// to spend; returns the Landlock ABI in force, or why it cannot be confined (then it must do
/// no work). Call it while the process has a single thread.
pub fn confine(memory: u64) -> Result<u32, String> {
    if std::env::var_os(NO_SANDBOX_ENV).is_some() {
        return Err(format!(
            "no sandbox (simulated: {NO_SANDBOX_ENV} is set in the node's environment)"
        ));
    }
    let abi = landlock_abi();
    if abi < 4 {
        return Err(format!(
            "the kernel offers Landlock ABI {abi}; the worker needs 4 or later (network rules)"
        ));
    }
    rlimits(memory)?;
    let abi = landlock().map_err(|e| format!("landlock: {e}"))?;
    seccomp().map_err(|e| format!("seccomp: {e}"))?;
    Ok(abi)
}

/// What a process can do, for the confinement check: each probe says `ok` or the error.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Probes {
    /// Opening and reading `file`.
    pub open: String,
    /// A TCP connection to `addr`.
    pub connect: String,
    /// Running `program`.
    pub exec: String,
    /// Making a new socket (a unix datagram socket: no address needed).
    pub socket: String,
}

impl Probes {
    /// Runs each probe.
    pub fn run(file: &std::path::Path, addr: &str, program: &str) -> Self {
        use std::io::Read;
        let say = |r: io::Result<()>| match r {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("denied: {e}"),
        };
        let open = say(std::fs::File::open(file).and_then(|mut f| {
            let mut s = Vec::new();
            f.read_to_end(&mut s).map(|_| ())
        }));
        let connect = say(std::net::TcpStream::connect(addr).map(|_| ()));
        let exec = say(std::process::Command::new(program)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .and_then(|s| {
                s.success()
                    .then_some(())
                    .ok_or_else(|| io::Error::other(format!("{s}")))
            }));
        let socket = say(std::os::unix::net::UnixDatagram::unbound().map(|_| ()));
        Self {
            open,
            connect,
            exec,
            socket,
        }
    }

    /// Whether every probe was denied.
    pub fn all_denied(&self) -> bool {
        [&self.open, &self.connect, &self.exec, &self.socket]
            .iter()
            .all(|p| p.starts_with("denied"))
    }
}
