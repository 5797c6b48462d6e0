//! Ledger tests: the state machine driven with the time passed in.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use proptest::prelude::*;

use super::ledger::{CreditPolicy, Decision};
use super::receipt::{FraudProof, Quantities, Receipt, ed25519_key};
use super::wire::Reply;
use super::{CreditError, Ledger};
use crate::{Keypair, PeerId};

fn key(i: u8) -> Keypair {
    crate::keypair_from_secret([i; 32])
}

fn id(k: &Keypair) -> PeerId {
    k.public().to_peer_id()
}

fn pk(k: &Keypair) -> [u8; 32] {
    ed25519_key(k).unwrap()
}

fn bytes(n: u64) -> Quantities {
    Quantities {
        bytes: n,
        ..Quantities::default()
    }
}

fn ledger(k: &Keypair) -> Ledger {
    Ledger::new(pk(k), CreditPolicy::default())
}

#[test]
fn a_receipt_round_trips_and_any_change_breaks_it() {
    let (a, b) = (key(1), key(2));
    let mut r = Receipt::issue(&a, pk(&b), 1, 1_000, bytes(5)).unwrap();
    assert_eq!(Receipt::decode(&r.encode().unwrap()).unwrap(), r);
    r.countersign(&b).unwrap();
    assert_eq!(Receipt::decode(&r.encode().unwrap()).unwrap(), r);
    assert!(r.countersign(&a).is_err(), "only the payee countersigns");
    let mut forged = r.clone();
    forged.work.bytes = 6;
    assert_eq!(forged.verify().unwrap_err().kind(), "Forged");
    let big = vec![0u8; super::receipt::MAX_RECEIPT_SIZE + 1];
    assert_eq!(Receipt::decode(&big).unwrap_err().kind(), "TooLarge");
}

#[test]
fn a_gossiped_fraud_proof_round_trips_and_lowers_the_signers_standing_once() {
    let (payer, payee, other) = (key(1), key(2), key(3));
    let r1 = Receipt::issue(&payer, pk(&payee), 1, 10, bytes(1000)).unwrap();
    let r2 = Receipt::issue(&payer, pk(&payee), 1, 10, bytes(2000)).unwrap();
    let proof = FraudProof::new(r1.clone(), r2.clone()).unwrap();
    let wire = proof.encode().unwrap();
    assert_eq!(FraudProof::decode(&wire).unwrap(), proof);
    // Not a proof: one receipt twice, two numbers, a forged second signature, too large.
    let same = FraudProof {
        first: r1.clone(),
        second: r1.clone(),
    };
    assert_eq!(
        FraudProof::decode(&same.encode().unwrap())
            .unwrap_err()
            .kind(),
        "Invalid"
    );
    let r3 = Receipt::issue(&payer, pk(&payee), 2, 10, bytes(2000)).unwrap();
    let numbers = FraudProof {
        first: r1.clone(),
        second: r3,
    };
    assert!(FraudProof::decode(&numbers.encode().unwrap()).is_err());
    let mut forged = FraudProof {
        first: r1.clone(),
        second: r2.clone(),
    };
    forged.second.work.bytes = 3000;
    assert!(FraudProof::decode(&forged.encode().unwrap()).is_err());
    let big = vec![0u8; super::receipt::MAX_FRAUD_PROOF_SIZE + 1];
    assert_eq!(FraudProof::decode(&big).unwrap_err().kind(), "TooLarge");

    // A third node that never dealt with the payer: a fraud mark and five strikes, once.
    let mut l = ledger(&other);
    let p = id(&payer);
    assert_eq!(l.fraud_proven(&forged, 1_000), None);
    assert!(l.account(&p).is_none());
    assert_eq!(l.fraud_proven(&proof, 1_000), Some(p));
    let s = l.standing(&p, 1_000).unwrap();
    assert!(s.fraud && s.refused, "{s:?}");
    assert_eq!(s.strikes, super::ledger::FRAUD_STRIKES);
    assert_eq!(l.fraud_proven(&proof, 2_000), None);
    assert_eq!(l.standing(&p, 2_000).unwrap().strikes, 5);
    assert!(matches!(l.admit(p, 2_000), Decision::Refuse { .. }));
    // The payer itself is not struck by a proof against itself.
    let mut own = ledger(&payer);
    assert_eq!(own.fraud_proven(&proof, 1_000), None);
}

