//! The transport suite on the `grpc` transport, plus hostile input on its endpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use conformance_tests::transport::{GUARD, RecordingSink, TransportHarness};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use transport::grpc::{GrpcConfig, GrpcTransport};
use transport::{Error, FrameSink, StaticResolver, StoreId, StoreResolver, Transport};

const MAX_FRAME_BYTES: usize = 256 << 10;
const MAX_MESSAGE_BYTES: usize = 2 << 20;

fn config() -> GrpcConfig {
    GrpcConfig {
        max_frame_bytes: MAX_FRAME_BYTES,
        max_message_bytes: MAX_MESSAGE_BYTES,
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..GrpcConfig::default()
    }
}

struct Running {
    transport: Arc<GrpcTransport>,
    server: JoinHandle<transport::Result<()>>,
}

/// Stores on loopback, each serving on its own port, found through a shared resolver.
#[derive(Default)]
struct GrpcHarness {
    resolver: Arc<StaticResolver>,
    running: Mutex<HashMap<StoreId, Running>>,
}

#[async_trait]
impl TransportHarness for GrpcHarness {
    async fn start(&self, store: StoreId, sink: Arc<dyn FrameSink>) -> Arc<dyn Transport> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        self.resolver
            .insert(store, listener.local_addr().expect("addr").to_string());
        let transport = Arc::new(GrpcTransport::new(
            store,
            config(),
            self.resolver.clone(),
            sink,
        ));
        let server = tokio::spawn({
            let transport = transport.clone();
            async move { transport.serve(listener).await }
        });
        self.running.lock().insert(
            store,
            Running {
                transport: transport.clone(),
                server,
            },
        );
        transport
    }

    async fn stop(&self, store: StoreId) {
        let Some(running) = self.running.lock().remove(&store) else {
            return;
        };
        running.transport.close().await;
        let served = tokio::time::timeout(GUARD, running.server).await;
        assert!(
            matches!(served, Ok(Ok(Ok(())))),
            "server of store {store}: {served:?}"
        );
    }

    fn max_frame_bytes(&self) -> Option<usize> {
        Some(MAX_FRAME_BYTES)
    }
}

conformance_tests::transport_suite!(GrpcHarness::default());

/// Sends raw, hand-encoded gRPC messages, so tests can send what a correct client cannot.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Protobuf varint.
fn put_varint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// A `RaftMessage { from_store, frames }` encoded by hand.
fn raft_message(from_store: u64, frames: &[&[u8]]) -> Bytes {
    let mut buf = BytesMut::new();
    if from_store != 0 {
        buf.put_u8(0x08);
        put_varint(&mut buf, from_store);
    }
    for frame in frames {
        buf.put_u8(0x12);
        put_varint(&mut buf, frame.len() as u64);
        buf.put_slice(frame);
    }
    buf.freeze()
}

/// A `SnapshotMessage` with a header (`kind` 1) or a chunk (`kind` 2) encoded by hand.
fn snapshot_message(kind: u8, fields: &[(u8, &[u8])]) -> Bytes {
    let mut inner = BytesMut::new();
    for (tag, value) in fields {
        inner.put_u8(*tag);
        inner.put_slice(value);
    }
    let mut buf = BytesMut::new();
    buf.put_u8((kind << 3) | 2);
    put_varint(&mut buf, inner.len() as u64);
    buf.put_slice(&inner);
    buf.freeze()
}

/// Makes one client-streaming call with raw `messages`; returns the server's verdict.
async fn raw_call(addr: &str, method: &'static str, messages: Vec<Bytes>) -> Result<(), Status> {
    let channel: Channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = PathAndQuery::from_static(method);
    let request = tonic::Request::new(tokio_stream::iter(messages));
    let call = grpc.client_streaming::<_, Bytes, Bytes, _>(request, path, RawCodec);
    tokio::time::timeout(GUARD, call)
        .await
        .expect("the server answers")
        .map(|_| ())
}

const RAFT: &str = "/raftkv.transport.Transport/Raft";
const SNAPSHOT: &str = "/raftkv.transport.Transport/Snapshot";

/// Captures log output of the current thread.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    /// Installs a subscriber writing into this log for the current thread.
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let log = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || log.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock())
            .matches(needle)
            .count()
    }
}

