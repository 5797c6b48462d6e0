//! Stream framing shared by warren's request-response protocols: one message per stream
//! direction, delimited by closing the write half, read with a hard size limit.

use std::io;

use futures::prelude::*;

/// First buffer of [`read_limited`]; most messages fit.
const FIRST_READ: usize = 16 << 10;

/// Reads one whole message, stopping after `limit` + 1 bytes: a longer message is an error and is
/// never buffered beyond that. `what` names the message in the error.
///
/// The buffer grows fourfold from [`FIRST_READ`] and straight to `limit` + 1 once that is within
/// a factor two: a 1 MiB block arrives in four buffers instead of the sixteen doublings (each a
/// copy and a zeroing of fresh memory) a plain `read_to_end` makes.
pub(crate) async fn read_limited<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    limit: usize,
    what: &str,
) -> io::Result<Vec<u8>> {
    let cap = limit.saturating_add(1);
    let mut buf = vec![0u8; FIRST_READ.min(cap)];
    let mut len = 0;
    loop {
        if len == buf.len() {
            if len == cap {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{what} larger than the {limit}-byte limit"),
                ));
            }
            let next = len.saturating_mul(4);
            let next = if next.saturating_mul(2) > cap {
                cap
            } else {
                next
            };
            buf.resize(next, 0);
        }
        let n = io.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
    }
    buf.truncate(len);
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read(bytes: &[u8], limit: usize) -> io::Result<Vec<u8>> {
        futures::executor::block_on(read_limited(
            &mut futures::io::Cursor::new(bytes),
            limit,
            "test message",
        ))
    }

    #[test]
    fn messages_up_to_the_limit_read_back_whole_across_every_growth_step() {
        let limit = (1 << 20) + 1024;
        let data: Vec<u8> = (0..limit + 1).map(|i| (i * 7 + i / 251) as u8).collect();
        let sizes = [
            0,
            1,
            FIRST_READ - 1,
            FIRST_READ,
            FIRST_READ + 1,
            64 << 10,
            256 << 10,
        ]
        .into_iter()
        .chain([(256 << 10) + 1, 1 << 20, (1 << 20) + 70, limit]);
        for n in sizes {
            assert_eq!(
                read(&data[..n], limit).expect("within the limit"),
                &data[..n]
            );
        }
    }

    #[test]
    fn one_byte_over_the_limit_is_refused_naming_the_message() {
        for limit in [0, 10, FIRST_READ, (1 << 20) + 1024] {
            let data = vec![9u8; limit + 1];
            let err = read(&data, limit).expect_err("over the limit");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(
                err.to_string().contains("test message larger than"),
                "{err}"
            );
            assert!(read(&data[..limit], limit).is_ok());
        }
    }

    proptest! {
        #[test]
        fn any_message_within_any_limit_reads_back(
            data in proptest::collection::vec(any::<u8>(), 0..200_000),
            slack in 0usize..100_000,
        ) {
            let limit = data.len() + slack;
            prop_assert_eq!(read(&data, limit).expect("within the limit"), data.clone());
            if !data.is_empty() {
                prop_assert!(read(&data, data.len() - 1).is_err());
            }
        }
    }
}
