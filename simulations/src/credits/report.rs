//! The credits scenario's rows, CSV and summary.

use super::Class;

/// One class in one round.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Round, from 1.
    pub round: u32,
    /// The class.
    pub class: Class,
    /// Its peers.
    pub peers: u64,
    /// Blocks asked for.
    pub asked: u64,
    /// Blocks served.
    pub served: u64,
    /// Requests refused by the ledger (debt, window, strikes).
    pub refused: u64,
    /// Mean balance of the class's peers with their holders, nc.
    pub mean_balance_nc: f64,
    /// Receipts signed and countersigned in the round (all classes).
    pub receipts: u64,
    /// The best balance any Sybil holds with an honest holder, nc.
    pub sybil_best_nc: i64,
    /// Mean balance a Sybil holds with the member that signed it receipts, nc.
    pub sybil_in_group_nc: f64,
    /// Collusion receipts shown to honest holders and refused, in the round.
    pub sybil_refused: u64,
}

impl Row {
    /// Share of the blocks asked for that were served.
    pub fn share(&self) -> f64 {
        self.served as f64 / self.asked.max(1) as f64
    }
}

/// The rows as CSV.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "round,class,peers,asked,served,refused,share,mean_balance_nc,receipts,sybil_best_nc,sybil_in_group_nc,sybil_refused\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{:.4},{:.0},{},{},{:.0},{}\n",
            r.round,
            r.class.name(),
            r.peers,
            r.asked,
            r.served,
            r.refused,
            r.share(),
            r.mean_balance_nc,
            r.receipts,
            r.sybil_best_nc,
            r.sybil_in_group_nc,
            r.sybil_refused
        ));
    }
    out
}

/// Share of service of `class` over all rounds.
pub fn summary(rows: &[Row], class: Class) -> f64 {
    let (asked, served) = rows
        .iter()
        .filter(|r| r.class == class)
        .fold((0, 0), |(a, s), r| (a + r.asked, s + r.served));
    served as f64 / asked.max(1) as f64
}
