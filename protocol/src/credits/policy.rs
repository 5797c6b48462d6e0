//! Charge only under contention (spec: `spec/credits.md`, "Order of service"): an idle node
//! serves every request as it comes; a busy one queues them and serves the highest priority (the
//! requester's credit, [`Decision`](super::Decision)) first, in arrival order among equals. The
//! queue is bounded: over it, the lowest priority (the latest among equals) is dropped.
//!
//! Replica placement follows credit too ([`replica_quota`]): what one origin may hold on a node
//! grows with its balance there, within a bound.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use super::ledger::{Decision, LAST};
use super::rates::RateCard;

/// Most a replica quota grows with credit: this many times the base quota.
pub const MAX_QUOTA_GROWTH: u64 = 4;

/// What an origin whose balance with this node is `balance` nc may hold here under its leases:
/// the `base` quota, plus the bytes its credit is worth as egress at this node's `rates` (an
/// origin that delivered N bytes more than it took may keep N more bytes here), at most
/// [`MAX_QUOTA_GROWTH`] × `base` and never past the `offer` (nor below `base`). An origin in
/// debt, or without history, keeps the base quota: credit raises the quota, debt does not cut it.
pub fn replica_quota(base: u64, offer: u64, balance: i64, rates: &RateCard) -> u64 {
    let cap = base.saturating_mul(MAX_QUOTA_GROWTH).min(offer).max(base);
    let Ok(credit) = u64::try_from(balance) else {
        return base;
    };
    let extra = match rates.egress_per_gib {
        0 => u64::MAX,
        per_gib => {
            let bytes = u128::from(credit) * (1u128 << 30) / u128::from(per_gib);
            u64::try_from(bytes).unwrap_or(u64::MAX)
        }
    };
    base.saturating_add(extra).min(cap)
}

/// A bounded priority queue of requests waiting for a worker.
#[derive(Debug)]
pub struct ServiceQueue<T> {
    items: BTreeMap<(Reverse<i64>, u64), T>,
    arrivals: u64,
    capacity: usize,
}

impl<T> ServiceQueue<T> {
    /// An empty queue of at most `capacity` items (at least 1).
    pub fn new(capacity: usize) -> Self {
        ServiceQueue {
            items: BTreeMap::new(),
            arrivals: 0,
            capacity: capacity.max(1),
        }
    }

    /// Queues `item` at `priority`; returns the item dropped to make room (possibly `item`
    /// itself, when everything queued ranks above it).
    pub fn push(&mut self, priority: i64, item: T) -> Option<T> {
        self.arrivals += 1;
        self.items.insert((Reverse(priority), self.arrivals), item);
        if self.items.len() > self.capacity {
            return self.items.pop_last().map(|(_, v)| v);
        }
        None
    }

    /// The next item to serve: highest priority, earliest arrival.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_first().map(|(_, v)| v)
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// What a job asking a [`SlotGate`] for a slot gets.
#[derive(Debug, PartialEq, Eq)]
pub enum SlotAnswer<T> {
    /// A slot is its own now; [`SlotGate::release`] gives it back.
    Granted(T),
    /// It waits for a slot, in order of standing; `dropped` is a waiting job pushed out by it
    /// (the lowest standing, possibly itself), to be told the operator is busy.
    Queued {
        /// The job pushed out, if any.
        dropped: Option<T>,
    },
    /// Refused for credit: every slot is taken and its debt is past 125 % of its threshold (or
    /// it is refused for refused receipts).
    Refused {
        /// The job.
        item: T,
        /// When it may ask again, ms.
        until_ms: u64,
        /// Why.
        reason: &'static str,
    },
}

/// Job slots of an inference operator, charged only under contention: while a slot is free and
/// nobody waits, a job takes it whoever sends it; when every slot is taken, jobs wait in a
/// bounded queue in order of their requester's standing ([`Decision`]), and requesters past
/// 125 % of their threshold are refused.
#[derive(Debug)]
pub struct SlotGate<T> {
    slots: usize,
    taken: usize,
    waiting: ServiceQueue<T>,
}

impl<T> SlotGate<T> {
    /// `slots` slots (at least 1), and at most `queue` jobs waiting (at least 1).
    pub fn new(slots: usize, queue: usize) -> Self {
        SlotGate {
            slots: slots.max(1),
            taken: 0,
            waiting: ServiceQueue::new(queue),
        }
    }

    /// Whether a new job would wait: every slot taken, or others waiting already.
    pub fn busy(&self) -> bool {
        self.taken >= self.slots || !self.waiting.is_empty()
    }

