//! Replicas as leases (spec: `spec/storage.md`, "Leases and quotas"): what a holder does with a
//! placement ticket, and what one origin may place on it.
//!
//! A block is held for the mesh only under a lease: the [`PlacementTicket`] of the origin that
//! put its file (forwarded by repairers), which fixes the RF the holder keeps and when the lease
//! ends. Rules ([`decide`]):
//!
//! - a ticket that does not verify (signature, expired, a lease longer than 7 days) is refused;
//! - no lease yet, or the current one expired: the ticket's origin takes the block, if the bytes
//!   it already has here plus this block stay within its quota (else refused, over quota);
//! - a live lease of the same origin: renewed by a ticket that ends no earlier (the origin may
//!   change the RF); an older ticket (a replay) changes nothing;
//! - a live lease of another origin: unchanged (the block is held; nobody but its origin can
//!   lower or raise its RF or extend it).
//!
//! A push without a ticket is refused: nothing is kept for the mesh on a peer's word alone.
//! Sans-I/O: the store ([`crate::Store::hold_leased`]) applies the decision in one transaction.

use warren_protocol::ticket::PlacementTicket;

/// Default share of the offer one origin may fill with its leases: a quarter.
pub const DEFAULT_QUOTA_DIVISOR: u64 = 4;

/// A lease as the holder keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The origin's Ed25519 public key.
    pub origin: [u8; 32],
    /// The RF the origin placed the block with.
    pub rf: u8,
    /// When the lease ends, Unix seconds.
    pub expires: u64,
}

impl Lease {
    /// The lease a ticket grants.
    pub fn of(ticket: &PlacementTicket) -> Self {
        Self {
            origin: ticket.origin,
            rf: ticket.rf,
            expires: ticket.expires,
        }
    }

    /// Whether it has ended at `now_secs`.
    pub fn expired(&self, now_secs: u64) -> bool {
        self.expires <= now_secs
    }
}

/// What to do with a ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A new lease for the ticket's origin: charge the block to its quota (and release the
    /// expired lease of `replaces`, if any).
    Take {
        /// The expired lease it replaces.
        replaces: Option<Lease>,
    },
    /// The same origin's lease runs to the ticket's expiry at the ticket's RF.
    Renew,
    /// Nothing changes: the block stays held under its current lease.
    Keep(&'static str),
    /// Refused: not held (or its lease unchanged), with why.
    Refuse(String),
}

/// Decides what a ticket for a block of `block_len` bytes does, given the block's `current`
/// lease, what the ticket's origin already holds here (`origin_used` bytes) and its `quota`.
pub fn decide(
    current: Option<&Lease>,
    ticket: &PlacementTicket,
    block_len: u64,
    origin_used: u64,
    quota: u64,
    now_secs: u64,
) -> Decision {
    if let Err(e) = ticket.verify(now_secs) {
        return Decision::Refuse(format!("bad placement ticket: {e}"));
    }
    match current {
        Some(c) if !c.expired(now_secs) && c.origin == ticket.origin => {
            if ticket.expires >= c.expires {
                Decision::Renew
            } else {
                Decision::Keep("an older ticket of the same origin changes nothing")
            }
        }
        Some(c) if !c.expired(now_secs) => {
            Decision::Keep("held under another origin's lease, unchanged")
        }
        _ => {
            if origin_used.saturating_add(block_len) > quota {
                return Decision::Refuse(format!(
                    "over quota: this origin holds {origin_used} bytes here, {block_len} more \
                     would pass its quota of {quota}"
                ));
            }
            Decision::Take {
                replaces: current.copied(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;
    use warren_protocol::{Codec, ContentId, keypair_from_secret};

    fn ticket(origin: u8, rf: u8, expires: u64) -> PlacementTicket {
        let block = ContentId::of_block(Codec::Raw, b"b");
        PlacementTicket::sign(&keypair_from_secret([origin; 32]), block, rf, expires).unwrap()
    }

    #[test]
    fn a_fresh_block_is_taken_within_quota_and_refused_over_it() {
        let t = ticket(1, 3, 100);
        assert_eq!(
            decide(None, &t, 10, 90, 100, 50),
            Decision::Take { replaces: None }
        );
        let Decision::Refuse(why) = decide(None, &t, 11, 90, 100, 50) else {
            panic!("over quota")
        };
        assert!(why.contains("over quota"), "{why}");
    }

    #[test]
    fn bad_or_expired_tickets_are_refused() {
        let mut forged = ticket(1, 3, 100);
        forged.rf = 0;
        assert!(matches!(
            decide(None, &forged, 1, 0, 100, 50),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            decide(None, &ticket(1, 3, 100), 1, 0, 100, 100),
            Decision::Refuse(_)
        ));
    }

    #[test]
    fn only_the_origin_renews_and_never_backwards() {
        let lease = Lease::of(&ticket(1, 3, 100));
        assert_eq!(
            decide(Some(&lease), &ticket(1, 4, 200), 1, 0, 0, 50),
            Decision::Renew
        );
        assert!(matches!(
            decide(Some(&lease), &ticket(1, 0, 90), 1, 0, 100, 50),
            Decision::Keep(_)
        ));
        // Another origin cannot lower or raise a live lease, quota or not.
        for rf in [0, 16] {
            assert!(matches!(
                decide(Some(&lease), &ticket(2, rf, 200), 1, 0, 100, 50),
                Decision::Keep(_)
            ));
        }
        // After it ends, another origin may take the block (and pays for it).
        assert_eq!(
            decide(Some(&lease), &ticket(2, 2, 300), 1, 0, 100, 150),
            Decision::Take {
                replaces: Some(lease)
            }
        );
    }
}
