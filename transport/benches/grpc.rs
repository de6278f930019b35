//! gRPC transport throughput on loopback: batched frames (frames/s) and snapshot streaming
//! (bytes/s). Results and the machine they ran on are in `BENCHMARKS.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use transport::grpc::{GrpcConfig, GrpcTransport};
use transport::{
    Error, FrameSink, IncomingSnapshot, OutgoingSnapshot, StaticResolver, StoreId, Transport,
};

const BATCH_FRAMES: usize = 64;
const SNAPSHOT_BYTES: usize = 64 << 20;

/// Counts frames; drains snapshots on a task of their own.
struct CountingSink {
    frame_count: watch::Sender<u64>,
}

impl FrameSink for CountingSink {
    fn on_frames(&self, _from: StoreId, frames: Vec<Bytes>) {
        self.frame_count.send_modify(|n| *n += frames.len() as u64);
    }

    fn on_snapshot(&self, _from: StoreId, mut snapshot: IncomingSnapshot) {
        tokio::spawn(async move { while let Ok(Some(_)) = snapshot.next_chunk().await {} });
    }
}

/// Two stores on loopback; store 2 counts what it receives.
struct Pair {
    sender: Arc<GrpcTransport>,
    receiver: Arc<GrpcTransport>,
    frame_count: watch::Receiver<u64>,
}

async fn pair() -> Pair {
    let resolver = Arc::new(StaticResolver::default());
    let (tx, frame_count) = watch::channel(0);
    let sink = Arc::new(CountingSink { frame_count: tx });
    let config = GrpcConfig::default();
    let receiver = Arc::new(GrpcTransport::new(
        2,
        config.clone(),
        resolver.clone(),
        sink,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    resolver.insert(2, listener.local_addr().expect("addr").to_string());
    tokio::spawn({
        let receiver = receiver.clone();
        async move { receiver.serve(listener).await }
    });
    let idle = Arc::new(CountingSink {
        frame_count: watch::Sender::new(0),
    });
    let sender = Arc::new(GrpcTransport::new(1, config, resolver, idle));
    Pair {
        sender,
        receiver,
        frame_count,
    }
}

/// Sends `batches` batches, retrying while the queue sheds, and waits until all arrived.
async fn send_batches(pair: &mut Pair, batch: &[Bytes], batches: u64) -> Duration {
    let target = *pair.frame_count.borrow() + batches * batch.len() as u64;
    let start = Instant::now();
    for _ in 0..batches {
        loop {
            match pair.sender.send(2, batch.to_vec()).await {
                Ok(()) => break,
                Err(Error::Unreachable(_)) => tokio::task::yield_now().await,
                Err(error) => panic!("send failed: {error}"),
            }
        }
    }
    pair.frame_count
        .wait_for(|&n| n >= target)
        .await
        .expect("receiver alive");
    start.elapsed()
}

fn frames(c: &mut Criterion) {
    let runtime = Runtime::new().expect("runtime");
    let mut pair = runtime.block_on(pair());
    let mut group = c.benchmark_group("grpc_frames");
    group
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    for frame_bytes in [128, 4096] {
        let batch = vec![Bytes::from(vec![7_u8; frame_bytes]); BATCH_FRAMES];
        group.throughput(Throughput::Elements(BATCH_FRAMES as u64));
        group.bench_function(format!("batch64x{frame_bytes}B"), |b| {
            b.iter_custom(|iters| runtime.block_on(send_batches(&mut pair, &batch, iters)));
        });
    }
    group.finish();
    runtime.block_on(async {
        pair.sender.close().await;
        pair.receiver.close().await;
    });
}

fn snapshot(c: &mut Criterion) {
    let runtime = Runtime::new().expect("runtime");
    let pair = runtime.block_on(pair());
    let chunk = Bytes::from(vec![3_u8; 1 << 20]);
    let mut group = c.benchmark_group("grpc_snapshot");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes(SNAPSHOT_BYTES as u64));
    group.bench_function("64MiB", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let chunks = vec![chunk.clone(); SNAPSHOT_BYTES / chunk.len()];
                    let snapshot = OutgoingSnapshot::from_chunks(Bytes::new(), chunks);
                    pair.sender
                        .send_snapshot(2, snapshot)
                        .await
                        .expect("snapshot");
                }
                start.elapsed()
            })
        });
    });
    group.finish();
    runtime.block_on(async {
        pair.sender.close().await;
        pair.receiver.close().await;
    });
}

criterion_group!(benches, frames, snapshot);
criterion_main!(benches);
