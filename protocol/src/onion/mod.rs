//! Onion circuits: fixed-size cells, per-hop Noise NK handshakes, layered relay crypto, and the
//! pure state machines of the circuit's two ends and its hops. Specified in `spec/onion.md`.
//!
//! ```text
//!  Client ══ link ══ Hop (gate) ══ link ══ Hop (middle) ══ link ══ Hop (relay) ──► runner
//!    wraps 3 layers    peels 1              peels 1                 peels 1, acts
//! ```
//!
//! A *link* is one long-lived byte stream between two neighbours that carries one circuit's
//! [`CELL_LEN`]-byte cells, so a cell needs no circuit id. The client builds the circuit by
//! telescoping: a `CREATE` to the gate, then an `EXTEND` relay cell to the current last hop for each
//! further hop, so every hop knows only its two neighbours. Each hop runs a Noise NK handshake
//! against its static X25519 key (the `onion_key` of its signed node record) and derives four keys
//! from it ([`crypto::HopKeys`]): a ChaCha20 key and a MAC key for each direction. Relay cells are
//! encrypted with one ChaCha20 layer per hop (same size in, same size out: a cell never shrinks and
//! its size never tells a hop its position) and carry a 16-byte keyed-BLAKE3 tag that only the
//! cell's end (client or the addressed hop) can check, over the cell counter, so a tampered,
//! replayed, dropped or reordered cell fails the check and tears the circuit down.
//!
//! Goals: fixed-size cells, hops that learn only their neighbours, streams multiplexed in a
//! circuit with windowed flow control, sans-I/O (`now` and all randomness passed in). Non-goals:
//! padding or cover traffic, circuit-level flow control beyond the per-stream windows, and
//! resistance to a global passive observer (the same non-goals as Tor).
//!
//! Call order: [`Client::new`] then [`Client::poll_transmit`] for the `CREATE` cell; every cell
//! from the gate goes to [`Client::handle_cell`]; after each call drain
//! [`Client::poll_transmit`] (cells to the gate) and [`Client::poll_event`]. A hop is made by
//! [`Hop::accept`] from a `CREATE` cell; feed it [`Hop::handle_prev`] / [`Hop::handle_next`], and
//! drain [`Hop::poll_transmit`] and [`Hop::poll_event`] after each call.

pub mod cell;
mod client;
pub mod crypto;
pub mod guard;
mod hop;
pub mod limits;
pub mod path;
pub mod quota;
mod replay;
pub mod request;
mod stream;

pub use cell::{CELL_LEN, Cell, CreateOrigin, DestroyReason, MAX_DATA, RelayCommand, RelayPayload};
pub use client::{Client, ClientEvent, HopTarget};
pub use crypto::{HopKeys, handshake_clock};
pub use hop::{Direction, Hop, HopEvent, HopPosition, HopView};
pub use replay::ReplayCache;
pub use stream::{SENDME_INCREMENT, STREAM_WINDOW};

/// The libp2p protocol name of the onion link.
pub const PROTOCOL_NAME: &str = "/warren/onion/1.0.0";

/// Most hops in a circuit.
pub const MAX_HOPS: usize = 8;

/// Most `RELAY_EARLY` cells a hop passes or takes on one circuit: one per extension, so no
/// circuit grows past [`MAX_HOPS`] whatever its client does (Tor's `RELAY_EARLY`).
pub const MAX_RELAY_EARLY: u32 = MAX_HOPS as u32 - 1;

/// Most streams open at once in one circuit.
pub const MAX_STREAMS: usize = 64;

/// Most relay cells one direction of a circuit may carry; the circuit must be rebuilt after this
/// (about 4 GiB). Keeps every ChaCha20 nonce unique by a wide margin.
pub const MAX_CELLS: u64 = 1 << 22;

/// Everything that can go wrong on a circuit. Each tears the circuit down.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OnionError {
    /// A cell is not [`CELL_LEN`] bytes or breaks the cell layout.
    #[error("onion cell: malformed {what}: {detail}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A Noise handshake failed (bad key, bad message).
    #[error("onion handshake with hop {hop}: {detail}")]
    Handshake {
        /// Hop index on the circuit (0 = gate), or the hop's own view (0).
        hop: usize,
        /// snow's error.
        detail: String,
    },
    /// A handshake was seen before, or its timestamp is outside the replay window.
    #[error("onion handshake replayed or stale: {detail}")]
    Replay {
        /// Why it was refused.
        detail: String,
    },
    /// A relay cell failed the end-to-end integrity check: tampered, replayed, dropped or
    /// reordered on the way.
    #[error(
        "onion integrity check failed: relay cell {counter} ({direction}) was tampered, replayed or misordered"
    )]
    Integrity {
        /// The receiving end's counter for the cell.
        counter: u64,
        /// "forward" or "backward".
        direction: &'static str,
    },
    /// The peer broke the protocol (a command in the wrong state, a window overrun, …).
    #[error("onion protocol violation: {detail}")]
    Protocol {
        /// What happened.
        detail: String,
    },
    /// A limit of this implementation was reached.
    #[error("onion limit reached: {detail}")]
    Limit {
        /// Which limit.
        detail: String,
    },
    /// The circuit was torn down by a `DESTROY` cell.
    #[error("onion circuit destroyed: {reason}")]
    Destroyed {
        /// The reason the cell gave.
        reason: DestroyReason,
    },
    /// The circuit is closed; nothing more can be sent.
    #[error("onion circuit is closed")]
    Closed,
}

fn protocol(detail: impl Into<String>) -> OnionError {
    OnionError::Protocol {
        detail: detail.into(),
    }
}
