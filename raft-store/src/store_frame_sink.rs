//! Receiving Raft messages from a [`transport`] into a store's mailbox.

use std::time::Instant;

use prost::Message as _;
use tracing::{debug, info, warn};
use transport::{FrameSink, IncomingSnapshot, StoreId};

use crate::msg::StoreMsg;
use crate::pb::raft_serverpb::{RaftMessage, RaftMessageBatch};
use crate::raft_worker::StoreMailbox;
use crate::snapshot::{SnapKey, SnapManager, SnapshotError, message_descriptor};

/// Decodes inbound frames and snapshots and hands the messages to a store's mailbox.
/// Never blocks the transport: a full mailbox drops frames (Raft retransmits), and a
/// snapshot is received on a blocking thread of the runtime.
///
/// A snapshot's metadata is the encoded `RaftMessage` carrying the descriptor; its body is
/// the staged stream, verified frame by frame (and in total) while it is staged to the
/// store's [`SnapManager`]. Only a fully verified snapshot reaches the mailbox. At most
/// `max_concurrent_snapshots` are received at once; more are refused (the sender retries).
#[derive(Debug, Clone)]
pub struct StoreFrameSink {
    mailbox: StoreMailbox,
    snap_mgr: SnapManager,
}

impl StoreFrameSink {
    /// A sink delivering into `mailbox`, staging snapshots in `snap_mgr` (the store's).
    #[must_use]
    pub fn new(mailbox: StoreMailbox, snap_mgr: SnapManager) -> Self {
        Self { mailbox, snap_mgr }
    }

    fn deliver(&self, msg: RaftMessage) {
        if let Err(e) = self.mailbox.try_send(StoreMsg::RaftMessage(Box::new(msg))) {
            crate::store_metrics::message_dropped();
            debug!("inbound raft message dropped: {e}");
        }
    }

    /// Receives one snapshot on the calling (blocking) thread; `runtime` drives the
    /// transport's chunk stream.
    fn receive_snapshot(
        &self,
        from: StoreId,
        mut snapshot: IncomingSnapshot,
        runtime: &tokio::runtime::Handle,
    ) {
        let started = Instant::now();
        let decoded = RaftMessage::decode(snapshot.meta().clone())
            .map_err(|e| SnapshotError::BadDescriptor(e.to_string()))
            .and_then(|msg| Ok((message_descriptor(&msg)?, msg)));
        let (meta, msg) = match decoded {
            Ok(d) => d,
            Err(e) => {
                crate::store_metrics::snapshot_failed("receive");
                warn!(from, "snapshot refused: {e}");
                return;
            }
        };
        let key = SnapKey::of(&meta);
        let region_id = msg.region_id;
        let _span = tracing::info_span!("snapshot_receive", region_id, %key).entered();
        let Some(_slot) = self.snap_mgr.try_receive_slot() else {
            crate::store_metrics::snapshot_failed("receive");
            warn!(
                from,
                "snapshot refused: {} already being received",
                self.snap_mgr.max_in_flight()
            );
            return; // dropping `snapshot` rejects it
        };
        let received = self.snap_mgr.receive(&meta, || {
            runtime
                .block_on(snapshot.next_chunk())
                .map_err(|e| SnapshotError::Aborted(e.to_string()))
        });
        match received {
            Ok(summary) => {
                let seconds = started.elapsed().as_secs_f64();
                crate::store_metrics::snapshot_received(summary.size_bytes, seconds);
                info!(
                    from,
                    size_bytes = summary.size_bytes,
                    keys = summary.key_count,
                    seconds,
                    "snapshot received"
                );
                // Staged and verified: worth waiting for room in the mailbox.
                if self
                    .mailbox
                    .send(StoreMsg::RaftMessage(Box::new(msg)))
                    .is_err()
                {
                    debug!("store stopped before a received snapshot was delivered");
                }
            }
            Err(e) => {
                crate::store_metrics::snapshot_failed("receive");
                warn!(from, "snapshot refused: {e}");
            }
        }
    }
}

impl FrameSink for StoreFrameSink {
    fn on_frames(&self, from: StoreId, frames: Vec<bytes::Bytes>) {
        for frame in frames {
            match RaftMessageBatch::decode(frame) {
                Ok(batch) => batch.messages.into_iter().for_each(|m| self.deliver(m)),
                Err(e) => warn!(from, "undecodable raft frame dropped: {e}"),
            }
        }
    }

    fn on_snapshot(&self, from: StoreId, snapshot: IncomingSnapshot) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            warn!(from, "snapshot refused: no async runtime to receive it on");
            return;
        };
        let sink = self.clone();
        // Staging writes files: a blocking thread, not the transport's tasks.
        runtime.clone().spawn_blocking(move || {
            sink.receive_snapshot(from, snapshot, &runtime);
        });
    }
}
