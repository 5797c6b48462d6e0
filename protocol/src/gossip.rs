//! Which gossiped messages a node accepts (spec: `spec/network.md`, "Gossipsub topics";
//! `spec/reputation.md`, "Rate limit").
//!
//! gossipsub hands every message to the application before forwarding it; the application answers
//! *accept* (forward it and use it), *ignore* (drop it, no penalty) or *reject* (drop it and
//! penalise the peer that forwarded it). [`Filter::check`] gives that answer, as a [`Verdict`], for
//! the two topics warren uses:
//!
//! | topic | accepted | ignored | rejected |
//! |---|---|---|---|
//! | [`NODES_TOPIC`] | a signed node record that verifies and is signed by the message's author | a valid record of another network | anything else |
//! | [`REPUTATION_TOPIC`] | a signed observation that verifies and whose observer is the author, within the observer's [rate limit](crate::reputation::rate) | its observer has no standing here; over the limit, forwarded by a third peer | over the limit straight from its observer; anything else |
//! | [`FRAUD_TOPIC`] | a credit [`FraudProof`] that checks (both receipts signed by one payer, one pair, one number, different contents), published by a peer with standing here | one that checks, published by a peer without standing | anything else |
//!
//! and rejects anonymous messages (no author) and other topics. What an accepted message carries
//! comes back in the verdict ([`Payload`]): the caller offers a record to its
//! [`RecordBook`](crate::record_book::RecordBook) and an observation to its
//! [`Reputation`](crate::Reputation) (`observe_second_hand`). With
//! [`Filter::check_with_standing`], an observation whose observer has no standing here is
//! ignored (not used, not forwarded, not counted), so a flood from fresh keys stops at the first
//! honest node.
//!
//! Non-goals: gossipsub's own checks (message signatures, duplicates, peer scoring) and
//! deciding what an accepted observation counts for (the reputation machine).
//!
//! Sans-I/O: no libp2p types beyond peer ids; the caller passes the topic as a string, the
//! author and forwarder, the bytes and its clock (Unix ms).

use std::fmt;

use crate::credits::{CreditError, FRAUD_TOPIC, FraudProof};
use crate::observation::{Observation, ObservationError, REPUTATION_TOPIC, SignedObservation};
use crate::reputation::{Rate, RateLimit};
use crate::{Error, NodeRecord, PeerId, SignedNodeRecord};

/// The gossipsub topic on which nodes announce their signed records.
pub const NODES_TOPIC: &str = "warren/nodes/1";

/// gossipsub's three answers to a message, without what the message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acceptance {
    /// Forward it and use it.
    Accept,
    /// Drop it; no penalty.
    Ignore,
    /// Drop it and penalise the forwarder.
    Reject,
}

/// What an accepted message carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// A verified node record of this node's network (from [`NODES_TOPIC`]).
    Record(Box<NodeRecord>),
    /// A verified observation by the message's author (from [`REPUTATION_TOPIC`]).
    Observation(Box<Observation>),
    /// A checked credit fraud proof (from [`FRAUD_TOPIC`]).
    Fraud(Box<FraudProof>),
}

/// Why a message is ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ignored {
    /// A valid record of a node of another network.
    OtherNetwork {
        /// The record's author.
        peer: Box<PeerId>,
        /// Its network.
        network: String,
    },
    /// An observation over its observer's rate limit, forwarded by a third peer (which may just
    /// count in a slightly different window).
    OverRateLimit {
        /// The observer.
        observer: Box<PeerId>,
    },
    /// An observation whose observer has no standing here: not used, not forwarded (nor counted
    /// against the rate limit, whose table it would fill).
    NoStanding {
        /// The observer.
        observer: Box<PeerId>,
    },
    /// A fraud proof that checks, published by a peer with no standing here: not used, not
    /// forwarded (fresh keys that sign themselves proofs would fill every ledger's table).
    FraudFromNoStanding {
        /// The publisher.
        author: Box<PeerId>,
    },
}

/// Why a message is rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejected {
    /// The message names no author.
    Anonymous,
    /// A topic this node does not use.
    UnknownTopic(String),
    /// The node record does not decode or verify, or is not signed by the message's author.
    BadRecord(Error),
    /// The observation does not decode or verify.
    BadObservation(ObservationError),
    /// The observation's observer is not the message's author.
    NotTheAuthors {
        /// The observer it names.
        observer: Box<PeerId>,
        /// The message's author.
        author: Box<PeerId>,
    },
    /// An observation over its observer's rate limit, sent by the observer itself.
    OverRateLimit {
        /// The observer.
        observer: Box<PeerId>,
    },
    /// The fraud proof does not decode or check.
    BadFraudProof(CreditError),
}