#[test]
fn payee_accepts_monotone_receipts_and_refuses_replays_rollbacks_and_conflicts() {
    let (payer, payee) = (key(1), key(2));
    let mut l = ledger(&payee);
    let p = id(&payer);
    l.served(p, 3000, 0);
    let r1 = Receipt::issue(&payer, pk(&payee), 1, 10, bytes(1000)).unwrap();
    let signed = l.accept(&payee, p, r1.clone(), 10_000).unwrap();
    assert!(signed.payee_sig.is_some());
    assert_eq!(l.account(&p).unwrap().unreceipted_bytes, 2000);

    // Replayed: the same receipt again, or an older one.
    let e = l.accept(&payee, p, r1.clone(), 11_000).unwrap_err();
    assert!(
        matches!(e, CreditError::Replayed { seq: 1, latest: 1 }),
        "{e}"
    );
    // Rolled back: a newer number with fewer bytes.
    let r2 = Receipt::issue(&payer, pk(&payee), 2, 11, bytes(999)).unwrap();
    assert_eq!(
        l.accept(&payee, p, r2, 11_000).unwrap_err().kind(),
        "RolledBack"
    );
    // Conflicting: number 1 again with other contents: a fraud proof.
    let r1b = Receipt::issue(&payer, pk(&payee), 1, 10, bytes(2000)).unwrap();
    assert_eq!(
        l.accept(&payee, p, r1b.clone(), 11_000).unwrap_err().kind(),
        "Conflicting"
    );
    let proof = l.account(&p).unwrap().fraud.clone().unwrap();
    assert!(proof.check());
    assert_eq!(proof.culprit(), Some(p));
    assert!(FraudProof::new(r1.clone(), r1.clone()).is_none());
    // Forged: signed by someone else in the payer's name, or sent by another peer.
    let mut forged = Receipt::issue(&payer, pk(&payee), 3, 12, bytes(5000)).unwrap();
    forged.work.bytes = 9000;
    assert_eq!(
        l.accept(&payee, p, forged, 12_000).unwrap_err().kind(),
        "Forged"
    );
    let other = Receipt::issue(&key(3), pk(&payee), 1, 12, bytes(1)).unwrap();
    assert_eq!(
        l.accept(&payee, p, other, 12_000).unwrap_err().kind(),
        "Forged"
    );
    // Misaddressed.
    let elsewhere = Receipt::issue(&payer, pk(&key(4)), 3, 12, bytes(5000)).unwrap();
    assert_eq!(
        l.accept(&payee, p, elsewhere, 12_000).unwrap_err().kind(),
        "Invalid"
    );

    // Every refusal is a strike, and strikes refuse the peer for a while.
    let st = l.standing(&p, 12_000).unwrap();
    assert_eq!(st.strikes, 1 + 1 + 5 + 1 + 1 + 1);
    assert!(st.fraud && st.refused);
    assert!(matches!(l.admit(p, 12_000), Decision::Refuse { .. }));
}

#[test]
fn the_payer_issues_cumulative_receipts_and_keeps_the_countersigned_copy() {
    let (payer, payee) = (key(1), key(2));
    let (mut lp, mut le) = (ledger(&payer), ledger(&payee));
    let (p, e) = (id(&payer), id(&payee));
    lp.received(e, 1, 1_000);
    assert!(lp.receipt_due(&e, true) && !lp.receipt_due(&e, false));
    lp.received(e, (700 << 20) - 1, 1_000);
    assert!(lp.receipt_due(&e, false), "settle early at half the window");
    let r1 = lp.issue(&payer, e, pk(&payee), 2_000).unwrap();
    assert_eq!((r1.seq, r1.work.bytes), (1, 700 << 20));
    assert!(!lp.receipt_due(&e, true));
    lp.received(e, 300 << 20, 3_000);
    lp.audit_passed(e, [1; 32], 10 * 1024, 3_000);
    lp.audit_passed(e, [1; 32], 10 * 1024, 13_000);
    let r2 = lp.issue(&payer, e, pk(&payee), 14_000).unwrap();
    assert_eq!(
        (r2.seq, r2.work.bytes, r2.work.storage_kib_secs),
        (2, 1000 << 20, 100)
    );
    le.served(p, 1000 << 20, 0);
    le.accept(&payee, p, r1, 14_000).unwrap();
    let back = le.accept(&payee, p, r2, 14_000).unwrap();
    lp.countersigned(e, back).unwrap();
    assert!(
        lp.account(&e)
            .unwrap()
            .mine
            .as_ref()
            .unwrap()
            .payee_sig
            .is_some()
    );
    // Both sides see the same balance, opposite signs.
    let (sp, se) = (
        lp.standing(&e, 14_000).unwrap(),
        le.standing(&p, 14_000).unwrap(),
    );
    assert_eq!(sp.balance, -se.balance);
    assert!(sp.balance > 0);
}

