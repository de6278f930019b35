//! The tokio task that delivers one link's batches when they fall due.

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::channel_network::{ChannelNetwork, NetworkInner};
use super::fault_plan::BatchFate;
use super::link_queue::LinkQueue;
use crate::StoreId;

/// A batch on its way through a link.
#[derive(Debug)]
pub(super) struct Envelope {
    /// Send time, relative to the network's epoch.
    pub(super) sent_at: Duration,
    /// The receiver's incarnation when the batch was sent.
    pub(super) to_generation: u64,
    pub(super) fate: BatchFate,
}

/// Delivers the batches of link `from → to` until the network is dropped.
pub(super) async fn run(
    from: StoreId,
    to: StoreId,
    mut rx: mpsc::Receiver<Envelope>,
    network: Weak<NetworkInner>,
) {
    let mut queue: LinkQueue<(u64, Vec<Bytes>)> = LinkQueue::new();
    let Some(epoch) = network.upgrade().map(|n| n.epoch) else {
        return;
    };
    loop {
        let next_due = queue.next_due();
        let has_room = queue.len() < ChannelNetwork::LINK_QUEUE_BATCHES_MAX;
        tokio::select! {
            biased;
            envelope = rx.recv(), if has_room => {
                let Some(Envelope { sent_at, to_generation, fate }) = envelope else { return };
                queue.push(sent_at, fate.delay, fate.reordered, (to_generation, fate.frames));
            }
            () = tokio::time::sleep_until(epoch + next_due.unwrap_or_default()),
                if next_due.is_some() => {}
        }
        let Some(network) = network.upgrade() else {
            return;
        };
        let now = epoch.elapsed();
        while let Some((generation, frames)) = queue.pop_due(now) {
            deliver(&network, from, to, generation, frames);
        }
    }
}

/// Hands `frames` to `to`'s sink if the incarnation they were sent to is still running.
fn deliver(
    network: &NetworkInner,
    from: StoreId,
    to: StoreId,
    generation: u64,
    frames: Vec<Bytes>,
) {
    let count = frames.len() as u64;
    let stores = network.stores.read();
    match stores.get(&to) {
        Some(registration) if registration.generation == generation => {
            registration.sink.on_frames(from, frames);
            network.delivered_count.fetch_add(count, Ordering::Relaxed);
        }
        _ => network.count_dropped(count),
    }
    network.in_flight_count.send_modify(|n| *n -= count);
}