/// The answer to one gossiped message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it, and use what it carries.
    Accept(Payload),
    /// Drop it without penalty.
    Ignore(Ignored),
    /// Drop it and penalise the forwarder (and count it as an invalid message of the forwarder).
    Reject(Rejected),
}

impl Verdict {
    /// The answer for gossipsub.
    pub fn acceptance(&self) -> Acceptance {
        match self {
            Verdict::Accept(_) => Acceptance::Accept,
            Verdict::Ignore(_) => Acceptance::Ignore,
            Verdict::Reject(_) => Acceptance::Reject,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept(Payload::Record(r)) => {
                write!(f, "accepted the record of {}", r.peer_id)
            }
            Verdict::Accept(Payload::Observation(o)) => {
                write!(f, "accepted an observation by {}", o.observer)
            }
            Verdict::Accept(Payload::Fraud(p)) => match p.culprit() {
                Some(c) => write!(f, "accepted a credit fraud proof against {c}"),
                None => f.write_str("accepted a credit fraud proof"),
            },
            Verdict::Ignore(why) => write!(f, "ignored: {why}"),
            Verdict::Reject(why) => write!(f, "rejected: {why}"),
        }
    }
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::OtherNetwork { peer, network } => {
                write!(f, "record of {peer} is of another network, {network:?}")
            }
            Ignored::OverRateLimit { observer } => write!(
                f,
                "observation by {observer} over its rate limit, forwarded by another peer"
            ),
            Ignored::NoStanding { observer } => {
                write!(f, "observation by {observer}, who has no standing here")
            }
            Ignored::FraudFromNoStanding { author } => {
                write!(
                    f,
                    "fraud proof published by {author}, who has no standing here"
                )
            }
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::Anonymous => f.write_str("message without an author"),
            Rejected::UnknownTopic(t) => write!(f, "message on unknown topic {t:?}"),
            Rejected::BadRecord(e) => write!(f, "refused gossiped node record: {e}"),
            Rejected::BadObservation(e) => write!(f, "refused observation: {e}"),
            Rejected::NotTheAuthors { observer, author } => write!(
                f,
                "refused observation by {observer} published by {author}: signed by someone else"
            ),
            Rejected::OverRateLimit { observer } => {
                write!(f, "observation by {observer} over its rate limit")
            }
            Rejected::BadFraudProof(e) => write!(f, "refused credit fraud proof: {e}"),
        }
    }
}

/// Decides on gossiped messages for a node of one network; holds the per-observer rate limit.
///
/// Call [`Filter::check`] once per message gossipsub delivers, with the caller's clock.
#[derive(Clone, Debug)]
pub struct Filter {
    network: String,
    observations: RateLimit,
}

impl Filter {
    /// A filter for a node of `network`, with the default observation [`RateLimit`].
    pub fn new(network: impl Into<String>) -> Self {
        Self::with_rate_limit(network, RateLimit::default())
    }

    /// A filter for a node of `network` counting observations with `observations`.
    pub fn with_rate_limit(network: impl Into<String>, observations: RateLimit) -> Self {
        Self {
            network: network.into(),
            observations,
        }
    }

    /// The network this node belongs to.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The answer to a message on `topic` with `data`, authored by `author` (`None`: anonymous)
    /// and received from `forwarder`, at `now_ms` (Unix ms; node records are checked at
    /// `now_ms / 1000` s). An observation from its author within the rate limit is counted
    /// against that limit.
    ///
    /// Every observer is taken to have standing here: see [`Filter::check_with_standing`].
    pub fn check(
        &mut self,
        topic: &str,
        author: Option<&PeerId>,
        forwarder: &PeerId,
        data: &[u8],
        now_ms: u64,
    ) -> Verdict {
        self.check_with_standing(topic, author, forwarder, data, now_ms, |_| true)
    }

