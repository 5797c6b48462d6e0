//! serde adapters that fix the wire form of foreign types, independent of their own serde impls:
//! a [`PeerId`] is a byte string holding its multihash bytes, a [`Multiaddr`] a byte string holding
//! its binary form. Used with `#[serde(with = "…")]`.

use serde::{Deserialize, Deserializer, Serializer, de::Error as _, ser::SerializeSeq};
use serde_bytes::{ByteBuf, Bytes};

use crate::{Multiaddr, PeerId};

fn parse_peer_id<E: serde::de::Error>(field: &str, bytes: &[u8]) -> Result<PeerId, E> {
    PeerId::from_bytes(bytes)
        .map_err(|e| E::custom(format_args!("field `{field}`: invalid peer id: {e}")))
}

/// `PeerId` ⇄ byte string (for a field named `peer_id`).
pub(crate) mod peer_id {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(peer: &PeerId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&peer.to_bytes())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PeerId, D::Error> {
        parse_peer_id("peer_id", &ByteBuf::deserialize(d)?)
    }
}

/// `Option<PeerId>` ⇄ byte string or null (for a field named `peer`).
pub(crate) mod opt_peer_id {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(peer: &Option<PeerId>, s: S) -> Result<S::Ok, S::Error> {
        match peer {
            Some(peer) => s.serialize_some(Bytes::new(&peer.to_bytes())),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PeerId>, D::Error> {
        Option::<ByteBuf>::deserialize(d)?
            .map(|b| parse_peer_id("peer", &b))
            .transpose()
    }
}

/// `Vec<Multiaddr>` ⇄ array of byte strings. An entry that is not a valid multiaddr is refused with
/// an error naming the field and the index.
pub(crate) mod multiaddrs {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(addrs: &[Multiaddr], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(addrs.len()))?;
        for a in addrs {
            seq.serialize_element(Bytes::new(a.as_ref()))?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Multiaddr>, D::Error> {
        Vec::<ByteBuf>::deserialize(d)?
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                Multiaddr::try_from(b.into_vec()).map_err(|e| {
                    D::Error::custom(format_args!("field `addrs[{i}]`: invalid multiaddr: {e}"))
                })
            })
            .collect()
    }
}
