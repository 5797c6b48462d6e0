//! Cells on a libp2p stream: exactly [`CELL_LEN`] bytes each, nothing else.

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use warren_protocol::onion::{CELL_LEN, Cell, Direction};

/// Reads cells from `reader` into `tx` tagged with `dir` until the stream ends or fails; the last
/// item is an `Err` naming why.
pub(crate) async fn read_cells<R: AsyncRead + Unpin>(
    mut reader: R,
    dir: Direction,
    tx: mpsc::Sender<(Direction, Result<Cell, String>)>,
) {
    let mut buf = vec![0u8; CELL_LEN];
    loop {
        let item = match reader.read_exact(&mut buf).await {
            Ok(()) => Cell::decode(&buf).map_err(|e| e.to_string()),
            Err(e) => Err(format!("link closed: {e}")),
        };
        let stop = item.is_err();
        if tx.send((dir, item)).await.is_err() || stop {
            return;
        }
    }
}

/// Writes `cells` in one go and flushes.
pub(crate) async fn write_cells<W: AsyncWrite + Unpin>(
    writer: &mut W,
    cells: &[Cell],
) -> Result<(), String> {
    if cells.is_empty() {
        return Ok(());
    }
    let mut out = Vec::with_capacity(cells.len() * CELL_LEN);
    for c in cells {
        out.extend_from_slice(&c.encode().map_err(|e| e.to_string())?);
    }
    writer
        .write_all(&out)
        .await
        .map_err(|e| format!("link write: {e}"))?;
    writer.flush().await.map_err(|e| format!("link flush: {e}"))
}

/// Reads exactly one cell.
pub(crate) async fn read_cell<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Cell, String> {
    let mut buf = vec![0u8; CELL_LEN];
    reader
        .read_exact(&mut buf)
        .await
        .map_err(|e| format!("link closed: {e}"))?;
    Cell::decode(&buf).map_err(|e| e.to_string())
}
