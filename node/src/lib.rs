//! warren-node: the warren peer.
//!
//! It must not hold protocol logic: formats, signatures, proofs and state machines live in
//! `warren-protocol` and `warren-storage-mesh`; this crate only moves bytes between them and the
//! network, disk and user. Its modules form layers, and every `use crate::…` runs down this table
//! (checked by `tests/layers.rs`, which reads every source file):
//!
//! ```text
//! L4  api/  cli/                 the local HTTP API (axum) and the command line; anyhow only here
//!      │
//! L3  node                       NodeBuilder: opens the store, builds the swarm, starts every service
//!      │
//! L2  onion/ ─► inference/ ─► storage/ ─► reputation/   services: they reach the swarm only
//!      │                                 through net::Client, get inbound requests and accepted
//!      │                                 gossip on bounded channels, scores on a watch channel
//! L1  net/                       the swarm and its event loop (moves bytes, owns nothing else),
//!      │                         client, behaviours, gossip and peer-limit config, wire protocols
//! L0  error clock addr config presets keystore record reputation_store metrics framed view/
//!     worker/                    leaves: plain data, helpers and files on disk; the sandboxed
//!                                worker process
//! ```

// L0: leaves.
pub mod addr;
pub mod clock;
pub mod config;
pub mod error;
pub mod framed;
pub mod keystore;
pub mod metrics;
pub mod presets;
pub mod record;
pub mod reputation_store;
pub mod view;
pub mod worker;
// L1: the swarm.
pub mod net;

pub mod credits;
// L2: services.
pub mod inference;
pub mod names;
pub mod onion;
pub mod reputation;
pub mod storage;
// L3: the node.
pub mod node;
// L4: the edges.
pub mod api;
pub mod cli;

pub use error::NodeError;
