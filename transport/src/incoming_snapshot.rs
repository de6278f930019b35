//! [`IncomingSnapshot`]: a snapshot being received, and [`SnapshotWriter`], its feeding end.

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::{Error, Result, StoreId};

/// What a [`SnapshotWriter`] passes to its [`IncomingSnapshot`].
#[derive(Debug)]
enum Part {
    Chunk(Bytes),
    Done,
    Failed(Error),
}

/// A snapshot arriving from another store, handed to
/// [`FrameSink::on_snapshot`](crate::FrameSink::on_snapshot) as soon as its metadata arrives.
///
/// Read the body with [`next_chunk`](Self::next_chunk) until it returns `Ok(None)`, which
/// means the transport received the whole body and verified it (for gRPC: every chunk's
/// CRC-32 and the whole body's CRC-32 and length). Only then may the store apply it.
/// Chunks are buffered in a bounded queue, so reading slowly slows the sender.
#[derive(Debug)]
pub struct IncomingSnapshot {
    from: StoreId,
    meta: Bytes,
    rx: mpsc::Receiver<Part>,
    /// `Some(true)` once the body completed, `Some(false)` once it failed.
    ended: Option<bool>,
}

/// The transport's end of an [`IncomingSnapshot`]: pushes verified chunks, then finishes or
/// aborts. Dropping it without [`finish`](Self::finish) aborts the snapshot.
#[derive(Debug)]
pub struct SnapshotWriter {
    from: StoreId,
    tx: mpsc::Sender<Part>,
}

impl IncomingSnapshot {
    /// Creates a snapshot from store `from` with `meta`, buffering at most `capacity_chunks`
    /// chunks (at least 1) between the transport and the reader.
    #[must_use]
    pub fn channel(from: StoreId, meta: Bytes, capacity_chunks: usize) -> (SnapshotWriter, Self) {
        let (tx, rx) = mpsc::channel(capacity_chunks.max(1));
        (
            SnapshotWriter { from, tx },
            Self {
                from,
                meta,
                rx,
                ended: None,
            },
        )
    }

    /// The sending store.
    #[must_use]
    pub fn from(&self) -> StoreId {
        self.from
    }

    /// The metadata the sender attached.
    #[must_use]
    pub fn meta(&self) -> &Bytes {
        &self.meta
    }

    /// The next body chunk in order; `Ok(None)` once the whole body arrived and was verified.
    ///
    /// # Errors
    ///
    /// The transfer failed: [`Error::Corrupt`] on a checksum or protocol mismatch,
    /// [`Error::Disconnected`] if the link broke, or the error the sender's chunk source
    /// reported. After the end, later calls return `Ok(None)` again; after an error, they
    /// return [`Error::Closed`].
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        match self.ended {
            Some(true) => return Ok(None),
            Some(false) => return Err(Error::Closed),
            None => {}
        }
        match self.rx.recv().await {
            Some(Part::Chunk(chunk)) => Ok(Some(chunk)),
            Some(Part::Done) => {
                self.ended = Some(true);
                Ok(None)
            }
            Some(Part::Failed(error)) => {
                self.ended = Some(false);
                Err(error)
            }
            None => {
                self.ended = Some(false);
                Err(Error::Disconnected(self.from))
            }
        }
    }
}

impl SnapshotWriter {
    /// Pushes the next verified chunk, waiting while the reader's buffer is full.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the reader dropped the snapshot (rejected it).
    pub async fn write(&self, chunk: Bytes) -> Result<()> {
        self.tx
            .send(Part::Chunk(chunk))
            .await
            .map_err(|_| Error::Closed)
    }

    /// Marks the body complete and verified.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the reader dropped the snapshot (rejected it).
    pub async fn finish(self) -> Result<()> {
        self.tx.send(Part::Done).await.map_err(|_| Error::Closed)
    }

    /// Aborts the snapshot without waiting: the reader gets `error` after the chunks already
    /// buffered, or [`Error::Disconnected`] if the buffer is full.
    pub fn abort(self, error: Error) {
        // A reader that is gone needs no notice; a full buffer ends in `Disconnected`.
        let _ = self.tx.try_send(Part::Failed(error));
    }

    /// The sending store.
    #[must_use]
    pub fn from(&self) -> StoreId {
        self.from
    }
}
