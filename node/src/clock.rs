//! The wall clock, read once at the edge and passed into the pure crates as `now`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, the clock the protocol crate is driven with.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch, the clock reputation and audits are driven with.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// CPU time (user and system) this process has used, milliseconds; `None` where
/// `/proc/self/stat` cannot be read (not Linux).
pub fn process_cpu_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces, closed by the last ')'); utime and
    // stime are fields 14 and 15, in clock ticks of 1/100 s (USER_HZ, fixed by the kernel ABI).
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 10)
}

#[cfg(test)]
mod tests {
    #[test]
    fn process_cpu_time_is_read_and_grows() {
        let Some(a) = super::process_cpu_ms() else {
            return; // not Linux
        };
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let b = super::process_cpu_ms().unwrap_or(0);
        assert!(b >= a + 100, "{a} -> {b}");
    }
}
