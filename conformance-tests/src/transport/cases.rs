//! The cases of the transport suite. Each takes a fresh harness.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use transport::{Error, OutgoingSnapshot, StoreId, Transport};

use super::TransportHarness;
use super::recording_sink::{GUARD, RecordingSink};

/// Size of the body of the large-snapshot case.
pub const LARGE_SNAPSHOT_BYTES: usize = 64 << 20;

/// Awaits `future`, failing the test with `what` if it takes longer than [`GUARD`].
async fn guard<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not complete within {GUARD:?}"),
    }
}

/// Starts `store` with a fresh [`RecordingSink`].
async fn start(
    harness: &dyn TransportHarness,
    store: StoreId,
) -> (Arc<dyn Transport>, Arc<RecordingSink>) {
    let sink = Arc::new(RecordingSink::default());
    let transport = guard("starting a store", harness.start(store, sink.clone())).await;
    (transport, sink)
}

/// A frame of `len_bytes` (at least 16) carrying its sender and sequence number.
fn frame(from: StoreId, seq: u64, len_bytes: usize) -> Bytes {
    let mut buf = BytesMut::with_capacity(len_bytes.max(16));
    buf.put_u64(from);
    buf.put_u64(seq);
    buf.resize(len_bytes.max(16), (seq % 251) as u8);
    buf.freeze()
}

/// The `(from, seq)` a [`frame`] carries.
fn frame_id(frame: &Bytes) -> (StoreId, u64) {
    assert!(
        frame.len() >= 16,
        "frame of {} bytes was truncated",
        frame.len()
    );
    let word = |at: usize| {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&frame[at..at + 8]);
        u64::from_be_bytes(bytes)
    };
    (word(0), word(8))
}

/// Sends `batch_count` batches of `batch_len` frames, numbering frames from `first_seq`.
async fn send_numbered(
    transport: &dyn Transport,
    from: StoreId,
    to: StoreId,
    first_seq: u64,
    batch_count: u64,
    batch_len: u64,
) {
    for batch in 0..batch_count {
        let start = first_seq + batch * batch_len;
        let frames = (start..start + batch_len)
            .map(|seq| frame(from, seq, 64))
            .collect();
        let sent = guard("send", transport.send(to, frames)).await;
        assert!(
            sent.is_ok(),
            "send {from}->{to} of batch {batch} failed: {sent:?}"
        );
    }
}

/// Asserts that `sink` received, from each sender, exactly `0..count` in order.
fn assert_fifo(sink: &RecordingSink, expected: &HashMap<StoreId, u64>) {
    let mut next: HashMap<StoreId, u64> = HashMap::new();
    for (from, frames) in sink.batches() {
        for frame in &frames {
            let (sender, seq) = frame_id(frame);
            assert_eq!(sender, from, "frame from {sender} was attributed to {from}");
            let want = next.entry(from).or_insert(0);
            assert_eq!(seq, *want, "link {from}: got frame {seq}, expected {want}");
            *want += 1;
        }
    }
    for (from, count) in expected {
        assert_eq!(
            next.get(from).copied().unwrap_or(0),
            *count,
            "frames from {from}"
        );
    }
}

/// Without faults, each link delivers every frame, in send order, attributed to its sender.
pub async fn fifo_per_link(harness: &dyn TransportHarness) {
    let (t1, sink1) = start(harness, 1).await;
    let (t2, sink2) = start(harness, 2).await;
    let (t3, _sink3) = start(harness, 3).await;
    let (batches, per_batch) = (200, 5);
    tokio::join!(
        send_numbered(t1.as_ref(), 1, 2, 0, batches, per_batch),
        send_numbered(t3.as_ref(), 3, 2, 0, batches, per_batch),
        send_numbered(t2.as_ref(), 2, 1, 0, batches, per_batch),
    );
    let total = (batches * per_batch) as usize;
    sink2.wait_frames(2 * total).await;
    sink1.wait_frames(total).await;
    assert_fifo(
        &sink2,
        &HashMap::from([(1, batches * per_batch), (3, batches * per_batch)]),
    );
    assert_fifo(&sink1, &HashMap::from([(2, batches * per_batch)]));
    for transport in [t1, t2, t3] {
        transport.close().await;
    }
}

