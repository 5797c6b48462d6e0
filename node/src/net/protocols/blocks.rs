//! `/warren/blocks/2.0.0`: block get, store and audit between peers, on their own libp2p streams.
//!
//! Wire format and limits: `spec/block-transfer.md`. One request and one response per stream,
//! each side's write half closed to end its message; a reader stops at
//! [`MAX_MESSAGE_SIZE`] + 1 bytes.
//!
//! The codec only frames bytes: it runs inside the connection's task, which also encrypts and
//! decrypts every byte of that connection, so the costly part of a message — decoding it and
//! hashing the block it carries against its id — happens on a blocking thread instead
//! ([`crate::net::Client::blocks`] for answers, the event loop's `serve_blocks` for
//! requests). A lying peer's block is still refused before it is stored or used: nothing reads a
//! message except through `Request::decode` / `Response::decode`, which verify.

use std::io;

use futures::prelude::*;

use crate::net::protocols::framing::{read_limited, write_close};
use libp2p::StreamProtocol;
use warren_protocol::block_transfer::{MAX_MESSAGE_SIZE, PROTOCOL_NAME as NAME};

/// The protocol name.
pub const PROTOCOL_NAME: StreamProtocol = StreamProtocol::new(NAME);

/// An encoded message (request or response), at most [`MAX_MESSAGE_SIZE`] bytes, not decoded.
pub type Encoded = Vec<u8>;

/// The request-response codec: framing and the size limit only.
#[derive(Clone, Copy, Debug, Default)]
pub struct Codec;

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Encoded;
    type Response = Encoded;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Encoded>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_limited(io, MAX_MESSAGE_SIZE, "block message").await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Encoded>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_limited(io, MAX_MESSAGE_SIZE, "block message").await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Encoded,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_close(io, &req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Encoded,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_close(io, &res).await
    }
}
