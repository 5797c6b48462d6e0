//! The relay's per-circuit and per-previous-hop limits ([`warren_protocol::onion::quota`]), as a
//! handle each circuit's runners share.

use std::sync::{Arc, Mutex};

use warren_protocol::onion::quota::{CircuitUse, Quota, QuotaLimits};

use crate::clock::unix_now_ms;

/// One circuit's share of the relay's quota: its own use, and the table of previous hops.
#[derive(Clone, Debug)]
pub(crate) struct CircuitLimits {
    table: Arc<Mutex<Quota>>,
    prev: Vec<u8>,
    used: Arc<Mutex<CircuitUse>>,
}

impl CircuitLimits {
    /// A fresh circuit from the previous hop `prev` (its peer id bytes), counted in `table`.
    pub(crate) fn new(table: Arc<Mutex<Quota>>, prev: Vec<u8>) -> Self {
        Self {
            table,
            prev,
            used: Arc::default(),
        }
    }

    fn with<T>(
        &self,
        f: impl FnOnce(
            &mut Quota,
            &[u8],
            &mut CircuitUse,
        ) -> Result<T, warren_protocol::onion::OnionError>,
    ) -> Result<T, String> {
        let mut table = self
            .table
            .lock()
            .map_err(|_| "relay quota poisoned".to_owned())?;
        let mut used = self
            .used
            .lock()
            .map_err(|_| "relay quota poisoned".to_owned())?;
        f(&mut table, &self.prev, &mut used).map_err(|e| e.to_string())
    }

    /// A new runner request on this circuit: counted, or refused with the limit's name.
    pub(crate) fn begin(&self) -> Result<(), String> {
        self.with(|q, prev, used| q.begin(prev, used, unix_now_ms()))
    }

    /// `n` answer bytes on this circuit: counted, or refused with the limit's name.
    pub(crate) fn bytes(&self, n: usize) -> Result<(), String> {
        self.with(|q, prev, used| q.bytes(prev, used, n as u64, unix_now_ms()))
    }
}

/// A relay's table of previous hops under `limits`.
pub(crate) fn table(limits: QuotaLimits) -> Arc<Mutex<Quota>> {
    Arc::new(Mutex::new(Quota::new(limits)))
}
