//! [`ChannelTransport`]: one store's handle on a [`ChannelNetwork`].

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::channel_network::ChannelNetwork;
use crate::{Error, IncomingSnapshot, OutgoingSnapshot, Result, StoreId, Transport};

/// Chunks buffered between a snapshot's sender and its reader.
const SNAPSHOT_BUFFER_CHUNKS: usize = 8;

/// The [`Transport`] of one store on a [`ChannelNetwork`], made by
/// [`ChannelNetwork::register`].
///
/// Sends never wait: a batch is judged by the network's fault plan and queued on its link.
/// Sending to a store that is not registered (or was closed) fails at once with
/// [`Error::Unreachable`]; frames lost to faults are dropped silently, as on a real network.
///
/// A snapshot is streamed straight into the receiver's [`IncomingSnapshot`]. It fails with
/// [`Error::Unreachable`] across a partition and with [`Error::Disconnected`] when a filter
/// (applied to its metadata) or the drop rate takes it; delay, duplication and reordering
/// do not apply to snapshots.
#[derive(Debug)]
pub struct ChannelTransport {
    network: ChannelNetwork,
    store: StoreId,
    generation: u64,
    closed: AtomicBool,
}

impl ChannelTransport {
    pub(super) fn new(network: ChannelNetwork, store: StoreId, generation: u64) -> Self {
        Self {
            network,
            store,
            generation,
            closed: AtomicBool::new(false),
        }
    }

    /// The store this transport sends from.
    #[must_use]
    pub fn store_id(&self) -> StoreId {
        self.store
    }

    /// The network this transport belongs to.
    #[must_use]
    pub fn network(&self) -> &ChannelNetwork {
        &self.network
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }
}

#[async_trait]
impl Transport for ChannelTransport {
    async fn send(&self, to: StoreId, frames: Vec<Bytes>) -> Result<()> {
        self.check_open()?;
        let inner = &self.network.inner;
        let max_bytes =
            usize::try_from(inner.max_frame_bytes.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        crate::check_frame_sizes(&frames, max_bytes)?;
        let registration = inner.registration(to).ok_or(Error::Unreachable(to))?;
        if frames.is_empty() {
            return Ok(());
        }
        let fate = inner.faults.lock().plan_batch(self.store, to, frames);
        inner.count_dropped(fate.dropped_count);
        if fate.frames.is_empty() || inner.enqueue(self.store, to, registration.generation, fate) {
            Ok(())
        } else {
            Err(Error::Unreachable(to))
        }
    }

    async fn send_snapshot(&self, to: StoreId, snapshot: OutgoingSnapshot) -> Result<()> {
        self.check_open()?;
        let inner = &self.network.inner;
        let (meta, mut chunks) = snapshot.into_parts();
        if inner.registration(to).is_none() || inner.faults.lock().is_blocked(self.store, to) {
            return Err(Error::Unreachable(to));
        }
        if !inner.faults.lock().plan_snapshot(self.store, to, &meta) {
            return Err(Error::Disconnected(to));
        }
        let (writer, incoming) =
            IncomingSnapshot::channel(self.store, meta, SNAPSHOT_BUFFER_CHUNKS);
        {
            let stores = inner.stores.read();
            let registration = stores.get(&to).ok_or(Error::Unreachable(to))?;
            registration.sink.on_snapshot(self.store, incoming);
        }
        while let Some(chunk) = tokio_stream::StreamExt::next(&mut chunks).await {
            match chunk {
                Ok(chunk) => writer
                    .write(chunk)
                    .await
                    .map_err(|_| Error::Disconnected(to))?,
                Err(error) => {
                    let notice = std::io::Error::new(error.kind(), error.to_string());
                    writer.abort(Error::Io(notice));
                    return Err(Error::Io(error));
                }
            }
            self.check_open()?;
        }
        writer.finish().await.map_err(|_| Error::Disconnected(to))
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.network.inner.unregister(self.store, self.generation);
    }
}