#[test]
fn a_free_rider_is_served_last_then_refused_and_a_contributor_first() {
    let policy = CreditPolicy {
        allowance_per_sec: 0,
        newcomer_cap_per_sec: 0,
        ..CreditPolicy::default()
    };
    let me = key(9);
    let mut l = Ledger::new(pk(&me), policy);
    let (rider, helper) = (id(&key(1)), id(&key(2)));
    l.received(helper, 10 << 20, 0);
    let Decision::Serve { priority: good } = l.admit(helper, 0) else {
        panic!("a contributor is served")
    };
    assert_eq!(l.admit(rider, 0), Decision::Serve { priority: 0 });
    assert!(good > 0);
    // 64,000,000 nc of threshold ≈ 61 MiB; past it served last, past 125 % refused.
    l.served(rider, 66 << 20, 0);
    // Keep the window open: the rider acknowledged what it got.
    let ack = Receipt::issue(&key(1), pk(&me), 1, 0, bytes(66 << 20)).unwrap();
    l.accept(&me, rider, ack, 0).unwrap();
    assert_eq!(l.admit(rider, 0), Decision::Last);
    l.served(rider, 30 << 20, 0);
    // A relay's circuit check refuses it too, but sets no refusal deadline; a request does.
    let past =
        |d: &Decision| matches!(d, Decision::Refuse { reason, .. } if reason.contains("125 %"));
    assert!(past(&l.judge(rider, 0)));
    assert_eq!(l.account(&rider).unwrap().refused_until_ms, 0);
    assert!(past(&l.admit(rider, 0)));
    assert!(l.account(&rider).unwrap().refused_until_ms > 0);
    assert!(matches!(l.admit(rider, 0), Decision::Refuse { until_ms, .. } if until_ms > 0));
}

#[test]
fn the_window_closes_until_a_receipt_arrives() {
    let (me, peer) = (key(9), key(1));
    let mut l = ledger(&me);
    let p = id(&peer);
    let window = l.policy().window_bytes;
    l.served(p, window, 0);
    assert!(matches!(l.admit(p, 0), Decision::Refuse { .. }));
    let r = Receipt::issue(&peer, pk(&me), 1, 0, bytes(window)).unwrap();
    l.accept(&me, p, r, 0).unwrap();
    assert!(matches!(l.admit(p, 0), Decision::Serve { .. }));
}

#[test]
fn the_threshold_grows_as_a_peer_repays() {
    let me = key(9);
    let mut l = ledger(&me);
    let p = id(&key(1));
    l.served(p, 1, 0);
    let before = l.standing(&p, 0).unwrap().threshold;
    l.received(p, 1 << 30, 0);
    let after = l.standing(&p, 0).unwrap().threshold;
    assert_eq!(before, l.policy().base_threshold);
    assert_eq!(after, before + 500_000_000);
    l.received(p, 1 << 40, 0);
    assert_eq!(
        l.standing(&p, 0).unwrap().threshold,
        l.policy().max_threshold
    );
}

#[test]
fn newcomers_share_one_allowance() {
    let policy = CreditPolicy {
        allowance_per_sec: 1_000,
        newcomer_cap_per_sec: 1_500,
        ..CreditPolicy::default()
    };
    let mut l = Ledger::new(pk(&key(9)), policy);
    let peers: Vec<PeerId> = (1..=10).map(|i| id(&key(i))).collect();
    for p in &peers {
        l.served(*p, 1 << 30, 0);
        l.admit(*p, 0);
    }
    // One second later: each newcomer could have 1,000 µc alone; together they get 1,500.
    let total: u64 = peers
        .iter()
        .map(|p| {
            l.admit(*p, 1_000);
            l.standing(p, 1_000).unwrap().forgiven
        })
        .sum();
    assert_eq!(total, 1_500);
}

