//! The transport suite on the in-process `channel` transport, plus its fault injection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use conformance_tests::transport::{RecordingSink, TransportHarness};
use parking_lot::Mutex;
use transport::channel::{ChannelNetwork, ChannelTransport};
use transport::{FrameSink, StoreId, Transport};

/// Stores on one [`ChannelNetwork`].
struct ChannelHarness {
    network: ChannelNetwork,
    running: Mutex<HashMap<StoreId, Arc<ChannelTransport>>>,
}

impl ChannelHarness {
    const MAX_FRAME_BYTES: usize = 1 << 20;

    fn new() -> Self {
        let network = ChannelNetwork::new(7);
        network.set_max_frame_bytes(Self::MAX_FRAME_BYTES);
        Self {
            network,
            running: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl TransportHarness for ChannelHarness {
    async fn start(&self, store: StoreId, sink: Arc<dyn FrameSink>) -> Arc<dyn Transport> {
        let transport = Arc::new(self.network.register(store, sink));
        self.running.lock().insert(store, transport.clone());
        transport
    }

    async fn stop(&self, store: StoreId) {
        let transport = self.running.lock().remove(&store);
        if let Some(transport) = transport {
            transport.close().await;
        }
    }

    fn max_frame_bytes(&self) -> Option<usize> {
        Some(Self::MAX_FRAME_BYTES)
    }
}

conformance_tests::transport_suite!(ChannelHarness::new());

/// Three stores on a fresh network with seed `seed`.
fn three_stores(
    seed: u64,
) -> (
    ChannelNetwork,
    Vec<ChannelTransport>,
    Vec<Arc<RecordingSink>>,
) {
    let network = ChannelNetwork::new(seed);
    let sinks: Vec<_> = (0..3).map(|_| Arc::new(RecordingSink::default())).collect();
    let transports = (1..=3)
        .map(|id| network.register(id, sinks[id as usize - 1].clone()))
        .collect();
    (network, transports, sinks)
}

fn frame(tag: u64) -> Bytes {
    Bytes::copy_from_slice(&tag.to_be_bytes())
}

fn tags(sink: &RecordingSink) -> Vec<u64> {
    sink.batches()
        .iter()
        .flat_map(|(_, frames)| {
            frames
                .iter()
                .map(|f| u64::from_be_bytes(f[..8].try_into().expect("8-byte tag")))
        })
        .collect()
}

#[tokio::test]
async fn partition_blocks_and_heal_restores() {
    let (network, t, sinks) = three_stores(1);
    network.partition(&[&[1], &[2, 3]]);
    t[0].send(2, vec![frame(1)]).await.unwrap();
    t[1].send(3, vec![frame(2)]).await.unwrap();
    sinks[2].wait_frames(1).await;
    assert_eq!(network.dropped(), 1);
    network.heal();
    t[0].send(2, vec![frame(3)]).await.unwrap();
    sinks[1].wait_frames(1).await;
    assert_eq!(tags(&sinks[1]), vec![3]);
    assert_eq!((network.delivered(), network.dropped()), (2, 1));
}

#[tokio::test]
async fn one_way_partition_cuts_one_direction() {
    let (network, t, sinks) = three_stores(1);
    network.one_way_partition(1, 2);
    t[0].send(2, vec![frame(1)]).await.unwrap();
    t[1].send(1, vec![frame(2)]).await.unwrap();
    sinks[0].wait_frames(1).await;
    assert_eq!(network.dropped(), 1);
    assert_eq!(sinks[1].frame_count(), 0);
}

#[tokio::test]
async fn filter_drops_by_content_until_removed() {
    let (network, t, sinks) = three_stores(1);
    let odd = network.add_filter(|_, _, frame: &Bytes| frame[7] % 2 == 1);
    t[0].send(2, (0..10).map(frame).collect()).await.unwrap();
    sinks[1].wait_frames(5).await;
    network.remove_filter(odd);
    t[0].send(2, vec![frame(11)]).await.unwrap();
    sinks[1].wait_frames(6).await;
    assert_eq!(tags(&sinks[1]), vec![0, 2, 4, 6, 8, 11]);
    assert_eq!(network.dropped(), 5);
}

/// Sends 200 single-frame batches with faults on, then heals and sends a marker; returns
/// the tags store 2 received and the counters once nothing is in flight.
async fn faulty_run(seed: u64, setup: impl Fn(&ChannelNetwork)) -> (Vec<u64>, u64, u64) {
    let (network, t, sinks) = three_stores(seed);
    setup(&network);
    for tag in 0..200 {
        t[0].send(2, vec![frame(tag)]).await.expect("send");
    }
    network.heal();
    t[0].send(2, vec![frame(1_000)]).await.expect("send");
    tokio::time::timeout(conformance_tests::transport::GUARD, network.wait_idle())
        .await
        .expect("the network settles");
    let received = tags(&sinks[1]);
    assert_eq!(received.len() as u64, network.delivered());
    (received, network.delivered(), network.dropped())
}

#[tokio::test]
async fn drop_rate_is_seeded_and_counted() {
    let run = |seed| faulty_run(seed, |n| n.set_drop_rate(0.3));
    let (received, delivered, dropped) = run(11).await;
    assert_eq!(
        delivered + dropped,
        201,
        "every frame is either delivered or dropped"
    );
    assert!(
        (20..100).contains(&dropped),
        "seed 11 dropped {dropped} of 200"
    );
    let mut sorted = received.clone();
    sorted.sort_unstable();
    assert_eq!(received, sorted, "drops alone must not reorder");
    assert_eq!(run(11).await.0, received, "same seed, same losses");
}

#[tokio::test]
async fn duplicates_and_reordering() {
    let (received, delivered, dropped) = faulty_run(5, |n| {
        n.set_duplicate_rate(0.2);
        n.set_reorder_rate(0.2);
    })
    .await;
    assert_eq!(dropped, 0);
    assert!(
        delivered > 201,
        "seed 5: no duplicate in {delivered} deliveries"
    );
    let mut unique = received.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 201, "every frame arrives at least once");
    assert!(
        received.windows(2).any(|w| w[0] > w[1]),
        "seed 5: nothing was reordered"
    );
}

#[tokio::test]
async fn delay_keeps_link_order() {
    let (received, delivered, _) = faulty_run(3, |n| {
        n.set_delay(Duration::from_millis(1)..Duration::from_millis(20));
    })
    .await;
    assert_eq!(delivered, 201);
    assert_eq!(received, (0..200).chain([1_000]).collect::<Vec<_>>());
}
