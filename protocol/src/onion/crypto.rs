//! Per-hop Noise NK handshakes and the layer cipher.
//!
//! Handshake: `Noise_NK_25519_ChaChaPoly_BLAKE2s`, prologue [`PROLOGUE`], responder static key =
//! the hop's `onion_key`. Message 1 (client → hop, 56 bytes) is `e, es` with an 8-byte payload:
//! the client's clock in seconds rounded down to a minute ([`handshake_clock`], big-endian),
//! which bounds the hop's replay cache. Message 2
//! (hop → client, 48 bytes) is `e, ee` with an empty payload. Both ephemeral keys come from the
//! caller's 32-byte seeds (this crate has no RNG).
//!
//! Keys: with `(k1, k2)` = the raw Noise `Split()` and `h` = the handshake hash,
//! `BLAKE3-derive-key(KEY_CONTEXT, k1 | k2 | h)` in XOF mode gives 128 bytes:
//! forward cipher key | backward cipher key | forward MAC key | backward MAC key.
//!
//! Layer: a relay cell body is XORed with `ChaCha20(key, nonce = 0u32 | counter u64 BE)` starting
//! at block 0, where `counter` counts the relay cells this hop has passed in that direction. The
//! tag (first 16 bytes of the plaintext) is `BLAKE3-keyed(mac key, counter u64 BE | plaintext[16..])`
//! truncated to 16 bytes, set by the cell's origin with the key and counter of the hop at the
//! cell's other end.

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};
use snow::resolvers::{CryptoResolver, DefaultResolver, FallbackResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use super::cell::{BODY_LEN, TAG_LEN};
use super::{OnionError, ReplayCache};
use crate::OnionSecret;

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_NK_25519_ChaChaPoly_BLAKE2s";
/// The Noise prologue.
pub const PROLOGUE: &[u8] = b"warren onion 1";
/// The BLAKE3 derive-key context of the hop keys.
pub const KEY_CONTEXT: &str = "warren onion 1 hop keys";
/// Length of handshake message 1.
pub const CREATE_LEN: usize = 32 + 8 + 16;
/// Length of handshake message 2.
pub const CREATED_LEN: usize = 32 + 16;

/// The four keys one hop shares with the client.
#[derive(Clone, PartialEq, Eq)]
pub struct HopKeys {
    /// ChaCha20 key, client → relay direction.
    pub forward: [u8; 32],
    /// ChaCha20 key, relay → client direction.
    pub backward: [u8; 32],
    /// Tag key of cells addressed to the hop.
    pub forward_mac: [u8; 32],
    /// Tag key of cells the hop originates.
    pub backward_mac: [u8; 32],
}

impl std::fmt::Debug for HopKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HopKeys").finish_non_exhaustive()
    }
}

impl HopKeys {
    /// Derives the keys from the raw Noise split and the handshake hash.
    pub fn derive(k1: &[u8; 32], k2: &[u8; 32], handshake_hash: &[u8]) -> Self {
        let mut h = blake3::Hasher::new_derive_key(KEY_CONTEXT);
        h.update(k1).update(k2).update(handshake_hash);
        let mut out = [0u8; 128];
        h.finalize_xof().fill(&mut out);
        let part = |i: usize| {
            let mut k = [0u8; 32];
            k.copy_from_slice(&out[32 * i..32 * (i + 1)]);
            k
        };
        Self {
            forward: part(0),
            backward: part(1),
            forward_mac: part(2),
            backward_mac: part(3),
        }
    }
}

/// XORs `body` with the ChaCha20 keystream of `key` for cell `counter`.
pub fn apply_layer(key: &[u8; 32], counter: u64, body: &mut [u8; BODY_LEN]) {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    let mut c = ChaCha20::new(key.into(), &nonce.into());
    c.apply_keystream(&mut body[..]);
}

