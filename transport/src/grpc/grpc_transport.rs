//! [`GrpcTransport`]: the tonic implementation of [`Transport`].

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use super::grpc_config::GrpcConfig;
use super::grpc_service::GrpcService;
use super::peer::{self, PeerHandle};
use super::proto::transport_server::TransportServer;
use super::snapshot_sender;
use crate::{
    Error, FrameSink, IncomingSnapshot, OutgoingSnapshot, Result, StoreId, StoreResolver, Transport,
};

/// The gRPC [`Transport`] of one store.
///
/// Sending: each peer has a bounded queue drained by a connection task that keeps one
/// client-streaming `Raft` call open and reconnects with [`Backoff`](super::Backoff). While
/// the peer is down (between attempts) or its queue is full, [`send`](Transport::send)
/// returns [`Error::Unreachable`] at once. Each snapshot opens its own connection so it
/// never delays raft traffic.
///
/// Receiving: [`service`](Self::service) is the tonic service to mount; it delivers to the
/// sink given to [`new`](Self::new). [`close`](Transport::close) ends every stream, so a
/// server's graceful shutdown completes.
///
/// ```no_run
/// # async fn demo(sink: std::sync::Arc<dyn transport::FrameSink>) -> transport::Result<()> {
/// use std::sync::Arc;
/// use transport::StaticResolver;
/// use transport::grpc::{GrpcConfig, GrpcTransport};
///
/// let resolver = Arc::new(StaticResolver::new([(2, "127.0.0.1:20161".to_string())]));
/// let transport = Arc::new(GrpcTransport::new(1, GrpcConfig::default(), resolver, sink));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:20160").await?;
/// let server = tokio::spawn({
///     let transport = transport.clone();
///     async move { transport.serve(listener).await }
/// });
/// // ... transport.send(2, frames).await ...
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct GrpcTransport {
    shared: Arc<Shared>,
}

