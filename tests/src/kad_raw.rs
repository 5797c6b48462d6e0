//! Raw Kademlia messages (`dht.pb.Message`, length-prefixed) on warren's `/warren/kad/1.0.0`,
//! written by hand so that a hostile peer can send what no honest node sends: an `ADD_PROVIDER`
//! for any key with any addresses, thousands on one stream (issue 19, attacks 6 and 7). Shared by
//! `tests/hostile_net.rs` and the soak.

use std::time::Duration;

use anyhow::{Context, bail};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{Multiaddr, StreamProtocol};
use warren_protocol::PeerId;

use crate::hostile::Hostile;

/// warren's Kademlia protocol.
pub const KAD: StreamProtocol = StreamProtocol::new("/warren/kad/1.0.0");
/// `MessageType::PUT_VALUE`.
pub const PUT_VALUE: u8 = 0;
/// `MessageType::ADD_PROVIDER`.
pub const ADD_PROVIDER: u8 = 2;
/// `MessageType::GET_PROVIDERS`.
pub const GET_PROVIDERS: u8 = 3;
/// `MessageType::FIND_NODE`.
pub const FIND_NODE: u8 = 4;

fn varint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A protobuf length-delimited field.
fn field(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(tag << 3 | 2);
    varint(bytes.len(), out);
    out.extend_from_slice(bytes);
}

/// One length-prefixed Kademlia message of `kind` on `key`, naming `provider` with its addresses
/// as the provider peer (for `ADD_PROVIDER`).
pub fn kad_message(kind: u8, key: &[u8], provider: Option<(&PeerId, &[Multiaddr])>) -> Vec<u8> {
    let mut m = vec![0x08, kind];
    field(2, key, &mut m);
    if let Some((peer, addrs)) = provider {
        let mut p = Vec::new();
        field(1, &peer.to_bytes(), &mut p);
        for a in addrs {
            field(2, &a.to_vec(), &mut p);
        }
        field(9, &p, &mut m);
    }
    let mut framed = Vec::new();
    varint(m.len(), &mut framed);
    framed.extend(m);
    framed
}

/// The `i`-th junk key of series `series`.
pub fn junk_key(series: u64, i: u32) -> Vec<u8> {
    let mut key = b"junk-provider-key-".to_vec();
    if series > 0 {
        key.extend(series.to_be_bytes());
    }
    key.extend(i.to_be_bytes());
    key
}

/// Sends `count` `ADD_PROVIDER`s of the junk keys of `series` (each with 16 addresses) from
/// `hostile` to `victim` on one raw Kademlia stream, then a `FIND_NODE` whose answer shows the
/// victim read them all (waited for up to `wait`). Answers the stream, still open.
pub async fn flood_provider_table(
    hostile: &Hostile,
    victim: PeerId,
    series: u64,
    count: u32,
    wait: Duration,
) -> anyhow::Result<libp2p::Stream> {
    let mut control = hostile.client().stream_control();
    let mut stream = control
        .open_stream(victim, KAD)
        .await
        .context("opening a kad stream")?;
    let addrs: Vec<Multiaddr> = (0..16)
        .map(|i| format!("/ip4/10.9.0.1/tcp/{}", 4000 + i).parse())
        .collect::<Result<_, _>>()?;
    let me = hostile.peer_id();
    let mut batch = Vec::new();
    for i in 0..count {
        let key = junk_key(series, i);
        batch.extend(kad_message(ADD_PROVIDER, &key, Some((&me, &addrs))));
        if batch.len() > 1 << 20 {
            stream.write_all(&batch).await?;
            batch.clear();
        }
    }
    batch.extend(kad_message(FIND_NODE, &me.to_bytes(), None));
    stream.write_all(&batch).await?;
    stream.flush().await?;
    tokio::time::timeout(wait, read_message(&mut stream))
        .await
        .with_context(|| format!("no FIND_NODE answer in {wait:?}"))??;
    Ok(stream)
}

/// Sends `victim` one `PUT_VALUE` of `value` under `key` from `hostile`, as any peer may, and
/// waits up to 10 s for its answer (Kademlia echoes the record whether or not it keeps it).
pub async fn put_value(
    hostile: &Hostile,
    victim: PeerId,
    key: &[u8],
    value: &[u8],
) -> anyhow::Result<()> {
    let mut record = Vec::new();
    field(1, key, &mut record);
    field(2, value, &mut record);
    let mut m = vec![0x08, PUT_VALUE];
    field(2, key, &mut m);
    field(3, &record, &mut m);
    let mut framed = Vec::new();
    varint(m.len(), &mut framed);
    framed.extend(m);
    let mut control = hostile.client().stream_control();
    let mut stream = control
        .open_stream(victim, KAD)
        .await
        .context("opening a kad stream")?;
    stream.write_all(&framed).await?;
    stream.flush().await?;
    tokio::time::timeout(Duration::from_secs(10), read_message(&mut stream))
        .await
        .context("no PUT_VALUE answer in 10 s")??;
    Ok(())
}

/// Reads one length-prefixed message.
pub async fn read_message(stream: &mut libp2p::Stream) -> anyhow::Result<Vec<u8>> {
    let mut len = 0usize;
    for shift in (0..35).step_by(7) {
        let mut b = [0u8; 1];
        stream.read_exact(&mut b).await?;
        len |= usize::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    if len > 4 << 20 {
        bail!("a kad message of {len} bytes");
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

/// The protobuf fields of `m` as (field number, bytes) for length-delimited ones.
pub fn fields(m: &[u8]) -> anyhow::Result<Vec<(u64, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut i = 0;
    let varint = |i: &mut usize| {
        let mut v = 0u64;
        let mut shift = 0;
        while *i < m.len() && shift < 64 {
            let b = m[*i];
            *i += 1;
            v |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        v
    };
    while i < m.len() {
        let tag = varint(&mut i);
        match tag & 7 {
            0 => {
                varint(&mut i);
            }
            2 => {
                let len = usize::try_from(varint(&mut i))?;
                let bytes = m
                    .get(i..i.saturating_add(len))
                    .context("a field runs past the message")?;
                out.push((tag >> 3, bytes.to_vec()));
                i += len;
            }
            other => bail!("unexpected wire type {other}"),
        }
    }
    Ok(out)
}

/// The providers the peer on `stream` names for `key` (`GET_PROVIDERS`), with the number of
/// addresses of each.
pub async fn providers_of(
    stream: &mut libp2p::Stream,
    key: &[u8],
) -> anyhow::Result<Vec<(PeerId, usize)>> {
    stream
        .write_all(&kad_message(GET_PROVIDERS, key, None))
        .await?;
    stream.flush().await?;
    let answer = tokio::time::timeout(Duration::from_secs(20), read_message(stream))
        .await
        .context("no GET_PROVIDERS answer in 20 s")??;
    let mut out = Vec::new();
    for (n, peer) in fields(&answer)? {
        if n != 9 {
            continue;
        }
        let f = fields(&peer)?;
        let id = f
            .iter()
            .find(|(n, _)| *n == 1)
            .context("a provider without an id")?;
        let addrs = f.iter().filter(|(n, _)| *n == 2).count();
        out.push((PeerId::from_bytes(&id.1)?, addrs));
    }
    Ok(out)
}
