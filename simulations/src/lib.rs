//! warren-simulations: warren's own protocol code at a scale these machines cannot host.
//!
//! Owns a deterministic discrete-event driver ([`events`]): a virtual clock and a seeded event
//! queue, so two runs with the same seed are identical. Scenarios (churn, DHT, Sybil, in-process
//! swarms) drive the sans-I/O state machines of `warren-protocol` and `warren-storage-mesh` with
//! it. It must not use wall-clock time or unseeded randomness.
//!
//! Scenarios so far: [`churn`] (placement and repair under heavy-tailed churn), [`dht`] (Kademlia
//! lookups over disjoint paths with adversaries), [`swarm`] (real nodes by the hundred on the
//! memory transport), [`sybil`] (the reputation machine under colluding identities). The
//! `warren-sim` binary runs them and writes CSV and PNG under `results/`; `simulations/README.md`
//! explains each.

pub mod churn;
pub mod credits;
pub mod dht;
pub mod error;
pub mod events;
pub mod plot;
pub mod rng;
pub mod swarm;
pub mod sybil;

pub use error::SimError;