/// Every kind of bad input closes only its own stream with an error and a log line; store
/// 2 keeps receiving from stores 1 and 3 throughout. (Single-threaded, so the log of the
/// server tasks is captured.)
#[tokio::test]
async fn bad_input_closes_only_the_bad_stream() {
    let log = Log::default();
    let _guard = log.install();
    let harness = GrpcHarness::default();
    let sink2 = Arc::new(RecordingSink::default());
    let t1 = harness.start(1, Arc::new(RecordingSink::default())).await;
    let _t2 = harness.start(2, sink2.clone()).await;
    let t3 = harness.start(3, Arc::new(RecordingSink::default())).await;
    let addr = harness.resolver.resolve(2).expect("store 2 has an address");
    let mut expected = 0;
    let mut healthy = async || {
        for transport in [&t1, &t3] {
            transport
                .send(2, vec![Bytes::from_static(b"still here")])
                .await
                .expect("send");
            expected += 1;
        }
        sink2.wait_frames(expected).await;
    };
    healthy().await;

    // Not HTTP/2 at all.
    let mut socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    socket
        .write_all(&[0xde; 4096])
        .await
        .expect("write garbage");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(GUARD, socket.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the server must close a connection that sends garbage"
    );
    healthy().await;

    let too_big = vec![0_u8; MAX_FRAME_BYTES + 1];
    let huge = vec![0_u8; MAX_MESSAGE_BYTES + 1];
    let bad_raft_streams: [(&str, Vec<Bytes>); 5] = [
        (
            "garbage protobuf",
            vec![raft_message(9, &[]), Bytes::from_static(&[0xff; 64])],
        ),
        ("no sender", vec![raft_message(0, &[b"who am i"])]),
        (
            "oversized frame",
            vec![raft_message(9, &[]), raft_message(0, &[&too_big])],
        ),
        (
            "oversized message",
            vec![raft_message(9, &[]), raft_message(0, &[&huge])],
        ),
        (
            "sender changed",
            vec![raft_message(9, &[]), raft_message(8, &[b"x"])],
        ),
    ];
    for (what, messages) in bad_raft_streams {
        let logged_before = log.count("closing stream: bad input");
        let verdict = raw_call(&addr, RAFT, messages).await;
        let logged = log.count("closing stream: bad input") - logged_before;
        assert_eq!(logged, 1, "{what}: expected one log line");
        assert!(
            verdict.is_err(),
            "{what}: the stream must be closed with an error"
        );
        healthy().await;
    }
    let frames_before = sink2.frame_count();

    // A snapshot chunk whose CRC is wrong: the sender gets an error, the reader too.
    let header = snapshot_message(1, &[(0x08, &[9]), (0x12, &[1, b'm'])]);
    let chunk = snapshot_message(2, &[(0x0a, &[3, 1, 2, 3]), (0x10, &[1])]);
    let verdict = raw_call(&addr, SNAPSHOT, vec![header.clone(), chunk]).await;
    assert_eq!(verdict.map_err(|s| s.code()), Err(tonic::Code::DataLoss));
    let mut incoming = sink2.next_snapshot().await;
    assert_eq!((incoming.from(), incoming.meta().as_ref()), (9, &b"m"[..]));
    assert!(matches!(
        incoming.next_chunk().await,
        Err(Error::Corrupt(_))
    ));
    // A snapshot that ends without its trailer is aborted, never reported complete.
    let verdict = raw_call(&addr, SNAPSHOT, vec![header]).await;
    assert!(verdict.is_err(), "a truncated snapshot must fail");
    let mut incoming = sink2.next_snapshot().await;
    assert!(incoming.next_chunk().await.is_err());

    healthy().await;
    assert_eq!(
        sink2.frame_count(),
        frames_before + 2,
        "bad streams delivered nothing"
    );
    t1.close().await;
    t3.close().await;
}

/// The service mounts into another tonic server beside other services, and the transport's
/// close lets that server shut down gracefully.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_mounts_into_another_server() {
    let resolver = Arc::new(StaticResolver::default());
    let sink2 = Arc::new(RecordingSink::default());
    let t1 = GrpcTransport::new(
        1,
        config(),
        resolver.clone(),
        Arc::new(RecordingSink::default()),
    );
    let t2 = Arc::new(GrpcTransport::new(
        2,
        config(),
        resolver.clone(),
        sink2.clone(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    resolver.insert(2, listener.local_addr().expect("addr").to_string());
    let server = tokio::spawn({
        let t2 = t2.clone();
        let router = tonic::transport::Server::builder().add_service(t2.service());
        async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            router
                .serve_with_incoming_shutdown(incoming, t2.wait_closed())
                .await
        }
    });
    t1.send(2, vec![Bytes::from_static(b"mounted")])
        .await
        .expect("send");
    sink2.wait_frames(1).await;
    t2.close().await;
    let stopped = tokio::time::timeout(GUARD, server).await;
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "graceful shutdown: {stopped:?}"
    );
    t1.close().await;
}

/// A peer that accepts connections but never reads: sends keep returning at once, and once
/// the bounded queue is full they are shed with `Unreachable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_sheds_with_unreachable() {
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let resolver = Arc::new(StaticResolver::default());
    resolver.insert(2, black_hole.local_addr().expect("addr").to_string());
    let accepted = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = black_hole.accept().await {
            sockets.push(socket); // held open, never read
        }
    });
    let small = GrpcConfig {
        send_queue_batches_max: 8,
        ..config()
    };
    let t1 = GrpcTransport::new(1, small, resolver, Arc::new(RecordingSink::default()));
    let batch = vec![Bytes::from(vec![0_u8; 1024]); 16];
    let mut accepted_batches = 0;
    let mut shed = false;
    for _ in 0..100_000 {
        match tokio::time::timeout(GUARD, t1.send(2, batch.clone())).await {
            Ok(Ok(())) => accepted_batches += 1,
            Ok(Err(Error::Unreachable(2))) => {
                shed = true;
                break;
            }
            Ok(Err(other)) => panic!("expected Unreachable, got {other:?}"),
            Err(_) => panic!("send blocked on a peer that does not read"),
        }
        tokio::task::yield_now().await;
    }
    assert!(shed, "{accepted_batches} batches accepted and none shed");
    t1.close().await;
    accepted.abort();
}
