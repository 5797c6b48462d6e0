//! EigenTrust over this node's local view: who is worth listening to.
//!
//! The trust graph has one node per tracked peer, plus this node ("me") and its bootstrap peers
//! (the pre-trusted set). An edge `i → j` carries `i`'s local trust in `j`,
//! `l = max(0, good − 2·(failed + mismatched + invalid))` of `i`'s tally of `j`: this node's
//! first-hand tally for `i = me`, a stored report for any other `i`. Rows are normalised to sum 1
//! (`c_ij = l_ij / Σ_k l_ik`).
//!
//! Only *vetted* peers receive trust: the bootstrap peers, and peers whose pooled evidence
//! (first-hand plus second-hand weighted by the standings of the previous computation, as in their
//! score) has local trust `good − 2·(bad + invalid)` of at least `vetting_threshold` (0.5: one
//! audit passed first-hand, or one reported by a peer of full standing, net of failures). A peer
//! that fails a good share of its audits soon drops out, and so stops passing trust on to the
//! identities it vouches for. (Storj vets nodes with 100 audits; a higher threshold here slows the
//! growth of a new node's trusted set far more than it slows colluders — see
//! `simulations/README.md`.)
//!
//! Trust is the visit frequency of a bounded random walk: it starts from the pre-trusted
//! distribution `p` (½ on me and ½ shared by the bootstrap peers, all on me without any), follows
//! local-trust edges, goes on with probability `1 − a` at each step (`a` = `damping`, 0.15) and
//! takes at most `max_depth` (5) steps:
//!
//! ```text
//! x_0 = p      x_{k+1}[j] = Σ_i γ_i · x_k[i] · c_ij      t ∝ Σ_{k=0..max_depth} (1 − a)^k · x_k
//! ```
//!
//! normalised so that `Σ t = 1`. `γ_i = 1 / (number of peers holding walk mass at that step in
//! i's /16)` (1 for me, the bootstrap peers and peers of unknown network), so a /16 full of
//! identities passes on as much as one of them; the walk stops at peers with no positive opinion.
//! Trust therefore reaches at most `max_depth` hops from the pre-trusted set and only through vetted
//! peers, and the trust a colluding group holds is bounded by what flows into it along edges from
//! honest peers, however many identities share it. (A truncated series rather than EigenTrust's
//! power iteration `t ← (1 − a)·Cᵀt + a·p`: after a fixed small number of steps the power iteration
//! still oscillates on bipartite-like graphs, the series does not.)

use std::collections::{BTreeMap, BTreeSet};

use super::{Config, ledger::Ledger};
use crate::PeerId;

/// The result of [`compute`].
#[derive(Clone, Debug, Default)]
pub(crate) struct TrustVector {
    /// Trust of every peer other than me that has any, by peer.
    pub(crate) values: BTreeMap<PeerId, f64>,
    /// My own trust.
    pub(crate) me: f64,
    /// The reference trust `t*`: the mass-weighted median of the trust of the peers that are
    /// neither me nor pre-trusted (0 if none have any).
    pub(crate) reference: f64,
}

