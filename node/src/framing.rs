//! Stream framing shared by warren's request-response protocols: one message per stream
//! direction, delimited by closing the write half, read with a hard size limit.

use std::io;

use futures::prelude::*;

/// Reads one whole message, stopping after `limit` + 1 bytes: a longer message is an error and is
/// never buffered beyond that. `what` names the message in the error.
pub(crate) async fn read_limited<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    limit: usize,
    what: &str,
) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(limit as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} larger than the {limit}-byte limit"),
        ));
    }
    Ok(buf)
}

/// Writes one whole message and closes the write half, which ends it.
pub(crate) async fn write_close<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
) -> io::Result<()> {
    io.write_all(bytes).await?;
    io.close().await
}
