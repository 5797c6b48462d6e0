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
