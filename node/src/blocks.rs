//! `/warren/blocks/1.0.0`: block get, store and audit between peers, on their own libp2p streams.
//!
//! Wire format and limits: `spec/block-transfer.md`. One request and one response per stream,
//! each side's write half closed to end its message; a reader stops at
//! [`MAX_MESSAGE_SIZE`] + 1 bytes. Decoding verifies every carried block against its id, so a
//! lying peer's answer never reaches the store.

use std::io;

use futures::prelude::*;

use crate::framing::{read_limited, write_close};
use libp2p::StreamProtocol;
use warren_protocol::block_transfer::{MAX_MESSAGE_SIZE, PROTOCOL_NAME as NAME, Request, Response};

/// The protocol name.
pub const PROTOCOL_NAME: StreamProtocol = StreamProtocol::new(NAME);

/// An inbound request, or why its bytes were refused.
pub type Inbound = Result<Request, String>;

/// The request-response codec.
#[derive(Clone, Copy, Debug, Default)]
pub struct Codec;

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Inbound;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Inbound>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_limited(io, MAX_MESSAGE_SIZE, "block message").await?;
        Ok(Request::decode(&bytes).map_err(|e| e.to_string()))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_limited(io, MAX_MESSAGE_SIZE, "block message").await?;
        Response::decode(&bytes).map_err(invalid)
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
        let req = req.map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        write_close(io, &req.encode().map_err(invalid)?).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_close(io, &res.encode().map_err(invalid)?).await
    }
}