    /// A job asks for a slot; `standing` (the requester's credit decision) is asked only when
    /// the gate is [`busy`](Self::busy).
    pub fn ask(&mut self, item: T, standing: impl FnOnce() -> Decision) -> SlotAnswer<T> {
        if !self.busy() {
            self.taken += 1;
            return SlotAnswer::Granted(item);
        }
        let priority = match standing() {
            Decision::Serve { priority } => priority,
            Decision::Last => LAST,
            Decision::Refuse { until_ms, reason } => {
                return SlotAnswer::Refused {
                    item,
                    until_ms,
                    reason,
                };
            }
        };
        SlotAnswer::Queued {
            dropped: self.waiting.push(priority, item),
        }
    }

    /// A slot is given back: the waiting job of highest standing takes it (returned), or it
    /// is free. A returned job that is gone (it stopped waiting) is given back in turn.
    pub fn release(&mut self) -> Option<T> {
        let next = self.waiting.pop();
        if next.is_none() {
            self.taken = self.taken.saturating_sub(1);
        }
        next
    }

    /// Slots taken.
    pub fn taken(&self) -> usize {
        self.taken
    }

    /// Jobs waiting.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// A relay hop's circuits under contention (spec: `spec/credits.md`, "Relay work").
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayLimits {
    /// Circuits carried before the hop is busy: below it every circuit is carried, whoever
    /// opens it.
    pub busy_circuits: usize,
    /// Circuits carried at most.
    pub max_circuits: usize,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            busy_circuits: 384,
            max_circuits: 512,
        }
    }
}

/// What a previous hop asking a busy relay for a circuit gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CircuitAnswer {
    /// The circuit is carried.
    Carry,
    /// Refused now; it may ask again at `until_ms` (or once the hop is idle).
    Refused {
        /// When it may ask again, ms.
        until_ms: u64,
        /// Why.
        reason: &'static str,
        /// Whether for the peer's credit (else only because every slot is taken): what the hop
        /// tells the client (`DESTROY` credit or busy).
        credit: bool,
    },
}

