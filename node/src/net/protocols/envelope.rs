//! `/warren/envelope/1.0.0`: request-response of INOS envelopes on their own libp2p streams.
//!
//! Wire: one envelope per stream direction, the encoded bytes of `spec/envelope.md` written whole and
//! the write side closed (the stream end delimits the message). The reader stops at
//! [`MAX_ENVELOPE_SIZE`] + 1 bytes: an oversized request resets the stream without being buffered.
//! A request that arrives whole but does not decode gets an error envelope back
//! (`node:error:v1:failed`, payload = the reason in UTF-8), so a sender always learns why.
//!
//! Bulk data never rides here: envelopes are control messages (1 MiB at most).

use std::io;

use futures::prelude::*;

use crate::net::protocols::framing::{read_limited, write_close};
use libp2p::StreamProtocol;
use warren_protocol::{Envelope, EventType, MAX_ENVELOPE_SIZE, State};

/// The protocol name.
pub const PROTOCOL_NAME: StreamProtocol = StreamProtocol::new("/warren/envelope/1.0.0");

/// An inbound request: the envelope, or why the bytes that arrived were refused.
pub type Inbound = Result<Envelope, String>;

/// The request-response codec for envelopes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Codec;

fn encode(e: &Envelope) -> io::Result<Vec<u8>> {
    e.encode()
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err.to_string()))
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Inbound;
    type Response = Envelope;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Inbound>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_limited(io, MAX_ENVELOPE_SIZE, "envelope").await?;
        Ok(Envelope::decode(&bytes).map_err(|e| e.to_string()))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Envelope>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_limited(io, MAX_ENVELOPE_SIZE, "envelope").await?;
        Envelope::decode(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Inbound,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let env = req.map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        write_close(io, &encode(&env)?).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Envelope,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_close(io, &encode(&res)?).await
    }
}

/// The envelope sent back when a request could not be decoded: `node:error:v1:failed` with the
/// reason as its UTF-8 payload.
pub fn decode_error_reply(reason: &str, now_ms: u64) -> Envelope {
    let event = EventType {
        service: "node".into(),
        action: "error".into(),
        version: 1,
        state: State::Failed,
    };
    Envelope::new([0; 16], event, now_ms, reason.as_bytes().to_vec())
}