#[test]
fn a_reply_round_trips_and_refuses_an_uncountersigned_receipt() {
    let r = Receipt::issue(&key(1), pk(&key(2)), 1, 0, bytes(1)).unwrap();
    let bad = Reply::Accepted(Box::new(r.clone())).encode().unwrap();
    assert_eq!(Reply::decode(&bad).unwrap_err().kind(), "Invalid");
    let mut ok = r;
    ok.countersign(&key(2)).unwrap();
    let reply = Reply::Accepted(Box::new(ok));
    assert_eq!(Reply::decode(&reply.encode().unwrap()).unwrap(), reply);
    let refused = Reply::refused(&"x".repeat(1000));
    assert_eq!(Reply::decode(&refused.encode().unwrap()).unwrap(), refused);
}

#[test]
fn relay_work_is_receipted_by_the_previous_hop_and_a_full_relay_window_refuses_only_circuits() {
    // X carries a circuit of P (its previous hop) and delivers cells back to it.
    let (x, p) = (key(9), key(1));
    let (xi, pi) = (id(&x), id(&p));
    let (mut lx, mut lp) = (ledger(&x), ledger(&p));
    let cells = 512 * 1000;
    lx.relay_served(pi, cells, 0);
    lp.relay_received(xi, cells, 0);
    // X's view: P owes it the cells (spent by P), not yet acknowledged.
    let before = lx.standing(&pi, 0).unwrap();
    assert_eq!(before.delivered_to_peer.relay_bytes, cells);
    assert_eq!(before.spent_by_peer, lx.policy().rates.relay(cells));
    assert!(before.balance < 0);
    assert!(
        !lp.receipt_due(&xi, false),
        "half the relay window is not owed yet"
    );
    assert!(lp.receipt_due(&xi, true));
    // P receipts them, block bytes' way; X accepts and countersigns: the window is closed.
    let r = lp.issue(&p, xi, pk(&x), 0).unwrap();
    assert_eq!((r.work.relay_bytes, r.work.bytes), (cells, 0));
    let back = lx.accept(&x, pi, r, 0).unwrap();
    assert!(back.payee_sig.is_some());
    lp.countersigned(xi, back).unwrap();
    assert_eq!(lx.account(&pi).unwrap().unreceipted_relay, 0);
    let after = lx.standing(&pi, 0).unwrap();
    assert_eq!(after.delivered_to_peer.relay_bytes, cells);
    assert_eq!(
        after.balance, before.balance,
        "a receipt acknowledges, it does not repay"
    );
    // P's view: X earned credit with P.
    let xs = lp.standing(&xi, 0).unwrap();
    assert_eq!(xs.delivered_by_peer.relay_bytes, cells);
    assert!(xs.balance > 0);
    // A full relay window: P's circuits are refused, its block requests are not.
    let window = lx.policy().relay_window_bytes;
    lx.relay_served(pi, window, 0);
    assert!(matches!(
        lx.judge(pi, 0),
        Decision::Refuse { reason, .. } if reason.contains("relay window")
    ));
    let policy = CreditPolicy {
        base_threshold: u64::MAX / 4,
        max_threshold: u64::MAX / 4,
        ..CreditPolicy::default()
    };
    let mut rich = Ledger::new(pk(&x), policy);
    rich.relay_served(pi, window, 0);
    assert!(matches!(rich.admit(pi, 0), Decision::Serve { .. }));
    assert!(matches!(rich.judge(pi, 0), Decision::Refuse { .. }));
    // Half a window owed: P settles early.
    lp.relay_received(xi, window / 2, 0);
    assert!(lp.receipt_due(&xi, false));
    let r = lp.issue(&p, xi, pk(&x), 0).unwrap();
    rich.accept(&x, pi, r, 0).unwrap();
    assert_eq!(
        rich.account(&pi).unwrap().unreceipted_relay,
        window / 2 - cells
    );
    assert!(matches!(rich.judge(pi, 0), Decision::Serve { .. }));
    // A lower relay counter is a rollback.
    let mut less = lp.account(&xi).unwrap().mine.clone().unwrap().work;
    less.relay_bytes -= 1;
    let rolled = Receipt::issue(&p, pk(&x), 3, 0, less).unwrap();
    assert_eq!(
        rich.accept(&x, pi, rolled, 0).unwrap_err().kind(),
        "RolledBack"
    );
}

