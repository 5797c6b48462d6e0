//! gossipsub's configuration and its peer scoring, with warren's reputation as the
//! application-specific score (`spec/reputation.md`, "Floor" and "Rate limit").
//!
//! A peer's gossipsub score here is
//!
//! ```text
//! 10 · application score                 warren's score: total − 0.25 above the floor (0, 0.75],
//!                                          total − 1 below it [−1, 0); 0 while untracked
//! + Σ_topics 1 · (−10 · invalid²)          P4: messages rejected by validation (bad signature,
//!                                          malformed, an observer over its rate limit), decaying
//!                                          by 1 % a second (half-life ≈ 70 s)
//! − 10 · (behaviour penalty)²              P7: gossipsub's own protocol misbehaviour (defaults)
//! ```
//!
//! and the thresholds are gossip −20, publish −40, graylist −80. So warren's score alone (at least
//! −10) takes a peer out of the mesh (negative score) but never stops its gossip; three rejected
//! messages (−90) graylist it until they decay. The delivery-based terms (P1–P3b) are off: on a
//! small, quiet network they would punish peers for the traffic nobody sends, and the IP
//! colocation term ignores loopback, where every node of a devnet lives.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use libp2p::gossipsub::{
    self, IdentTopic, PeerScoreParams, PeerScoreThresholds, TopicHash, TopicScoreParams,
};

/// Weight of warren's application score in the gossipsub score.
pub(crate) const APP_SCORE_WEIGHT: f64 = 10.0;
/// P4 weight per topic: a rejected message costs `−10 · n²`.
const INVALID_WEIGHT: f64 = -10.0;
/// P4 decay per decay interval (1 s): a rejected message is half forgotten after ≈ 70 s.
const INVALID_DECAY: f64 = 0.99;

/// The gossipsub configuration: strict signatures, validation by the event loop before anything
/// is forwarded, messages up to `max_transmit`.
pub(crate) fn config(
    max_transmit: usize,
) -> Result<gossipsub::Config, gossipsub::ConfigBuilderError> {
    gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(max_transmit)
        .build()
}

fn topic_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.0,
        first_message_deliveries_weight: 0.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: INVALID_WEIGHT,
        invalid_message_deliveries_decay: INVALID_DECAY,
        ..TopicScoreParams::default()
    }
}

/// The peer score parameters for `topics` and the thresholds (see the module doc).
pub(crate) fn score_params(topics: &[&str]) -> (PeerScoreParams, PeerScoreThresholds) {
    let topics: HashMap<TopicHash, TopicScoreParams> = topics
        .iter()
        .map(|t| (IdentTopic::new(*t).hash(), topic_params()))
        .collect();
    let params = PeerScoreParams {
        topics,
        app_specific_weight: APP_SCORE_WEIGHT,
        ip_colocation_factor_whitelist: HashSet::from([
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]),
        decay_interval: Duration::from_secs(1),
        ..PeerScoreParams::default()
    };
    let thresholds = PeerScoreThresholds {
        gossip_threshold: -20.0,
        publish_threshold: -40.0,
        graylist_threshold: -80.0,
        ..PeerScoreThresholds::default()
    };
    (params, thresholds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_validate_and_keep_warren_scores_above_the_gossip_threshold() {
        let (params, thresholds) = score_params(&["a", "b"]);
        params.validate().unwrap();
        thresholds.validate().unwrap();
        assert_eq!(params.topics.len(), 2);
        // The lowest application score (−1) alone never stops gossip.
        assert!(-APP_SCORE_WEIGHT > thresholds.gossip_threshold);
        // Three rejected messages on one topic graylist a peer.
        assert!(INVALID_WEIGHT * 9.0 < thresholds.graylist_threshold);
        assert!(INVALID_WEIGHT * 4.0 > thresholds.graylist_threshold);
    }

    #[test]
    fn scoring_can_be_enabled() {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let mut b: gossipsub::Behaviour = gossipsub::Behaviour::new(
            gossipsub::MessageAuthenticity::Signed(key),
            config(4096).unwrap(),
        )
        .unwrap();
        let (params, thresholds) = score_params(&["warren/reputation/1"]);
        b.with_peer_score(params, thresholds).unwrap();
        // Unknown peers have no score entry to set.
        assert!(!b.set_application_score(&libp2p::PeerId::random(), -0.5));
    }
}
