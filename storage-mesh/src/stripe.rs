//! When an erasure-coded stripe needs repair: lazy repair as Storj runs it, as a pure function.
//!
//! A stripe is `data` pieces plus `parity` pieces on distinct peers; any `data` of them rebuild
//! the stripe. Whole copies are repaired as soon as a holder is unreachable for a few minutes,
//! which on home nodes (hours online, hours offline) rebuilds copies that come back anyway. A
//! stripe tolerates `parity` missing pieces, so it waits: a holder offline for less than
//! [`StripePolicy::lazy_ms`] still counts, and nothing is rebuilt until the pieces that count fall
//! below [`StripePolicy::repair_at`]. Then one repairer fetches `data` pieces and rebuilds only
//! the pieces that no longer count.
//!
//! On home nodes about half the holders are online at any time, so a stripe below its threshold
//! often has fewer than `data` pieces online at once. [`assess_gathering`] lets the repairer
//! fetch the pieces that are online now, keep them, and rebuild once the pieces it holds and
//! those online reach `data` (holders come and go within hours), instead of waiting for `data`
//! holders to be online together while more of them depart.
//!
//! No clock and no I/O: the caller says how each piece's holder looks now ([`PieceState`]), and
//! gets a [`StripeVerdict`]. `simulations/` runs the same function at 10⁴ peers.

/// The shape of a stripe and when to repair it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StripePolicy {
    /// Pieces any of which rebuild the stripe (`k`).
    pub data: usize,
    /// Extra pieces (`m`): a stripe has `data + parity`.
    pub parity: usize,
    /// Rebuild when fewer pieces than this count (`data <= repair_at <= data + parity`).
    pub repair_at: usize,
    /// A holder offline for less than this still counts, milliseconds.
    pub lazy_ms: u64,
}

impl StripePolicy {
    /// Pieces in a whole stripe.
    pub fn pieces(&self) -> usize {
        self.data + self.parity
    }

    /// Stored bytes per byte of the file: `(data + parity) / data`.
    pub fn expansion(&self) -> f64 {
        self.pieces() as f64 / self.data.max(1) as f64
    }

    /// Whether the numbers make a stripe: at least one data piece, the threshold between `data`
    /// and the whole stripe.
    pub fn is_valid(&self) -> bool {
        self.data >= 1 && (self.data..=self.pieces()).contains(&self.repair_at)
    }
}

/// How a piece's holder looks to the stripe's repairer now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceState {
    /// Reachable (and its last audit passed).
    Online,
    /// Unreachable since this time (Unix ms).
    Offline {
        /// When it was last reachable.
        since_ms: u64,
    },
    /// Known to have lost the piece (a failed audit, or it said so).
    Gone,
}

/// What to do with a stripe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StripeVerdict {
    /// Enough pieces count: nothing to do.
    Healthy {
        /// Pieces that count (online, or offline for less than `lazy_ms`).
        counted: usize,
    },
    /// Rebuild these pieces (indices into the stripe) from `data` online ones.
    Repair {
        /// The pieces to rebuild and place anew.
        rebuild: Vec<usize>,
        /// Online pieces to fetch them from (the first `data` are enough).
        sources: Vec<usize>,
    },
    /// It should be repaired but fewer than `data` pieces are online now: try again later.
    Wait {
        /// Pieces online now.
        online: usize,
    },
    /// It should be repaired and fewer than `data` pieces are reachable now (held by the
    /// repairer or online): fetch these online pieces now, keep them, and try again later
    /// ([`assess_gathering`] only).
    Gather {
        /// Online pieces the repairer does not hold yet.
        fetch: Vec<usize>,
    },
}

/// The verdict for a stripe whose pieces look like `pieces` at `now_ms`.
pub fn assess(policy: &StripePolicy, pieces: &[PieceState], now_ms: u64) -> StripeVerdict {
    let counts = counts_at(policy, now_ms);
    let counted = pieces.iter().filter(|p| counts(p)).count();
    if counted >= policy.repair_at {
        return StripeVerdict::Healthy { counted };
    }
    let sources: Vec<usize> = pieces
        .iter()
        .enumerate()
        .filter(|(_, p)| **p == PieceState::Online)
        .map(|(i, _)| i)
        .collect();
    if sources.len() < policy.data {
        return StripeVerdict::Wait {
            online: sources.len(),
        };
    }
    StripeVerdict::Repair {
        rebuild: to_rebuild(policy, pieces, &counts),
        sources,
    }
}