/// Each `send` reaches the sink as one call with the same frames, whatever their sizes.
pub async fn batches_arrive_whole(harness: &dyn TransportHarness) {
    let (t1, _sink1) = start(harness, 1).await;
    let (_t2, sink2) = start(harness, 2).await;
    let mut sent = Vec::new();
    let mut seq = 0;
    for batch in 0..100_usize {
        let frames: Vec<Bytes> = (0..(batch % 17) + 1)
            .map(|i| {
                seq += 1;
                frame(1, seq, 16 + (batch * 131 + i * 977) % 3000)
            })
            .collect();
        guard("send", t1.send(2, frames.clone()))
            .await
            .expect("send");
        sent.push(frames);
    }
    sink2.wait_frames(sent.iter().map(Vec::len).sum()).await;
    let received: Vec<Vec<Bytes>> = sink2.batches().into_iter().map(|(_, f)| f).collect();
    assert_eq!(received.len(), sent.len(), "batches were split or merged");
    assert!(received == sent, "batches differ from what was sent");
    t1.close().await;
}

/// The body of the large snapshot: chunks of uneven sizes with their index stamped in.
fn snapshot_chunks() -> impl Iterator<Item = Bytes> {
    let block: Vec<u8> = (0..(1_u32 << 21))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut total = 0;
    (0_usize..).map_while(move |index| {
        if total >= LARGE_SNAPSHOT_BYTES {
            return None;
        }
        let len = ((768 << 10) + index * 104_729 % (512 << 10)).min(LARGE_SNAPSHOT_BYTES - total);
        let mut chunk = BytesMut::from(&block[index % 1024..index % 1024 + len]);
        chunk[..8.min(len)].copy_from_slice(&(index as u64).to_be_bytes()[..8.min(len)]);
        total += len;
        Some(chunk.freeze())
    })
}

/// A ≥ 64 MiB snapshot arrives byte-identical (length and CRC-32 of the body), with its
/// metadata, and `send_snapshot` returns only after the receiver verified it.
pub async fn large_snapshot(harness: &dyn TransportHarness) {
    let (t1, _sink1) = start(harness, 1).await;
    let (_t2, sink2) = start(harness, 2).await;
    let mut expected = crc32fast::Hasher::new();
    let mut expected_len = 0;
    for chunk in snapshot_chunks() {
        expected.update(&chunk);
        expected_len += chunk.len();
    }
    let expected_crc = expected.finalize();
    let meta = Bytes::from_static(b"region 7, index 1234, term 5");
    let snapshot =
        OutgoingSnapshot::new(meta.clone(), tokio_stream::iter(snapshot_chunks().map(Ok)));
    let receive = async {
        let mut incoming = sink2.next_snapshot().await;
        assert_eq!(incoming.from(), 1);
        assert_eq!(incoming.meta(), &meta);
        let mut hasher = crc32fast::Hasher::new();
        let mut len = 0;
        while let Some(chunk) = incoming.next_chunk().await.expect("snapshot body") {
            hasher.update(&chunk);
            len += chunk.len();
        }
        (len, hasher.finalize())
    };
    let (sent, received) = guard("64 MiB snapshot", async {
        tokio::join!(t1.send_snapshot(2, snapshot), receive)
    })
    .await;
    assert!(sent.is_ok(), "send_snapshot failed: {sent:?}");
    assert_eq!(
        received,
        (expected_len, expected_crc),
        "snapshot body differs"
    );
    assert!(expected_len >= LARGE_SNAPSHOT_BYTES);
    t1.close().await;
}

