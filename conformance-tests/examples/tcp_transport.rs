//! A custom transport in under 150 lines: plain TCP, length-delimited frames (big-endian).
//! A connection opens with `kind: u8` (0 raft, 1 snapshot) and `from: u64`. Raft: batches
//! of `count: u32` blobs (`len: u32` + bytes). Snapshot: meta blob, body blobs, an empty
//! blob, then a 1-byte ack. `tests/transport_tcp_example.rs` runs the conformance suite.
use std::{collections::HashMap, io, sync::Arc};

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::{net::TcpListener, net::TcpStream, sync::Mutex, task::JoinHandle, task::JoinSet};
use transport::{Error, FrameSink, IncomingSnapshot, OutgoingSnapshot, Result, StoreId};
use transport::{StoreResolver, Transport};

/// Largest frame (and snapshot blob) accepted on either end.
pub const MAX_FRAME_BYTES: usize = 16 << 20;

/// One store's TCP transport: one outgoing connection per peer, one task per inbound one.
pub struct TcpTransport {
    store: StoreId,
    resolver: Arc<dyn StoreResolver>,
    conns: Mutex<Option<HashMap<StoreId, TcpStream>>>, // `None` once closed
    accept: JoinHandle<()>, // owns the inbound connections' tasks: aborting it ends them
}

type Sink = Arc<dyn FrameSink>;
type Resolver = Arc<dyn StoreResolver>;

impl TcpTransport {
    /// Serves `listener` into `sink`; sends to the stores `resolver` knows.
    pub fn start(store: StoreId, listener: TcpListener, resolver: Resolver, sink: Sink) -> Self {
        let accept = tokio::spawn(async move {
            let mut inbound = JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                while inbound.try_join_next().is_some() {}
                inbound.spawn(serve(BufReader::new(socket), sink.clone()));
            }
        });
        let conns = Mutex::new(Some(HashMap::new()));
        Self {
            store,
            resolver,
            conns,
            accept,
        }
    }

    async fn connect(&self, to: StoreId, kind: u8) -> Result<TcpStream> {
        let addr = self.resolver.resolve(to).ok_or(Error::Unreachable(to))?;
        let hello = [&[kind][..], &self.store.to_be_bytes()].concat();
        let connect = async {
            let mut socket = TcpStream::connect(addr).await?;
            socket.set_nodelay(true)?;
            socket.write_all(&hello).await.map(|()| socket)
        };
        connect.await.map_err(|_: io::Error| Error::Unreachable(to))
    }
}

fn put_blob(buf: &mut BytesMut, blob: &[u8]) {
    buf.put_u32(blob.len() as u32);
    buf.put_slice(blob);
}

async fn read_blob(reader: &mut BufReader<TcpStream>) -> io::Result<Bytes> {
    let len = reader.read_u32().await? as usize;
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::other("frame too large"));
    }
    let mut blob = vec![0; len];
    reader.read_exact(&mut blob).await?;
    Ok(blob.into())
}

/// Reads one inbound connection until it ends; bad input closes it with a log line.
async fn serve(mut reader: BufReader<TcpStream>, sink: Sink) {
    let error = read_conn(&mut reader, sink).await.err();
    if let Some(error) = error.filter(|e| e.kind() != io::ErrorKind::UnexpectedEof) {
        tracing::warn!(%error, "closing inbound connection");
    }
}

async fn read_conn(reader: &mut BufReader<TcpStream>, sink: Sink) -> io::Result<()> {
    let (kind, from) = (reader.read_u8().await?, reader.read_u64().await?);
    if kind == 0 {
        loop {
            let count = reader.read_u32().await?;
            let mut frames = Vec::with_capacity(count.min(1024) as usize);
            for _ in 0..count {
                frames.push(read_blob(reader).await?);
            }
            sink.on_frames(from, frames);
        }
    }
    let (writer, incoming) = IncomingSnapshot::channel(from, read_blob(reader).await?, 4);
    sink.on_snapshot(from, incoming);
    loop {
        let chunk = read_blob(reader).await?;
        if chunk.is_empty() {
            writer.finish().await.map_err(io::Error::other)?;
            return reader.get_mut().write_u8(1).await;
        }
        writer.write(chunk).await.map_err(io::Error::other)?;
    }
}

#[async_trait]
impl Transport for TcpTransport {
    async fn send(&self, to: StoreId, frames: Vec<Bytes>) -> Result<()> {
        transport::check_frame_sizes(&frames, MAX_FRAME_BYTES)?;
        let mut buf = BytesMut::new();
        buf.put_u32(frames.len() as u32);
        frames.iter().for_each(|frame| put_blob(&mut buf, frame));
        let mut conns = self.conns.lock().await;
        let conns = conns.as_mut().ok_or(Error::Closed)?;
        let mut socket = match conns.remove(&to) {
            Some(socket) => socket,
            None => self.connect(to, 0).await?,
        };
        // A broken connection is dropped here; the next send reconnects.
        let unreachable = |_| Error::Unreachable(to);
        socket.write_all(&buf).await.map_err(unreachable)?;
        conns.insert(to, socket);
        Ok(())
    }

    async fn send_snapshot(&self, to: StoreId, mut snapshot: OutgoingSnapshot) -> Result<()> {
        let mut socket = self.connect(to, 1).await?;
        let lost = |_| Error::Disconnected(to);
        let mut buf = BytesMut::new();
        put_blob(&mut buf, snapshot.meta());
        while let Some(chunk) = snapshot.next_chunk().await? {
            for piece in chunk.chunks(MAX_FRAME_BYTES).filter(|p| !p.is_empty()) {
                put_blob(&mut buf, piece);
                socket.write_all(&buf.split()).await.map_err(lost)?;
            }
        }
        put_blob(&mut buf, &[]);
        socket.write_all(&buf).await.map_err(lost)?;
        socket.read_u8().await.map_err(lost)?;
        Ok(())
    }

    async fn close(&self) {
        self.accept.abort();
        *self.conns.lock().await = None;
    }
}
