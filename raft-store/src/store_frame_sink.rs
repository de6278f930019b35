//! Receiving Raft messages from a [`transport`] into a store's mailbox.

use bytes::BytesMut;
use prost::Message as _;
use tracing::{debug, warn};
use transport::{FrameSink, IncomingSnapshot, StoreId};

use crate::msg::StoreMsg;
use crate::pb::raft_serverpb::{RaftMessage, RaftMessageBatch};
use crate::raft_worker::StoreMailbox;

/// The largest snapshot a store accepts.
pub const MAX_SNAPSHOT_BYTES: usize = 4 << 30;

/// Decodes inbound frames and snapshots and hands the messages to a store's mailbox.
/// Never blocks: a full mailbox drops messages (Raft retransmits).
#[derive(Debug, Clone)]
pub struct StoreFrameSink {
    mailbox: StoreMailbox,
}

impl StoreFrameSink {
    /// A sink delivering into `mailbox`.
    #[must_use]
    pub fn new(mailbox: StoreMailbox) -> Self {
        Self { mailbox }
    }

    fn deliver(&self, msg: RaftMessage) {
        if let Err(e) = self.mailbox.try_send(StoreMsg::RaftMessage(Box::new(msg))) {
            crate::store_metrics::message_dropped();
            debug!("inbound raft message dropped: {e}");
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

    fn on_snapshot(&self, from: StoreId, mut snapshot: IncomingSnapshot) {
        let sink = self.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::new();
            loop {
                match snapshot.next_chunk().await {
                    Ok(Some(chunk)) if buf.len() + chunk.len() <= MAX_SNAPSHOT_BYTES => {
                        buf.extend_from_slice(&chunk);
                    }
                    Ok(Some(_)) => {
                        warn!(
                            from,
                            "snapshot larger than {MAX_SNAPSHOT_BYTES} bytes rejected"
                        );
                        return;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        warn!(from, "snapshot stream failed: {e}");
                        return;
                    }
                }
            }
            match RaftMessage::decode(buf.freeze()) {
                Ok(msg) => sink.deliver(msg),
                Err(e) => warn!(from, "undecodable snapshot message dropped: {e}"),
            }
        });
    }
}
