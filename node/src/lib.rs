//! warren-node: the warren peer.
//!
//! Owns the libp2p swarm and its behaviours ([`network`]), the services that answer peers
//! ([`service`]), the node's secret files ([`keystore`]), its configuration ([`config`]), the local
//! control API ([`api`], [`client`]) with its dashboard ([`dashboard`]) and Prometheus metrics
//! ([`metrics`]), the devnet launcher ([`devnet`]), testnet presets ([`presets`]), `warren init`
//! ([`init`]) and the CLI ([`cli`]).
//!
//! It must not hold protocol logic: formats, signatures and state machines live in
//! `warren-protocol` (and `warren-storage-mesh`); this crate only moves bytes between them and the
//! network, disk and user.

pub mod api;
pub mod blocks;
pub mod cli;
pub mod client;
pub mod config;
pub mod dashboard;
pub mod devnet;
pub mod envelope;
pub mod error;
pub mod framed;
mod framing;
mod gossip;
pub mod inference;
pub mod init;
mod jobs_cli;
pub mod keystore;
pub mod mesh;
pub mod metrics;
pub mod network;
pub mod onion;
pub mod peer_limit;
pub mod presets;
pub mod record;
pub mod reputation_store;
pub mod service;
pub mod start;
pub mod transfer;

pub use error::NodeError;