#[test]
fn verified_embeddings_are_owed_as_embedded_tokens_priced_per_flop() {
    let (me, op) = (key(9), key(1));
    let mut l = ledger(&me);
    let o = id(&op);
    // 1 000 tokens of a 22M-parameter model: 2 × 22e6 × 1e3 = 4.4e10 FLOPs = 44 000 nc.
    l.embedding_verified(o, "minilm", 22, 600, 0);
    l.embedding_verified(o, "minilm", 22, 400, 0);
    l.inference_verified(o, "minilm", 22, 0, 0, 0);
    let s = l.standing(&o, 0).unwrap();
    let w = &s.delivered_by_peer.inference[0];
    assert_eq!((w.embedded, w.prefill, w.generated), (1_000, 0, 0));
    assert_eq!(s.earned_by_peer, 44_000);
    let r = l.issue(&me, o, pk(&op), 0).unwrap();
    assert_eq!(r.work.inference[0].embedded, 1_000);
    // Owed work is merged into the next receipt, embedded tokens included.
    l.embedding_verified(o, "minilm", 22, 5, 0);
    assert_eq!(
        l.standing(&o, 0).unwrap().delivered_by_peer.inference[0].embedded,
        1_005
    );
}

#[test]
fn relay_bytes_are_omitted_when_zero_and_a_spelled_out_zero_is_refused() {
    let (a, b) = (key(1), key(2));
    let plain = Receipt::issue(&a, pk(&b), 1, 0, bytes(5)).unwrap();
    let wire = plain.encode().unwrap();
    assert!(!wire.windows(11).any(|w| w == b"relay_bytes"));
    let relayed = Receipt::issue(
        &a,
        pk(&b),
        1,
        0,
        Quantities {
            relay_bytes: 1,
            ..bytes(5)
        },
    )
    .unwrap();
    let mut wire = relayed.encode().unwrap();
    assert_eq!(Receipt::decode(&wire).unwrap(), relayed);
    // `relay_bytes: 1` spelled `relay_bytes: 0`: not the canonical form of that receipt.
    let at = wire.windows(11).position(|w| w == b"relay_bytes").unwrap() + 11;
    assert_eq!(wire[at], 0x01);
    wire[at] = 0x00;
    assert_eq!(Receipt::decode(&wire).unwrap_err().kind(), "NonCanonical");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Receipts issued by an honest payer over any sequence of deliveries are all accepted, in
    /// order; any earlier one sent again afterwards is refused.
    #[test]
    fn honest_receipts_are_monotone_and_accepted(steps in proptest::collection::vec((0u64..1<<20, 0u64..1<<16, any::<bool>()), 1..12)) {
        let (payer, payee) = (key(1), key(2));
        let (mut lp, mut le) = (ledger(&payer), ledger(&payee));
        let (p, e) = (id(&payer), id(&payee));
        let mut issued: Vec<Receipt> = Vec::new();
        let mut t = 1_000u64;
        for (b, s, model) in steps {
            t += 1_000;
            lp.received(e, b, t);
            lp.audit_passed(e, [7; 32], s, t);
            if model {
                lp.inference_verified(e, "m", 7_000, b, s, t);
                lp.embedding_verified(e, "e", 22, s, t);
            } else {
                lp.relay_received(e, s, t);
            }
            let r = lp.issue(&payer, e, pk(&payee), t).unwrap();
            if let Some(last) = issued.last() {
                prop_assert!(r.work.covers(&last.work) && r.seq == last.seq + 1);
            }
            issued.push(r.clone());
            let back = le.accept(&payee, p, r, t).unwrap();
            lp.countersigned(e, back).unwrap();
        }
        for old in &issued {
            let err = le.accept(&payee, p, old.clone(), t).unwrap_err();
            prop_assert!(matches!(err, CreditError::Replayed { .. }), "{}", err);
        }
    }

    /// Decoding never panics and accepts only what re-encodes to the same bytes.
    #[test]
    fn fraud_proof_decode_is_total(data in proptest::collection::vec(any::<u8>(), 0..1200)) {
        let _ = FraudProof::decode(&data);
    }

    #[test]
    fn receipt_decode_is_total(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(r) = Receipt::decode(&data) {
            prop_assert_eq!(r.encode().unwrap(), data);
        }
    }
}

#[test]
fn a_flood_of_fresh_peers_does_not_evict_a_struck_one() {
    let me = key(2);
    let mut l = Ledger::new(
        pk(&me),
        CreditPolicy {
            max_peers: 2,
            ..CreditPolicy::default()
        },
    );
    let cheat = id(&key(1));
    let err = CreditError::Replayed { seq: 1, latest: 1 };
    l.receipt_refused(cheat, &err, 1_000);
    for i in 10..20u8 {
        l.admit(id(&key(i)), 2_000 + u64::from(i));
    }
    assert_eq!(l.account(&cheat).map(|a| a.strikes), Some(1));
    assert_eq!(l.peers().count(), 2);
}