/// [`assess`] for a repairer that already holds the pieces at the indices `held` (fetched on
/// earlier tries): below the threshold it rebuilds as soon as `held` and the online pieces reach
/// `data` (`sources` are then only the online pieces still to fetch, as many as are missing), and
/// otherwise asks for the online pieces it does not hold yet ([`StripeVerdict::Gather`]), or
/// waits when there are none.
pub fn assess_gathering(
    policy: &StripePolicy,
    pieces: &[PieceState],
    held: &[usize],
    now_ms: u64,
) -> StripeVerdict {
    let counts = counts_at(policy, now_ms);
    let counted = pieces.iter().filter(|p| counts(p)).count();
    if counted >= policy.repair_at {
        return StripeVerdict::Healthy { counted };
    }
    let held: Vec<usize> = {
        let mut h: Vec<usize> = held.iter().copied().filter(|&i| i < pieces.len()).collect();
        h.sort_unstable();
        h.dedup();
        h
    };
    let fetch: Vec<usize> = pieces
        .iter()
        .enumerate()
        .filter(|(i, p)| **p == PieceState::Online && held.binary_search(i).is_err())
        .map(|(i, _)| i)
        .collect();
    if held.len() + fetch.len() < policy.data {
        if fetch.is_empty() {
            return StripeVerdict::Wait { online: 0 };
        }
        return StripeVerdict::Gather { fetch };
    }
    let missing = policy.data.saturating_sub(held.len());
    StripeVerdict::Repair {
        rebuild: to_rebuild(policy, pieces, &counts),
        sources: fetch.into_iter().take(missing).collect(),
    }
}

/// Whether a piece in this state counts at `now_ms`: online, or offline for less than
/// `lazy_ms`.
fn counts_at(policy: &StripePolicy, now_ms: u64) -> impl Fn(&PieceState) -> bool + '_ {
    move |p: &PieceState| match *p {
        PieceState::Online => true,
        PieceState::Offline { since_ms } => now_ms.saturating_sub(since_ms) < policy.lazy_ms,
        PieceState::Gone => false,
    }
}