/// The end-to-end tag of a plaintext body for cell `counter`.
pub fn tag(mac_key: &[u8; 32], counter: u64, body: &[u8; BODY_LEN]) -> [u8; TAG_LEN] {
    let mut h = blake3::Hasher::new_keyed(mac_key);
    h.update(&counter.to_be_bytes()).update(&body[TAG_LEN..]);
    let mut t = [0u8; TAG_LEN];
    t.copy_from_slice(&h.finalize().as_bytes()[..TAG_LEN]);
    t
}

/// Writes the tag into the plaintext `body`.
pub fn seal(mac_key: &[u8; 32], counter: u64, body: &mut [u8; BODY_LEN]) {
    let t = tag(mac_key, counter, body);
    body[..TAG_LEN].copy_from_slice(&t);
}

/// Whether the decrypted `body` carries a valid tag (constant time in the tag). The tag is
/// computed only when the command byte and the length are valid, as in every cell meant for this
/// end: a cell passing through (random-looking after this layer) fails that cheap check about 99.96 %
/// of the time, the way Tor's `recognized` field spares the digest.
pub fn recognized(mac_key: &[u8; 32], counter: u64, body: &[u8; BODY_LEN]) -> bool {
    let command = body[TAG_LEN];
    let len = u16::from_be_bytes([body[TAG_LEN + 3], body[TAG_LEN + 4]]) as usize;
    if !(1..=6).contains(&command) || len > super::cell::MAX_DATA {
        return false;
    }
    let t = tag(mac_key, counter, body);
    let mut diff = 0u8;
    for (a, b) in t.iter().zip(&body[..TAG_LEN]) {
        diff |= a ^ b;
    }
    diff == 0
}

/// snow's RNG, fed from a caller's seed: BLAKE3 in XOF mode.
struct SeedRng(blake3::OutputReader);

impl Random for SeedRng {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

/// A resolver whose only RNG is the caller's seed.
struct SeedResolver([u8; 32]);

impl CryptoResolver for SeedResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        let mut h = blake3::Hasher::new_derive_key("warren onion 1 ephemeral");
        h.update(&self.0);
        Some(Box::new(SeedRng(h.finalize_xof())))
    }
    fn resolve_dh(&self, _: &snow::params::DHChoice) -> Option<Box<dyn Dh>> {
        None
    }
    fn resolve_hash(&self, _: &snow::params::HashChoice) -> Option<Box<dyn Hash>> {
        None
    }
    fn resolve_cipher(&self, _: &snow::params::CipherChoice) -> Option<Box<dyn Cipher>> {
        None
    }
}

fn builder(seed: [u8; 32]) -> Result<snow::Builder<'static>, snow::Error> {
    let params: snow::params::NoiseParams = NOISE_PARAMS.parse()?;
    let resolver = FallbackResolver::new(Box::new(SeedResolver(seed)), Box::new(DefaultResolver));
    snow::Builder::with_resolver(params, Box::new(resolver)).prologue(PROLOGUE)
}

fn hs_err(hop: usize) -> impl Fn(snow::Error) -> OnionError {
    move |e| OnionError::Handshake {
        hop,
        detail: e.to_string(),
    }
}

fn split(hs: &mut snow::HandshakeState) -> HopKeys {
    let h = hs.get_handshake_hash().to_vec();
    let (k1, k2) = hs.dangerously_get_raw_split();
    HopKeys::derive(&k1, &k2, &h)
}

/// The timestamp a client puts in message 1 at `now_secs`: rounded down to
/// [`ReplayCache::CLOCK_GRANULE_SECS`], so that hops learn little about the client's clock.
pub fn handshake_clock(now_secs: u64) -> u64 {
    now_secs - now_secs % ReplayCache::CLOCK_GRANULE_SECS
}

/// The client's half of one hop's handshake, between message 1 and message 2.
pub struct ClientHandshake {
    state: snow::HandshakeState,
    hop: usize,
}

impl std::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("hop", &self.hop)
            .finish_non_exhaustive()
    }
}

