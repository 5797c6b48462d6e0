//! warren's own request-response protocols on the swarm: the length-prefixed framing they share,
//! `/warren/blocks/2.0.0` and `/warren/envelope/1.0.0`, and the envelope service's answers.

pub mod blocks;
pub mod envelope;
pub mod envelope_service;
pub(crate) mod framing;