/// Runs the bounded EigenTrust iteration described in the module documentation.
pub(crate) fn compute(
    me: &PeerId,
    seeds: &BTreeSet<PeerId>,
    ledgers: &BTreeMap<PeerId, Ledger>,
    networks: &BTreeMap<PeerId, [u8; 2]>,
    config: &Config,
    now_ms: u64,
) -> TrustVector {
    // Nodes: me at 0, then the bootstrap and tracked peers in peer id order.
    let others: BTreeSet<&PeerId> = seeds
        .iter()
        .chain(ledgers.keys())
        .filter(|p| *p != me)
        .collect();
    let peers: Vec<&PeerId> = std::iter::once(me).chain(others).collect();
    let index: BTreeMap<&PeerId, usize> = peers.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let n = peers.len();

    // Edges (i, j, l) with l > 0 into vetted peers, in row order.
    let hl = config.half_life_ms;
    let mut edges: Vec<(usize, usize, f64)> = Vec::new();
    for (subject, ledger) in ledgers {
        let Some(&j) = index.get(subject) else {
            continue;
        };
        if !seeds.contains(subject)
            && ledger.pool(config, now_ms).tally.local_trust() < config.vetting_threshold
        {
            continue;
        }
        let l = ledger.first_hand.decayed(now_ms, hl).local_trust();
        if l > 0.0 {
            edges.push((0, j, l));
        }
        for r in &ledger.reports {
            if let Some(&i) = index.get(&r.observer) {
                let l = r.tally.decayed(now_ms, hl).local_trust();
                if l > 0.0 && i != j {
                    edges.push((i, j, l));
                }
            }
        }
    }
    edges.sort_unstable_by_key(|&(i, j, _)| (i, j));
    let mut row_sum = vec![0.0; n];
    let mut row_start = vec![0usize; n + 1];
    for &(i, _, l) in &edges {
        row_sum[i] += l;
        row_start[i + 1] += 1;
    }
    for i in 0..n {
        row_start[i + 1] += row_start[i];
    }

    // Pre-trusted distribution.
    let seed_count = seeds.iter().filter(|s| *s != me).count();
    let mut p = vec![0.0; n];
    if seed_count == 0 {
        p[0] = 1.0;
    } else {
        p[0] = 0.5;
        for s in seeds.iter().filter(|s| *s != me) {
            if let Some(&i) = index.get(s) {
                p[i] = 0.5 / seed_count as f64;
            }
        }
    }

    // /16 groups (None: not grouped).
    let group: Vec<Option<[u8; 2]>> = peers
        .iter()
        .enumerate()
        .map(|(i, peer)| {
            if i == 0 || seeds.contains(*peer) {
                None
            } else {
                networks.get(*peer).copied()
            }
        })
        .collect();

    // Truncated random walk: x_0 = p, x_{k+1} = x_k·(γ ∘ C), t = Σ_k (1 − a)^k x_k.
    let a = config.damping;
    let mut t = p.clone();
    let mut x = p;
    let mut keep = 1.0;
    for _ in 0..config.max_depth {
        let mut group_size: BTreeMap<[u8; 2], u32> = BTreeMap::new();
        for (i, g) in group.iter().enumerate() {
            if let Some(g) = g
                && x[i] > 0.0
            {
                *group_size.entry(*g).or_default() += 1;
            }
        }
        let mut next = vec![0.0; n];
        for i in 0..n {
            if x[i] <= 0.0 || row_sum[i] <= 0.0 {
                continue;
            }
            let gamma = group[i]
                .and_then(|g| group_size.get(&g))
                .map_or(1.0, |&size| 1.0 / f64::from(size.max(1)));
            let share = x[i] * gamma / row_sum[i];
            for &(_, j, l) in &edges[row_start[i]..row_start[i + 1]] {
                next[j] += share * l;
            }
        }
        keep *= 1.0 - a;
        for (tj, xj) in t.iter_mut().zip(&next) {
            *tj += keep * xj;
        }
        x = next;
    }
    let total: f64 = t.iter().sum();
    if total > 0.0 {
        for tj in &mut t {
            *tj /= total;
        }
    }

    let mut values = BTreeMap::new();
    let mut ordinary = Vec::new();
    for (i, peer) in peers.iter().enumerate().skip(1) {
        if t[i] > 0.0 {
            values.insert(**peer, t[i]);
            if !seeds.contains(*peer) {
                ordinary.push(t[i]);
            }
        }
    }
    TrustVector {
        values,
        me: t[0],
        reference: mass_median(ordinary),
    }
}

/// The largest `t*` such that the values `≥ t*` hold at least half of the sum: walking the values
/// from the largest down, the one at which the running sum first reaches half the total. Many
/// small values (identities that received a sliver of trust) barely move it; a count-based
/// median they would drag down to their own level.
pub(crate) fn mass_median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| b.total_cmp(a));
    let half = values.iter().sum::<f64>() / 2.0;
    let mut acc = 0.0;
    for v in &values {
        acc += v;
        if acc >= half {
            return *v;
        }
    }
    values.last().copied().unwrap_or(0.0)
}
