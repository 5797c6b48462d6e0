//! The rate card (spec: `spec/credits.md`, "Rate card"): what one node makes of the quantities in
//! a receipt, in nano-credits (nc; 1 credit = 10⁹ nc, fine enough that seconds of storage of a small file count). Local policy: each node prices with
//! its own card, and publishes it in its node record as its price.

use serde::{Deserialize, Serialize};

use super::receipt::Quantities;

/// Nano-credits in one credit.
pub const NANOS: u64 = 1_000_000_000;
const GIB: u128 = 1 << 30;
const KIB_PER_GIB: u128 = 1 << 20;

/// Prices in nano-credits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateCard {
    /// nc per GiB of verified egress (default 1 credit).
    pub egress_per_gib: u64,
    /// nc per GiB-hour of audited storage (default 10⁶: 1 credit ≈ 1,000 GiB-hours).
    pub storage_per_gib_hour: u64,
    /// nc per PFLOP of verified inference, a token costing 2 × parameters FLOPs (default 1
    /// credit per PFLOP: 1,000 tokens of a 7B model ≈ 0.014 credit).
    pub inference_per_pflop: u64,
    /// nc per GiB of onion cells a hop delivered back on a circuit (relay work; default 1
    /// credit, as egress). Absent from a config: the default.
    #[serde(default = "default_relay_per_gib")]
    pub relay_per_gib: u64,
}

fn default_relay_per_gib() -> u64 {
    NANOS
}

impl Default for RateCard {
    fn default() -> Self {
        RateCard {
            egress_per_gib: NANOS,
            storage_per_gib_hour: 1_000_000,
            inference_per_pflop: NANOS,
            relay_per_gib: NANOS,
        }
    }
}

impl RateCard {
    /// The nc value of `bytes` of egress.
    pub fn bytes(&self, bytes: u64) -> u64 {
        sat(u128::from(bytes) * u128::from(self.egress_per_gib) / GIB)
    }

    /// The nc value of `bytes` of relayed onion cells.
    pub fn relay(&self, bytes: u64) -> u64 {
        sat(u128::from(bytes) * u128::from(self.relay_per_gib) / GIB)
    }

    /// The price shown in the node record for storage: micro-credits per GiB-month (730 hours).
    pub fn storage_per_gib_month_micros(&self) -> u64 {
        self.storage_per_gib_hour.saturating_mul(730) / 1000
    }

    /// The price shown in the node record for compute: micro-credits per 1,000 tokens of a
    /// reference 7B-parameter model (2 × 7·10⁹ FLOPs a token).
    pub fn per_1k_tokens_micros(&self) -> u64 {
        let flops: u128 = 2 * 7_000_000_000 * 1000;
        let nanos = flops * u128::from(self.inference_per_pflop) / 1_000_000_000_000_000;
        sat(nanos / 1000)
    }

    /// The nc value of `q`, saturating.
    pub fn value(&self, q: &Quantities) -> u64 {
        let storage = u128::from(q.storage_kib_secs) * u128::from(self.storage_per_gib_hour)
            / (KIB_PER_GIB * 3600);
        let flops: u128 = q
            .inference
            .iter()
            .map(|w| 2 * u128::from(w.params_m) * 1_000_000 * u128::from(w.tokens()))
            .sum();
        let inference = flops * u128::from(self.inference_per_pflop) / 1_000_000_000_000_000;
        sat(u128::from(self.bytes(q.bytes))
            + u128::from(self.relay(q.relay_bytes))
            + storage
            + inference)
    }
}

fn sat(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_card_prices_as_the_spec_says() {
        let card = RateCard::default();
        assert_eq!(card.bytes(1 << 30), NANOS);
        let storage = Quantities {
            storage_kib_secs: (1 << 20) * 3600 * 1000,
            ..Quantities::default()
        };
        assert_eq!(card.value(&storage), NANOS);
        let mut q = Quantities::default();
        q.add_inference("llama-7b", 7_000, 600, 400);
        // 2 × 7e9 × 1000 = 1.4e13 FLOPs = 0.014 PFLOP = 14,000,000 nc.
        assert_eq!(card.value(&q), 14_000_000);
        assert_eq!(card.per_1k_tokens_micros(), 14_000);
        assert_eq!(card.storage_per_gib_month_micros(), 730_000);
        // Relay work is priced as egress by default.
        assert_eq!(card.relay(1 << 30), NANOS);
        let relay = Quantities {
            relay_bytes: 1 << 30,
            ..Quantities::default()
        };
        assert_eq!(card.value(&relay), NANOS);
    }
}