/// Whether a hop carrying `carried` circuits takes a new one from a previous hop. Idle (below
/// [`RelayLimits::busy_circuits`]): yes, standing not even asked. Busy: in order of standing
/// ([`Decision`]): a peer in standing is carried up to the maximum; one served last only into
/// the lower half of the slots left, the upper half being kept for peers in better standing; one
/// past 125 % of its threshold (or refused for its receipts) is refused.
pub fn admit_circuit(
    limits: &RelayLimits,
    carried: usize,
    now_ms: u64,
    standing: impl FnOnce() -> Decision,
) -> CircuitAnswer {
    if carried < limits.busy_circuits {
        return CircuitAnswer::Carry;
    }
    if carried >= limits.max_circuits {
        return CircuitAnswer::Refused {
            until_ms: now_ms,
            reason: "every circuit slot is taken",
            credit: false,
        };
    }
    match standing() {
        Decision::Serve { .. } => CircuitAnswer::Carry,
        Decision::Last => {
            let spare = limits.max_circuits.saturating_sub(limits.busy_circuits);
            if carried < limits.busy_circuits + spare / 2 {
                CircuitAnswer::Carry
            } else {
                CircuitAnswer::Refused {
                    until_ms: now_ms,
                    reason: "past its threshold, and the circuits left are kept for peers in better standing",
                    credit: true,
                }
            }
        }
        Decision::Refuse { until_ms, reason } => CircuitAnswer::Refused {
            until_ms,
            reason,
            credit: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuits_are_carried_for_all_until_busy_then_by_standing() {
        let limits = RelayLimits {
            busy_circuits: 4,
            max_circuits: 8,
        };
        let never = || -> Decision { panic!("credit asked of an idle hop") };
        // Idle: carried, whatever the standing.
        for carried in 0..4 {
            assert_eq!(
                admit_circuit(&limits, carried, 5, never),
                CircuitAnswer::Carry
            );
        }
        let serve = || Decision::Serve { priority: -3 };
        let refuse = || Decision::Refuse {
            until_ms: 99,
            reason: "its debt is past 125 % of its threshold",
        };
        // Busy: a peer in standing up to the maximum, a served-last one into the lower half of
        // the spare slots only, one past 125 % never.
        for carried in 4..8 {
            assert_eq!(
                admit_circuit(&limits, carried, 5, serve),
                CircuitAnswer::Carry
            );
            assert!(matches!(
                admit_circuit(&limits, carried, 5, refuse),
                CircuitAnswer::Refused { until_ms: 99, reason, credit: true } if reason.contains("125 %")
            ));
            let last = admit_circuit(&limits, carried, 5, || Decision::Last);
            assert_eq!(
                last == CircuitAnswer::Carry,
                carried < 6,
                "{carried}: {last:?}"
            );
        }
        // Full: nobody.
        assert!(matches!(
            admit_circuit(&limits, 8, 5, serve),
            CircuitAnswer::Refused {
                until_ms: 5,
                credit: false,
                ..
            }
        ));
    }

    #[test]
    fn the_replica_quota_grows_with_credit_within_its_bounds() {
        const MIB: u64 = 1 << 20;
        let rates = RateCard::default();
        let base = 4 * MIB;
        let offer = 1 << 30;
        // No credit, or debt: the base quota, never less.
        assert_eq!(replica_quota(base, offer, 0, &rates), base);
        assert_eq!(replica_quota(base, offer, -1_000_000_000, &rates), base);
        assert_eq!(replica_quota(base, offer, i64::MIN, &rates), base);
        // 8 MiB of egress credit (1 credit a GiB): 8 MiB more.
        let eight_mib = i64::try_from(rates.bytes(8 * MIB)).unwrap();
        assert_eq!(replica_quota(base, offer, eight_mib, &rates), 12 * MIB);
        // Monotone in the balance, and bounded: 4 × base, the offer, whichever is lower.
        let mut last = 0;
        for b in (0..64).map(|i| i * 1_000_000) {
            let q = replica_quota(base, offer, b, &rates);
            assert!(q >= last && q <= MAX_QUOTA_GROWTH * base, "{b}: {q}");
            last = q;
        }
        assert_eq!(replica_quota(base, offer, i64::MAX, &rates), 16 * MIB);
        assert_eq!(replica_quota(base, 10 * MIB, i64::MAX, &rates), 10 * MIB);
        // A base above the offer (configured so) stays the base.
        assert_eq!(replica_quota(base, MIB, i64::MAX, &rates), base);
        // A free rate card: any credit reaches the cap.
        let free = RateCard {
            egress_per_gib: 0,
            ..rates
        };
        assert_eq!(replica_quota(base, offer, 1, &free), 16 * MIB);
    }

    #[test]
    fn slots_are_free_for_all_until_taken_then_go_by_standing() {
        let mut gate = SlotGate::new(1, 2);
        let never = || -> Decision { panic!("credit asked of an idle gate") };
        // Idle: the first job takes the slot, whatever its standing (not even asked).
        assert_eq!(gate.ask("debtor-1", never), SlotAnswer::Granted("debtor-1"));
        assert!(gate.busy());
        // Busy: a debtor waits behind a contributor; one past 125 % is refused.
        let serve = |priority| move || Decision::Serve { priority };
        assert_eq!(
            gate.ask("debtor-2", serve(-5)),
            SlotAnswer::Queued { dropped: None }
        );
        assert_eq!(
            gate.ask("contributor", serve(10)),
            SlotAnswer::Queued { dropped: None }
        );
        let refuse = || Decision::Refuse {
            until_ms: 99,
            reason: "its debt is past 125 % of its threshold",
        };
        assert!(matches!(
            gate.ask("past-125", refuse),
            SlotAnswer::Refused {
                item: "past-125",
                until_ms: 99,
                ..
            }
        ));
        // The queue is full: the lowest standing is pushed out (here the newcomer itself).
        assert_eq!(
            gate.ask("last", || Decision::Last),
            SlotAnswer::Queued {
                dropped: Some("last")
            }
        );
        assert_eq!((gate.taken(), gate.waiting()), (1, 2));
        // Each release hands the slot on, highest standing first, then frees it.
        assert_eq!(gate.release(), Some("contributor"));
        assert_eq!(gate.release(), Some("debtor-2"));
        assert_eq!((gate.taken(), gate.waiting()), (1, 0));
        assert_eq!(gate.release(), None);
        assert_eq!(gate.taken(), 0);
        assert!(!gate.busy());
        assert_eq!(gate.release(), None);
        assert_eq!(gate.taken(), 0);
    }

    #[test]
    fn highest_priority_first_then_arrival_order() {
        let mut q = ServiceQueue::new(10);
        q.push(0, "a");
        q.push(5, "b");
        q.push(0, "c");
        q.push(-3, "d");
        q.push(5, "e");
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(order, ["b", "e", "a", "c", "d"]);
    }

    #[test]
    fn a_full_queue_drops_the_lowest() {
        let mut q = ServiceQueue::new(2);
        assert_eq!(q.push(1, "a"), None);
        assert_eq!(q.push(2, "b"), None);
        assert_eq!(q.push(0, "c"), Some("c"));
        assert_eq!(q.push(3, "d"), Some("a"));
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(), Some("d"));
        assert_eq!(q.pop(), Some("b"));
        assert!(q.is_empty());
    }
}