/// While a peer is down, sends fail fast with `Unreachable` (never hang); after it comes
/// back, delivery resumes in order.
pub async fn peer_down_then_up(harness: &dyn TransportHarness) {
    let (t1, _sink1) = start(harness, 1).await;
    let (_t2, sink2) = start(harness, 2).await;
    send_numbered(t1.as_ref(), 1, 2, 0, 1, 1).await;
    sink2.wait_frames(1).await;

    guard("stopping a store", harness.stop(2)).await;
    // A few sends may be accepted before the transport notices; it must notice, and no
    // send may hang.
    let mut unreachable = false;
    for attempt in 0..2_000_u64 {
        match guard(
            "send to a stopped store",
            t1.send(2, vec![frame(1, attempt, 32)]),
        )
        .await
        {
            Err(Error::Unreachable(2)) => {
                unreachable = true;
                break;
            }
            Ok(()) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(other) => panic!("send to a stopped store: expected Unreachable, got {other:?}"),
        }
    }
    assert!(
        unreachable,
        "sends to a stopped store never returned Unreachable"
    );
    for attempt in 0..20 {
        let result = guard(
            "send during the outage",
            t1.send(2, vec![frame(1, attempt, 32)]),
        )
        .await;
        assert!(
            matches!(result, Ok(()) | Err(Error::Unreachable(2))),
            "send during the outage: {result:?}"
        );
    }
    let snapshot = OutgoingSnapshot::from_chunks(Bytes::new(), vec![Bytes::from_static(b"x")]);
    let result = guard("snapshot to a stopped store", t1.send_snapshot(2, snapshot)).await;
    assert!(
        matches!(result, Err(Error::Unreachable(2) | Error::Disconnected(2))),
        "snapshot to a stopped store: {result:?}"
    );

    let (_t2, sink2) = start(harness, 2).await;
    // Reconnecting takes a backoff period; keep offering frames until one gets through.
    let mut marker = 0;
    guard("delivery after restart", async {
        loop {
            marker += 1;
            let _ = t1.send(2, vec![frame(9, marker, 32)]).await;
            if sink2.frames_within(1, Duration::from_millis(50)).await {
                break;
            }
        }
    })
    .await;
    // Once a frame got through the link is up again and FIFO.
    let already = sink2.frame_count();
    let marker_frames = sink2.batches();
    send_numbered(t1.as_ref(), 1, 2, 0, 50, 2).await;
    sink2.wait_frames(already + 100).await;
    let after: Vec<Bytes> = sink2.batches()[marker_frames.len()..]
        .iter()
        .flat_map(|(_, frames)| frames.iter().cloned())
        .filter(|f| frame_id(f).0 == 1)
        .collect();
    let seqs: Vec<u64> = after.iter().map(|f| frame_id(f).1).collect();
    assert_eq!(
        seqs,
        (0..100).collect::<Vec<_>>(),
        "frames after recovery out of order"
    );
    t1.close().await;
}

/// Many stores exchange frames all-to-all at once; every link stays complete and FIFO.
pub async fn many_peers(harness: &dyn TransportHarness) {
    const STORES: u64 = 8;
    const BATCHES: u64 = 20;
    const PER_BATCH: u64 = 4;
    let mut stores = Vec::new();
    for id in 1..=STORES {
        stores.push((id, start(harness, id).await));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (from, (transport, _)) in &stores {
        for to in (1..=STORES).filter(|to| to != from) {
            let (transport, from) = (transport.clone(), *from);
            tasks.spawn(async move {
                send_numbered(transport.as_ref(), from, to, 0, BATCHES, PER_BATCH).await;
            });
        }
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("sender task panicked");
    }
    for (id, (_, sink)) in &stores {
        let expected: HashMap<StoreId, u64> = (1..=STORES)
            .filter(|from| from != id)
            .map(|from| (from, BATCHES * PER_BATCH))
            .collect();
        sink.wait_frames(((STORES - 1) * BATCHES * PER_BATCH) as usize)
            .await;
        assert_fifo(sink, &expected);
    }
    for (_, (transport, _)) in stores {
        transport.close().await;
    }
}

/// Unknown stores are unreachable at once; a closed transport refuses to send; frames over
/// the harness's limit are refused before anything is queued.
pub async fn errors(harness: &dyn TransportHarness) {
    let (t1, _sink1) = start(harness, 1).await;
    let (_t2, sink2) = start(harness, 2).await;
    let result = guard(
        "send to an unknown store",
        t1.send(999, vec![frame(1, 0, 32)]),
    )
    .await;
    assert!(
        matches!(result, Err(Error::Unreachable(999))),
        "unknown store: {result:?}"
    );
    let snapshot = OutgoingSnapshot::from_chunks(Bytes::new(), Vec::new());
    let result = guard(
        "snapshot to an unknown store",
        t1.send_snapshot(999, snapshot),
    )
    .await;
    assert!(
        matches!(result, Err(Error::Unreachable(999))),
        "unknown store: {result:?}"
    );

    if let Some(max_bytes) = harness.max_frame_bytes() {
        let frames = vec![frame(1, 0, 32), Bytes::from(vec![0; max_bytes + 1])];
        let result = guard("oversized send", t1.send(2, frames)).await;
        assert!(
            matches!(result, Err(Error::FrameTooLarge { .. })),
            "oversized: {result:?}"
        );
        // The link still works, and nothing of the refused batch arrived.
        send_numbered(t1.as_ref(), 1, 2, 0, 1, 1).await;
        sink2.wait_frames(1).await;
        assert_eq!(sink2.batches().len(), 1);
    }

    t1.close().await;
    let result = guard("send after close", t1.send(2, vec![frame(1, 1, 32)])).await;
    assert!(
        matches!(result, Err(Error::Closed)),
        "send after close: {result:?}"
    );
}
