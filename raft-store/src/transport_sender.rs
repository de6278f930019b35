//! Sending a store's Raft messages through a [`Transport`]: batching, bounded queues,
//! backpressure and unreachable reporting, once for every transport.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use prost::Message as _;
use raft_core::eraftpb::MessageType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, info, warn};
use transport::{OutgoingSnapshot, Transport};

use crate::msg::StoreMsg;
use crate::pb::raft_serverpb::{RaftMessage, RaftMessageBatch};
use crate::raft_worker::StoreMailbox;
use crate::sender::RaftMessageSender;
use crate::snapshot::{SnapKey, SnapKind, SnapManager, SnapshotError, message_descriptor};

/// Chunks read ahead of the transport while streaming a staged snapshot.
const SNAPSHOT_READ_AHEAD_CHUNKS: usize = 2;

/// Frames queued per destination store before new ones are shed.
pub const SEND_QUEUE_FRAMES: usize = 4096;

/// A [`RaftMessageSender`] over any [`Transport`]. Never blocks the raft worker: each
/// destination store has a bounded queue drained by its own task; when a queue is full
/// or a send fails, the messages are dropped and the store is reported unreachable so
/// its leaders stop streaming to it.
///
/// A snapshot message carries only the descriptor; its staged data is streamed from the
/// [`SnapManager`] after it, read lazily a few chunks ahead of the transport, so a
/// snapshot never sits in memory whole. At most `max_concurrent_snapshots` stream at
/// once; the outcome goes back to the store as [`StoreMsg::SnapshotStatus`].
pub struct TransportSender {
    transport: Arc<dyn Transport>,
    runtime: tokio::runtime::Handle,
    mailbox: StoreMailbox,
    queues: HashMap<u64, mpsc::Sender<Vec<Bytes>>>,
    pending: BTreeMap<u64, Vec<RaftMessage>>,
    max_frame_bytes: usize,
    snapshot_chunk_bytes: usize,
    snap_mgr: SnapManager,
}

impl std::fmt::Debug for TransportSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportSender")
            .field("peers", &self.queues.len())
            .finish_non_exhaustive()
    }
}

impl TransportSender {
    /// A sender over `transport` whose tasks run on `runtime`; failures are reported to
    /// the store through `mailbox`. Snapshots stream from `snap_mgr` (the store's) in
    /// transport chunks of `snapshot_chunk_bytes`.
    #[must_use]
    pub fn new(
        transport: Arc<dyn Transport>,
        runtime: tokio::runtime::Handle,
        mailbox: StoreMailbox,
        max_frame_bytes: usize,
        snapshot_chunk_bytes: usize,
        snap_mgr: SnapManager,
    ) -> Self {
        Self {
            transport,
            runtime,
            mailbox,
            queues: HashMap::new(),
            pending: BTreeMap::new(),
            max_frame_bytes: max_frame_bytes.max(1024),
            snapshot_chunk_bytes: snapshot_chunk_bytes.max(1024),
            snap_mgr,
        }
    }

    fn queue(&mut self, to: u64) -> &mpsc::Sender<Vec<Bytes>> {
        self.queues.entry(to).or_insert_with(|| {
            let (tx, mut rx) = mpsc::channel::<Vec<Bytes>>(SEND_QUEUE_FRAMES);
            let transport = self.transport.clone();
            let mailbox = self.mailbox.clone();
            self.runtime.spawn(async move {
                while let Some(mut frames) = rx.recv().await {
                    // Whatever queued up meanwhile goes in the same call.
                    while frames.len() < 256 {
                        match rx.try_recv() {
                            Ok(more) => frames.extend(more),
                            Err(_) => break,
                        }
                    }
                    if let Err(e) = transport.send(to, frames).await {
                        debug!(to, "send failed: {e}");
                        let _ = mailbox.try_send(StoreMsg::StoreUnreachable(to));
                    }
                }
            });
            tx
        })
    }

