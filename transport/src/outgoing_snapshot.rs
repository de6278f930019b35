//! [`OutgoingSnapshot`]: a snapshot being sent.

use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use tokio_stream::{Stream, StreamExt};

use crate::Result;

/// The stream of body chunks of an [`OutgoingSnapshot`].
pub type ChunkStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + 'static>>;

/// A snapshot to send: opaque metadata plus a stream of body chunks produced on demand, so a
/// large snapshot never has to sit in memory whole.
///
/// Chunk boundaries are a hint: a transport may split or merge chunks, but the concatenation
/// of the body is preserved byte for byte.
pub struct OutgoingSnapshot {
    meta: Bytes,
    chunks: ChunkStream,
}

impl OutgoingSnapshot {
    /// A snapshot whose body is produced by `chunks`; an `Err` item aborts the transfer.
    pub fn new<S>(meta: Bytes, chunks: S) -> Self
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        Self {
            meta,
            chunks: Box::pin(chunks),
        }
    }

    /// A snapshot whose body is already in memory.
    #[must_use]
    pub fn from_chunks(meta: Bytes, chunks: Vec<Bytes>) -> Self {
        Self::new(meta, tokio_stream::iter(chunks.into_iter().map(Ok)))
    }

    /// The opaque metadata, delivered before the body.
    #[must_use]
    pub fn meta(&self) -> &Bytes {
        &self.meta
    }

    /// The next body chunk, or `None` at the end of the body.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if the chunk source failed.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        Ok(self.chunks.next().await.transpose()?)
    }

    /// Splits the snapshot into its metadata and chunk stream.
    #[must_use]
    pub fn into_parts(self) -> (Bytes, ChunkStream) {
        (self.meta, self.chunks)
    }
}

impl fmt::Debug for OutgoingSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingSnapshot")
            .field("meta_bytes", &self.meta.len())
            .finish_non_exhaustive()
    }
}
