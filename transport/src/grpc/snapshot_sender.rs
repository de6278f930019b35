//! Sends one snapshot as a `Snapshot` call: header, CRC-checked chunks, trailer.

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::grpc_transport::Shared;
use super::peer;
use super::proto::snapshot_message::Kind;
use super::proto::{SnapshotChunk, SnapshotHeader, SnapshotMessage, SnapshotTrailer};
use crate::{Error, OutgoingSnapshot, Result, StoreId};

/// Messages buffered between the chunk producer and tonic's request stream.
const BUFFER_MESSAGES: usize = 4;

/// Streams `snapshot` to `to` on a connection of its own; returns once `to` acknowledged
/// the verified body.
pub(super) async fn send(shared: &Shared, to: StoreId, snapshot: OutgoingSnapshot) -> Result<()> {
    let channel = peer::connect(shared, to).await?;
    let mut client = peer::client(shared, channel);
    let (tx, rx) = mpsc::channel(BUFFER_MESSAGES);
    let produce = produce(
        shared.store,
        shared.config.snapshot_chunk_bytes,
        to,
        snapshot,
        tx,
    );
    let (produced, call) = tokio::join!(produce, client.snapshot(ReceiverStream::new(rx)));
    // A failing chunk source explains a failed call better than the call's status.
    produced?;
    call.map(|_| ()).map_err(|status| {
        tracing::warn!(store = to, %status, "snapshot transfer failed");
        Error::Disconnected(to)
    })
}

/// Feeds the call: header, chunks of at most `chunk_bytes` with their CRC-32, trailer.
/// Returning early (without trailer) drops `tx`, which makes the receiver abort.
async fn produce(
    from: StoreId,
    chunk_bytes: usize,
    to: StoreId,
    snapshot: OutgoingSnapshot,
    tx: mpsc::Sender<SnapshotMessage>,
) -> Result<()> {
    let chunk_bytes = chunk_bytes.max(1);
    let (meta, mut chunks) = snapshot.into_parts();
    let send = |kind| {
        let tx = tx.clone();
        async move {
            tx.send(SnapshotMessage { kind: Some(kind) })
                .await
                .map_err(|_| Error::Disconnected(to))
        }
    };
    send(Kind::Header(SnapshotHeader {
        from_store: from,
        meta,
    }))
    .await?;
    let mut hasher = crc32fast::Hasher::new();
    let mut total_bytes: u64 = 0;
    while let Some(chunk) = chunks.next().await {
        let mut chunk = chunk?;
        while !chunk.is_empty() {
            let data = chunk.split_to(chunk.len().min(chunk_bytes));
            hasher.update(&data);
            total_bytes += data.len() as u64;
            let crc32 = crc32fast::hash(&data);
            send(Kind::Chunk(SnapshotChunk { data, crc32 })).await?;
        }
    }
    let crc32 = hasher.finalize();
    send(Kind::Trailer(SnapshotTrailer { total_bytes, crc32 })).await
}