    /// [`Filter::check`], where an observation whose observer has no standing here
    /// (`has_standing` says no) is ignored: neither used nor forwarded, so a flood from fresh
    /// identities stops at the first honest node, and not counted against the rate limit.
    pub fn check_with_standing(
        &mut self,
        topic: &str,
        author: Option<&PeerId>,
        forwarder: &PeerId,
        data: &[u8],
        now_ms: u64,
        has_standing: impl Fn(&PeerId) -> bool,
    ) -> Verdict {
        let Some(author) = author else {
            return Verdict::Reject(Rejected::Anonymous);
        };
        match topic {
            NODES_TOPIC => self.check_record(author, data, now_ms / 1000),
            REPUTATION_TOPIC => {
                self.check_observation(author, forwarder, data, now_ms, has_standing)
            }
            FRAUD_TOPIC => match FraudProof::decode(data) {
                Ok(_) if !has_standing(author) => Verdict::Ignore(Ignored::FraudFromNoStanding {
                    author: Box::new(*author),
                }),
                Ok(proof) => Verdict::Accept(Payload::Fraud(Box::new(proof))),
                Err(e) => Verdict::Reject(Rejected::BadFraudProof(e)),
            },
            other => Verdict::Reject(Rejected::UnknownTopic(other.to_owned())),
        }
    }

    fn check_record(&self, author: &PeerId, data: &[u8], now_secs: u64) -> Verdict {
        match SignedNodeRecord::decode_verified(data, Some(author), now_secs) {
            Ok(record) if record.network != self.network => {
                Verdict::Ignore(Ignored::OtherNetwork {
                    peer: Box::new(record.peer_id),
                    network: record.network,
                })
            }
            Ok(record) => Verdict::Accept(Payload::Record(Box::new(record))),
            Err(e) => Verdict::Reject(Rejected::BadRecord(e)),
        }
    }