impl ClientHandshake {
    /// Starts a handshake with hop number `hop` (0 = gate) whose onion key is `hop_key`; returns
    /// the state and message 1, which carries [`handshake_clock`] of `now_secs`.
    pub fn start(
        hop: usize,
        hop_key: &[u8; 32],
        ephemeral_seed: [u8; 32],
        now_secs: u64,
    ) -> Result<(Self, Vec<u8>), OnionError> {
        let err = hs_err(hop);
        let mut state = builder(ephemeral_seed)
            .and_then(|b| b.remote_public_key(hop_key))
            .and_then(|b| b.build_initiator())
            .map_err(&err)?;
        let mut msg = vec![0u8; CREATE_LEN];
        let n = state
            .write_message(&handshake_clock(now_secs).to_be_bytes(), &mut msg)
            .map_err(&err)?;
        msg.truncate(n);
        Ok((Self { state, hop }, msg))
    }

    /// Reads message 2; returns the hop's keys.
    pub fn finish(mut self, msg2: &[u8]) -> Result<HopKeys, OnionError> {
        let err = hs_err(self.hop);
        let mut payload = [0u8; 64];
        let n = self.state.read_message(msg2, &mut payload).map_err(&err)?;
        if n != 0 || !self.state.is_handshake_finished() {
            return Err(OnionError::Handshake {
                hop: self.hop,
                detail: format!("message 2 carried a {n}-byte payload"),
            });
        }
        Ok(split(&mut self.state))
    }
}

/// The hop's side: reads message 1 from the neighbour `source` (checked against the replay
/// cache, whose per-source share is checked before any Diffie-Hellman), returns the keys and
/// message 2.
pub fn respond(
    secret: &OnionSecret,
    msg1: &[u8],
    ephemeral_seed: [u8; 32],
    now_secs: u64,
    replay: &mut ReplayCache,
    source: &[u8],
) -> Result<(HopKeys, Vec<u8>), OnionError> {
    let err = hs_err(0);
    replay.admits(source, now_secs)?;
    if msg1.len() != CREATE_LEN {
        return Err(OnionError::Handshake {
            hop: 0,
            detail: format!("message 1 of {} bytes, expected {CREATE_LEN}", msg1.len()),
        });
    }
    let key = secret.to_bytes();
    let mut state = builder(ephemeral_seed)
        .and_then(|b| b.local_private_key(&key))
        .and_then(|b| b.build_responder())
        .map_err(&err)?;
    let mut payload = [0u8; 64];
    let n = state.read_message(msg1, &mut payload).map_err(&err)?;
    if n != 8 {
        return Err(OnionError::Handshake {
            hop: 0,
            detail: format!("message 1 carried a {n}-byte payload, expected 8"),
        });
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&payload[..8]);
    let mut eph = [0u8; 32];
    eph.copy_from_slice(&msg1[..32]);
    replay.check_and_insert(source, eph, u64::from_be_bytes(ts), now_secs)?;
    let mut msg2 = vec![0u8; CREATED_LEN];
    let n = state.write_message(&[], &mut msg2).map_err(&err)?;
    msg2.truncate(n);
    Ok((split(&mut state), msg2))
}

/// One hop's layer state in one direction: a cipher key, a tag key and the cell counter.
#[derive(Clone)]
pub(crate) struct Layer {
    pub(crate) key: [u8; 32],
    pub(crate) mac: [u8; 32],
    pub(crate) counter: u64,
}

impl Layer {
    pub(crate) fn new(key: [u8; 32], mac: [u8; 32]) -> Self {
        Self {
            key,
            mac,
            counter: 0,
        }
    }

    /// Applies this layer to a passing cell; returns the counter it used.
    pub(crate) fn pass(&mut self, body: &mut [u8; BODY_LEN]) -> Result<u64, OnionError> {
        let c = self.counter;
        if c >= super::MAX_CELLS {
            return Err(OnionError::Limit {
                detail: format!("{} relay cells on one circuit", super::MAX_CELLS),
            });
        }
        apply_layer(&self.key, c, body);
        self.counter += 1;
        Ok(c)
    }
}