/// The pieces that no longer count, and the slots a stripe lost altogether.
fn to_rebuild(
    policy: &StripePolicy,
    pieces: &[PieceState],
    counts: &impl Fn(&PieceState) -> bool,
) -> Vec<usize> {
    let mut rebuild: Vec<usize> = pieces
        .iter()
        .enumerate()
        .filter(|(_, p)| !counts(p))
        .map(|(i, _)| i)
        .collect();
    // A stripe that lost slots altogether (fewer entries than pieces) gets them back too.
    rebuild.extend(pieces.len()..policy.pieces());
    rebuild
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;

    fn policy() -> StripePolicy {
        StripePolicy {
            data: 4,
            parity: 4,
            repair_at: 6,
            lazy_ms: 24 * HOUR,
        }
    }

    #[test]
    fn a_short_absence_counts_and_triggers_nothing() {
        let now = 100 * HOUR;
        let mut pieces = vec![PieceState::Online; 8];
        pieces[0] = PieceState::Offline {
            since_ms: now - HOUR,
        };
        pieces[1] = PieceState::Offline {
            since_ms: now - 2 * HOUR,
        };
        pieces[2] = PieceState::Offline {
            since_ms: now - 3 * HOUR,
        };
        assert_eq!(
            assess(&policy(), &pieces, now),
            StripeVerdict::Healthy { counted: 8 }
        );
    }

    #[test]
    fn below_the_threshold_only_the_pieces_that_no_longer_count_are_rebuilt() {
        let now = 100 * HOUR;
        let mut pieces = vec![PieceState::Online; 8];
        pieces[1] = PieceState::Gone;
        pieces[3] = PieceState::Offline {
            since_ms: now - 30 * HOUR,
        };
        pieces[5] = PieceState::Offline { since_ms: 0 };
        // Offline for an hour: counts, not rebuilt, not a source.
        pieces[6] = PieceState::Offline {
            since_ms: now - HOUR,
        };
        match assess(&policy(), &pieces, now) {
            StripeVerdict::Repair { rebuild, sources } => {
                assert_eq!(rebuild, vec![1, 3, 5]);
                assert_eq!(sources, vec![0, 2, 4, 7]);
            }
            v => panic!("{v:?}"),
        }
        // At the threshold exactly it waits.
        pieces[1] = PieceState::Online;
        assert_eq!(
            assess(&policy(), &pieces, now),
            StripeVerdict::Healthy { counted: 6 }
        );
    }

    #[test]
    fn with_fewer_than_data_online_it_waits() {
        let now = 100 * HOUR;
        let mut pieces = vec![PieceState::Gone; 8];
        pieces[0] = PieceState::Online;
        pieces[1] = PieceState::Online;
        pieces[2] = PieceState::Online;
        pieces[3] = PieceState::Offline {
            since_ms: now - HOUR,
        };
        assert_eq!(
            assess(&policy(), &pieces, now),
            StripeVerdict::Wait { online: 3 }
        );
    }

    #[test]
    fn a_gathering_repairer_keeps_what_it_fetched_and_rebuilds_once_it_has_data_pieces() {
        let now = 100 * HOUR;
        let gone_long = PieceState::Offline {
            since_ms: now - 30 * HOUR,
        };
        // 4 + 4 below the threshold of 6 (three lost), two online now: fetch them and keep them.
        let mut pieces = vec![gone_long; 8];
        pieces[0] = PieceState::Online;
        pieces[1] = PieceState::Online;
        pieces[2] = PieceState::Offline {
            since_ms: now - HOUR,
        };
        pieces[3] = PieceState::Offline {
            since_ms: now - HOUR,
        };
        pieces[4] = PieceState::Offline {
            since_ms: now - HOUR,
        };
        assert_eq!(
            assess_gathering(&policy(), &pieces, &[], now),
            StripeVerdict::Gather { fetch: vec![0, 1] }
        );
        // The plain policy just waits for four online at once.
        assert_eq!(
            assess(&policy(), &pieces, now),
            StripeVerdict::Wait { online: 2 }
        );
        // Nothing new online: wait.
        assert_eq!(
            assess_gathering(&policy(), &pieces, &[0, 1], now),
            StripeVerdict::Wait { online: 0 }
        );
        // Later 0 and 1 are away and 2, 3 are back: with the two held, that is four.
        pieces[0] = PieceState::Offline { since_ms: now };
        pieces[1] = PieceState::Offline { since_ms: now };
        pieces[2] = PieceState::Online;
        pieces[3] = PieceState::Online;
        match assess_gathering(&policy(), &pieces, &[0, 1], now + HOUR) {
            StripeVerdict::Repair { rebuild, sources } => {
                assert_eq!(sources, vec![2, 3]);
                assert_eq!(rebuild, vec![5, 6, 7]);
            }
            v => panic!("{v:?}"),
        }
        // Held indices out of range or repeated change nothing.
        assert_eq!(
            assess_gathering(&policy(), &pieces, &[0, 0, 1, 99], now + HOUR),
            assess_gathering(&policy(), &pieces, &[0, 1], now + HOUR)
        );
    }

    #[test]
    fn missing_slots_are_rebuilt_and_the_policy_checks_itself() {
        let pieces = vec![PieceState::Online; 5];
        match assess(&policy(), &pieces, 0) {
            StripeVerdict::Repair { rebuild, .. } => assert_eq!(rebuild, vec![5, 6, 7]),
            v => panic!("{v:?}"),
        }
        assert!(policy().is_valid());
        assert_eq!(policy().expansion(), 2.0);
        let bad = StripePolicy {
            repair_at: 3,
            ..policy()
        };
        assert!(!bad.is_valid());
    }
}