    fn send_snapshot(&mut self, to: u64, msg: RaftMessage) {
        let region_id = msg.region_id;
        let to_peer = msg.to_peer.map_or(0, |p| p.id);
        let mailbox = self.mailbox.clone();
        // The status must reach the store: a leader waits for it before sending the
        // follower anything else. Sent from a blocking thread, never from this one.
        let report = move |delivered: bool| {
            let status = StoreMsg::SnapshotStatus {
                region_id,
                to_peer,
                delivered,
            };
            if mailbox.send(status).is_err() {
                debug!(region_id, "store stopped before a snapshot status");
            }
        };
        let prepared = (|| {
            let meta = message_descriptor(&msg)?;
            let key = SnapKey::of(&meta);
            let slot = self
                .snap_mgr
                .try_send_slot()
                .ok_or(SnapshotError::Busy(self.snap_mgr.max_in_flight()))?;
            let staged = self
                .snap_mgr
                .acquire(SnapKind::Generated, key)
                .ok_or(SnapshotError::Missing(key))?;
            let pieces = staged.pieces(self.snapshot_chunk_bytes)?;
            Ok::<_, SnapshotError>((meta, slot, staged, pieces))
        })();
        let (meta, slot, staged, pieces) = match prepared {
            Ok(p) => p,
            Err(e) => {
                warn!(to, region_id, "cannot send a snapshot: {e}");
                crate::store_metrics::snapshot_failed("send");
                self.runtime.spawn_blocking(move || report(false));
                return;
            }
        };
        let key = staged.key();
        let transport = self.transport.clone();
        let runtime = self.runtime.clone();
        let header = Bytes::from(msg.encode_to_vec());
        self.runtime.spawn(async move {
            let started = Instant::now();
            let (tx, rx) = mpsc::channel(SNAPSHOT_READ_AHEAD_CHUNKS);
            let reader = runtime.spawn_blocking(move || {
                for piece in pieces {
                    if tx.blocking_send(piece).is_err() {
                        break; // the transport gave up
                    }
                }
            });
            let snapshot = OutgoingSnapshot::new(header, ReceiverStream::new(rx));
            let result = transport.send_snapshot(to, snapshot).await;
            let _ = reader.await;
            // The staged file and the slot are held until the transfer ended.
            drop((staged, slot));
            match &result {
                Ok(()) => {
                    let seconds = started.elapsed().as_secs_f64();
                    crate::store_metrics::snapshot_sent(meta.size_bytes, seconds);
                    info!(to, region_id, %key, size_bytes = meta.size_bytes, seconds, "snapshot sent");
                }
                Err(e) => {
                    crate::store_metrics::snapshot_failed("send");
                    warn!(to, region_id, %key, "snapshot send failed: {e}");
                }
            }
            let delivered = result.is_ok();
            let _ = runtime.spawn_blocking(move || report(delivered)).await;
        });
    }
}

/// Encodes messages into frames of at most `max_frame_bytes` (a single larger message
/// gets a frame of its own; the transport refuses it with `FrameTooLarge`).
#[must_use]
pub fn encode_frames(msgs: Vec<RaftMessage>, max_frame_bytes: usize) -> Vec<Bytes> {
    let mut frames = Vec::new();
    let mut batch = RaftMessageBatch::default();
    let mut size = 0;
    for m in msgs {
        let len = m.encoded_len() + 8;
        if !batch.messages.is_empty() && size + len > max_frame_bytes {
            frames.push(Bytes::from(std::mem::take(&mut batch).encode_to_vec()));
            size = 0;
        }
        size += len;
        batch.messages.push(m);
    }
    if !batch.messages.is_empty() {
        frames.push(Bytes::from(batch.encode_to_vec()));
    }
    frames
}

impl RaftMessageSender for TransportSender {
    fn send(&mut self, to_store: u64, msg: RaftMessage) {
        let is_snapshot = msg
            .message
            .as_ref()
            .is_some_and(|m| m.msg_type() == MessageType::MsgSnapshot);
        if is_snapshot {
            self.send_snapshot(to_store, msg);
        } else {
            self.pending.entry(to_store).or_default().push(msg);
        }
    }

    fn flush(&mut self) {
        for (to, msgs) in std::mem::take(&mut self.pending) {
            let frames = encode_frames(msgs, self.max_frame_bytes);
            if self.queue(to).try_send(frames).is_err() {
                debug!(to, "send queue full: messages shed");
                let _ = self.mailbox.try_send(StoreMsg::StoreUnreachable(to));
            }
        }
    }
}