/// State shared by the transport, its peer tasks and its service.
pub(super) struct Shared {
    pub(super) store: StoreId,
    pub(super) config: GrpcConfig,
    pub(super) resolver: Arc<dyn StoreResolver>,
    /// The sink; `None` once closed. Calls into it happen under the read lock, so after
    /// `close` takes the write lock the sink receives nothing more.
    sink: RwLock<Option<Arc<dyn FrameSink>>>,
    /// Becomes `true` on close; every task and stream watches it.
    pub(super) shutdown: watch::Sender<bool>,
    peers: Mutex<HashMap<StoreId, PeerHandle>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("store", &self.store)
            .field("config", &self.config)
            .field("closed", &*self.shutdown.borrow())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(super) fn is_closed(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Hands a batch to the sink unless closed; returns whether it was delivered.
    pub(super) fn deliver_frames(&self, from: StoreId, frames: Vec<Bytes>) -> bool {
        match self.sink.read().as_ref() {
            Some(sink) => {
                sink.on_frames(from, frames);
                true
            }
            None => false,
        }
    }

    /// Hands a starting snapshot to the sink unless closed; returns whether it was.
    pub(super) fn deliver_snapshot(&self, from: StoreId, snapshot: IncomingSnapshot) -> bool {
        match self.sink.read().as_ref() {
            Some(sink) => {
                sink.on_snapshot(from, snapshot);
                true
            }
            None => false,
        }
    }

    /// Waits until the transport is closed.
    pub(super) async fn closed(&self) {
        let mut rx = self.shutdown.subscribe();
        // `self` owns the sender, so it outlives this wait.
        let _ = rx.wait_for(|&closed| closed).await;
    }

    /// Validates a batch against the frame and message limits.
    fn check_batch(&self, frames: &[Bytes]) -> Result<()> {
        crate::check_frame_sizes(frames, self.config.max_frame_bytes)?;
        // Each frame costs a tag byte and a length varint (at most 10 bytes) on the wire.
        let message_bytes: usize = frames.iter().map(|frame| frame.len() + 11).sum();
        if message_bytes > self.config.max_message_bytes {
            return Err(Error::FrameTooLarge {
                size_bytes: message_bytes,
                max_bytes: self.config.max_message_bytes,
            });
        }
        Ok(())
    }
}

impl GrpcTransport {
    /// A transport for store `store` that finds peers through `resolver` and delivers what
    /// it receives to `sink`. It sends right away; it receives once its
    /// [`service`](Self::service) is mounted in a running server (or [`serve`](Self::serve)
    /// runs).
    #[must_use]
    pub fn new(
        store: StoreId,
        config: GrpcConfig,
        resolver: Arc<dyn StoreResolver>,
        sink: Arc<dyn FrameSink>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                config,
                resolver,
                sink: RwLock::new(Some(sink)),
                shutdown: watch::Sender::new(false),
                peers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The store this transport belongs to.
    #[must_use]
    pub fn store_id(&self) -> StoreId {
        self.shared.store
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &GrpcConfig {
        &self.shared.config
    }

    /// The tonic service receiving frames and snapshots from peers, with this transport's
    /// message limit applied. Mount it beside other services with
    /// `Server::builder().add_service(transport.service())`; give that server the same
    /// flow-control windows as [`GrpcConfig`] for fast snapshots, and call
    /// [`close`](Transport::close) before awaiting its graceful shutdown (the streams are
    /// long-lived and end only then).
    #[must_use]
    pub fn service(&self) -> TransportServer<GrpcService> {
        TransportServer::new(GrpcService::new(self.shared.clone()))
            .max_decoding_message_size(self.shared.config.max_message_bytes)
            .max_encoding_message_size(self.shared.config.max_message_bytes)
    }

    /// Serves [`service`](Self::service) alone on `listener` until the transport is
    /// closed, then shuts the server down gracefully.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the server fails.
    pub async fn serve(&self, listener: TcpListener) -> Result<()> {
        let config = &self.shared.config;
        // The builder's `tcp_nodelay` does not reach a given incoming stream: set it here
        // (small frames must not wait for a delayed ACK).
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        Server::builder()
            .initial_stream_window_size(config.stream_window_bytes)
            .initial_connection_window_size(config.connection_window_bytes)
            .add_service(self.service())
            .serve_with_incoming_shutdown(incoming, self.shared.closed())
            .await
            .map_err(|error| Error::Io(std::io::Error::other(error)))
    }

    /// Waits until [`close`](Transport::close) was called, e.g. as a server's shutdown
    /// signal.
    pub async fn wait_closed(&self) {
        self.shared.closed().await;
    }

    /// The queue of `to`, starting its connection task on first use.
    fn peer_queue(&self, to: StoreId) -> Result<(mpsc::Sender<Vec<Bytes>>, Arc<peer::LinkState>)> {
        let mut peers = self.shared.peers.lock();
        if self.shared.is_closed() {
            return Err(Error::Closed);
        }
        if let Some(handle) = peers.get(&to) {
            return Ok((handle.tx.clone(), handle.state.clone()));
        }
        if self.shared.resolver.resolve(to).is_none() {
            return Err(Error::Unreachable(to));
        }
        let handle = peer::spawn(self.shared.clone(), to);
        let queue = (handle.tx.clone(), handle.state.clone());
        peers.insert(to, handle);
        Ok(queue)
    }
}

#[async_trait]
impl Transport for GrpcTransport {
    async fn send(&self, to: StoreId, frames: Vec<Bytes>) -> Result<()> {
        if self.shared.is_closed() {
            return Err(Error::Closed);
        }
        self.shared.check_batch(&frames)?;
        let (tx, state) = self.peer_queue(to)?;
        if frames.is_empty() {
            return Ok(());
        }
        if state.is_down() {
            return Err(Error::Unreachable(to));
        }
        tx.try_send(frames).map_err(|_| Error::Unreachable(to))
    }

    async fn send_snapshot(&self, to: StoreId, snapshot: OutgoingSnapshot) -> Result<()> {
        if self.shared.is_closed() {
            return Err(Error::Closed);
        }
        tokio::select! {
            result = snapshot_sender::send(&self.shared, to, snapshot) => result,
            () = self.shared.closed() => Err(Error::Closed),
        }
    }

    async fn close(&self) {
        self.shared.shutdown.send_replace(true);
        *self.shared.sink.write() = None;
        // Dropping the queues ends the connection tasks.
        self.shared.peers.lock().clear();
    }
}

impl Drop for GrpcTransport {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}