    fn check_observation(
        &mut self,
        author: &PeerId,
        forwarder: &PeerId,
        data: &[u8],
        now_ms: u64,
        has_standing: impl Fn(&PeerId) -> bool,
    ) -> Verdict {
        let obs = match SignedObservation::decode_verified(data, now_ms) {
            Ok(obs) => obs,
            Err(e) => return Verdict::Reject(Rejected::BadObservation(e)),
        };
        if obs.observer != *author {
            return Verdict::Reject(Rejected::NotTheAuthors {
                observer: Box::new(obs.observer),
                author: Box::new(*author),
            });
        }
        if !has_standing(author) {
            return Verdict::Ignore(Ignored::NoStanding {
                observer: Box::new(obs.observer),
            });
        }
        if self.observations.check(author, now_ms) == Rate::Limited {
            let observer = Box::new(obs.observer);
            // Spam from the observer itself is penalised; a forwarder may just count in a
            // slightly different window.
            return if forwarder == author {
                Verdict::Reject(Rejected::OverRateLimit { observer })
            } else {
                Verdict::Ignore(Ignored::OverRateLimit { observer })
            };
        }
        Verdict::Accept(Payload::Observation(Box::new(obs)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::Kind;
    use crate::reputation::RateConfig;
    use crate::{Keypair, Price, RECORD_VERSION, Role, keypair_from_secret};

    const T0_MS: u64 = 1_700_000_040_000;

    fn key(i: u8) -> Keypair {
        keypair_from_secret([i.wrapping_add(1); 32])
    }

    fn id(i: u8) -> PeerId {
        key(i).public().to_peer_id()
    }

    fn record(i: u8, network: &str) -> NodeRecord {
        let now = T0_MS / 1000;
        NodeRecord {
            version: RECORD_VERSION,
            network: network.into(),
            peer_id: id(i),
            roles: vec![Role::Station],
            onion_key: [7; 32],
            storage: None,
            compute: None,
            price: Price {
                storage_per_gib_month: 0,
                compute_per_1k_tokens: 0,
            },
            load_permille: 0,
            addrs: vec![],
            issued_at: now,
            expires_at: now + 3600,
        }
    }

    fn signed_record(i: u8, network: &str) -> Vec<u8> {
        record(i, network).sign(&key(i)).unwrap().encode().unwrap()
    }

    fn observation(by: u8, about: u8, time_ms: u64) -> Observation {
        Observation {
            observer: id(by),
            subject: id(about),
            kind: Kind::StorageProofPassed,
            value: 1,
            time_ms,
            evidence: None,
        }
    }

    fn signed_observation(by: u8, about: u8, time_ms: u64) -> Vec<u8> {
        observation(by, about, time_ms)
            .sign(&key(by))
            .unwrap()
            .encode()
            .unwrap()
    }

    fn filter(max_per_window: u32) -> Filter {
        let limit = RateLimit::new(RateConfig {
            max_per_window,
            ..RateConfig::default()
        })
        .unwrap();
        Filter::with_rate_limit("local", limit)
    }

    #[test]
    fn a_record_signed_by_its_author_is_accepted_with_the_record() {
        let mut f = Filter::new("local");
        assert_eq!(f.network(), "local");
        let v = f.check(
            NODES_TOPIC,
            Some(&id(1)),
            &id(9),
            &signed_record(1, "local"),
            T0_MS,
        );
        assert_eq!(
            v,
            Verdict::Accept(Payload::Record(Box::new(record(1, "local"))))
        );
        assert_eq!(v.acceptance(), Acceptance::Accept);
    }

    #[test]
    fn a_record_of_another_network_is_ignored() {
        let mut f = Filter::new("local");
        let v = f.check(
            NODES_TOPIC,
            Some(&id(1)),
            &id(1),
            &signed_record(1, "other"),
            T0_MS,
        );
        assert_eq!(v.acceptance(), Acceptance::Ignore);
        assert!(v.to_string().contains("\"other\""));
    }

    #[test]
    fn bad_records_are_rejected() {
        let mut f = Filter::new("local");
        // Signed by peer 1 but published by peer 2.
        let v = f.check(
            NODES_TOPIC,
            Some(&id(2)),
            &id(2),
            &signed_record(1, "local"),
            T0_MS,
        );
        assert!(
            matches!(v, Verdict::Reject(Rejected::BadRecord(_))),
            "{v:?}"
        );
        // Garbage, and a record expired by now.
        let v = f.check(NODES_TOPIC, Some(&id(1)), &id(1), b"\xa0", T0_MS);
        assert!(
            matches!(v, Verdict::Reject(Rejected::BadRecord(_))),
            "{v:?}"
        );
        let later = T0_MS + 3601 * 1000;
        let v = f.check(
            NODES_TOPIC,
            Some(&id(1)),
            &id(1),
            &signed_record(1, "local"),
            later,
        );
        assert!(
            matches!(v, Verdict::Reject(Rejected::BadRecord(_))),
            "{v:?}"
        );
    }

    #[test]
    fn anonymous_messages_and_unknown_topics_are_rejected() {
        let mut f = Filter::new("local");
        let data = signed_record(1, "local");
        assert_eq!(
            f.check(NODES_TOPIC, None, &id(1), &data, T0_MS),
            Verdict::Reject(Rejected::Anonymous)
        );
        assert_eq!(
            f.check("warren/other/1", Some(&id(1)), &id(1), &data, T0_MS),
            Verdict::Reject(Rejected::UnknownTopic("warren/other/1".into()))
        );
    }

    #[test]
    fn a_fraud_proof_that_checks_is_accepted_and_anything_else_rejected() {
        use crate::credits::{Quantities, Receipt};
        let (payer, payee) = (key(1), key(2));
        let payee_key = crate::credits::receipt::ed25519_key(&payee).unwrap();
        let work = |bytes| Quantities {
            bytes,
            ..Quantities::default()
        };
        let r1 = Receipt::issue(&payer, payee_key, 1, 10, work(1)).unwrap();
        let r2 = Receipt::issue(&payer, payee_key, 1, 10, work(2)).unwrap();
        let proof = FraudProof::new(r1.clone(), r2).unwrap();
        let proof_bytes = proof.encode().unwrap();
        let mut f = Filter::new("local");
        // Published by the payee, forwarded by anyone: accepted with the proof.
        let v = f.check(FRAUD_TOPIC, Some(&id(2)), &id(3), &proof_bytes, T0_MS);
        assert_eq!(v, Verdict::Accept(Payload::Fraud(Box::new(proof))));
        let same = FraudProof {
            first: r1.clone(),
            second: r1,
        };
        let v = f.check(
            FRAUD_TOPIC,
            Some(&id(2)),
            &id(2),
            &same.encode().unwrap(),
            T0_MS,
        );
        assert!(
            matches!(v, Verdict::Reject(Rejected::BadFraudProof(_))),
            "{v:?}"
        );
        let v = f.check(FRAUD_TOPIC, Some(&id(2)), &id(2), b"junk", T0_MS);
        assert_eq!(v.acceptance(), Acceptance::Reject);
        // A publisher without standing here: ignored, not forwarded.
        let v = f.check_with_standing(
            FRAUD_TOPIC,
            Some(&id(4)),
            &id(4),
            &proof_bytes,
            T0_MS,
            |p| *p != id(4),
        );
        assert_eq!(
            v,
            Verdict::Ignore(Ignored::FraudFromNoStanding {
                author: Box::new(id(4))
            })
        );
    }

    #[test]
    fn an_observation_by_its_author_is_accepted_with_the_observation() {
        let mut f = Filter::new("local");
        let v = f.check(
            REPUTATION_TOPIC,
            Some(&id(1)),
            &id(5),
            &signed_observation(1, 2, T0_MS),
            T0_MS,
        );
        assert_eq!(
            v,
            Verdict::Accept(Payload::Observation(Box::new(observation(1, 2, T0_MS))))
        );
    }

    #[test]
    fn observations_by_observers_without_standing_are_ignored_and_not_counted() {
        let mut f = filter(1);
        for i in 0..50u8 {
            let v = f.check_with_standing(
                REPUTATION_TOPIC,
                Some(&id(i)),
                &id(i),
                &signed_observation(i, 200, T0_MS),
                T0_MS,
                |p| *p == id(0),
            );
            if i == 0 {
                assert_eq!(v.acceptance(), Acceptance::Accept, "{v}");
            } else {
                assert!(
                    matches!(v, Verdict::Ignore(Ignored::NoStanding { .. })),
                    "{v:?}"
                );
            }
        }
        // Only the observer with standing is in the rate limit's table.
        assert_eq!(f.observations.len(), 1);
    }

    #[test]
    fn bad_or_foreign_observations_are_rejected() {
        let mut f = Filter::new("local");
        // Peer 2 republishes peer 1's observation as its own message.
        let v = f.check(
            REPUTATION_TOPIC,
            Some(&id(2)),
            &id(2),
            &signed_observation(1, 3, T0_MS),
            T0_MS,
        );
        assert!(
            matches!(v, Verdict::Reject(Rejected::NotTheAuthors { .. })),
            "{v:?}"
        );
        let v = f.check(REPUTATION_TOPIC, Some(&id(1)), &id(1), b"junk", T0_MS);
        assert!(
            matches!(v, Verdict::Reject(Rejected::BadObservation(_))),
            "{v:?}"
        );
    }

    #[test]
    fn over_the_rate_limit_the_observer_is_rejected_and_a_forwarder_ignored() {
        let mut f = filter(2);
        let data = signed_observation(1, 2, T0_MS);
        for _ in 0..2 {
            let v = f.check(REPUTATION_TOPIC, Some(&id(1)), &id(1), &data, T0_MS);
            assert_eq!(v.acceptance(), Acceptance::Accept);
        }
        let v = f.check(REPUTATION_TOPIC, Some(&id(1)), &id(1), &data, T0_MS);
        assert!(
            matches!(v, Verdict::Reject(Rejected::OverRateLimit { .. })),
            "{v:?}"
        );
        let v = f.check(REPUTATION_TOPIC, Some(&id(1)), &id(7), &data, T0_MS);
        assert!(
            matches!(v, Verdict::Ignore(Ignored::OverRateLimit { .. })),
            "{v:?}"
        );
        // Another observer has its own allowance, and the next window starts afresh.
        let other = signed_observation(3, 2, T0_MS);
        let v = f.check(REPUTATION_TOPIC, Some(&id(3)), &id(3), &other, T0_MS);
        assert_eq!(v.acceptance(), Acceptance::Accept);
        let v = f.check(
            REPUTATION_TOPIC,
            Some(&id(1)),
            &id(1),
            &data,
            T0_MS + 60_000,
        );
        assert_eq!(v.acceptance(), Acceptance::Accept);
        // Invalid observations are not counted against the limit of the peer they name.
        let mut f = filter(1);
        for _ in 0..3 {
            f.check(REPUTATION_TOPIC, Some(&id(1)), &id(1), b"junk", T0_MS);
        }
        let v = f.check(REPUTATION_TOPIC, Some(&id(1)), &id(1), &data, T0_MS);
        assert_eq!(v.acceptance(), Acceptance::Accept);
    }
}
