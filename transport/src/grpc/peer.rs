//! The per-peer connection task: drains a bounded queue into one long-lived `Raft` stream,
//! reconnecting with backoff.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use super::backoff::Backoff;
use super::grpc_transport::Shared;
use super::proto::RaftMessage;
use super::proto::transport_client::TransportClient;
use crate::{Error, Result, StoreId};

/// Messages buffered between the peer task and tonic's request stream.
const STREAM_BUFFER_MESSAGES: usize = 64;

/// Whether a peer's link is down (waiting to reconnect), shared with senders.
#[derive(Debug, Default)]
pub(super) struct LinkState {
    down: AtomicBool,
}

impl LinkState {
    pub(super) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Release);
    }
}

/// The sending side of a peer: its queue and link state. Dropping it ends the task.
#[derive(Debug)]
pub(super) struct PeerHandle {
    pub(super) tx: mpsc::Sender<Vec<Bytes>>,
    pub(super) state: Arc<LinkState>,
}

/// Starts the connection task of peer `to`.
pub(super) fn spawn(shared: Arc<Shared>, to: StoreId) -> PeerHandle {
    let (tx, rx) = mpsc::channel(shared.config.send_queue_batches_max.max(1));
    let state = Arc::new(LinkState::default());
    tokio::spawn(run(shared, to, rx, state.clone()));
    PeerHandle { tx, state }
}

/// Connects to `to`'s transport endpoint.
///
/// # Errors
///
/// [`Error::Unreachable`] if `to` has no address or the connection fails.
pub(super) async fn connect(shared: &Shared, to: StoreId) -> Result<Channel> {
    let addr = shared.resolver.resolve(to).ok_or(Error::Unreachable(to))?;
    let config = &shared.config;
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|error| {
            tracing::warn!(store = to, %addr, %error, "invalid peer address");
            Error::Unreachable(to)
        })?
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .initial_stream_window_size(config.stream_window_bytes)
        .initial_connection_window_size(config.connection_window_bytes);
    endpoint.connect().await.map_err(|error| {
        tracing::debug!(store = to, %addr, %error, "connecting to peer failed");
        Error::Unreachable(to)
    })
}

/// The client for `channel` with the configured message limits.
pub(super) fn client(shared: &Shared, channel: Channel) -> TransportClient<Channel> {
    TransportClient::new(channel)
        .max_decoding_message_size(shared.config.max_message_bytes)
        .max_encoding_message_size(shared.config.max_message_bytes)
}

/// Connects, streams, and on failure drops what is queued and backs off, until the
/// transport closes or the queue's senders are gone.
async fn run(
    shared: Arc<Shared>,
    to: StoreId,
    mut rx: mpsc::Receiver<Vec<Bytes>>,
    state: Arc<LinkState>,
) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut backoff = Backoff::new(shared.config.backoff_initial, shared.config.backoff_max);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let connected = tokio::select! {
            connected = connect(&shared, to) => connected,
            _ = shutdown.changed() => return,
        };
        if let Ok(channel) = connected {
            backoff.reset();
            state.set_down(false);
            match stream(&shared, to, channel, &mut rx).await {
                StreamEnd::Stop => return,
                StreamEnd::Broken => {}
            }
        }
        // Down: senders fail fast until the next attempt; what was queued is stale.
        state.set_down(true);
        let mut lost = 0;
        while rx.try_recv().is_ok() {
            lost += 1;
        }
        let delay = backoff.next_delay(&mut rand::rng());
        tracing::debug!(store = to, lost_batches = lost, ?delay, "peer link down");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
        // Senders may queue while we connect: a refused connection answers at once on
        // loopback, and a slow one is bounded by the connect timeout.
        state.set_down(false);
    }
}

/// Why [`stream`] returned.
enum StreamEnd {
    /// The transport closed or the queue's senders are gone: stop the task.
    Stop,
    /// The connection or the call failed: reconnect.
    Broken,
}

/// Runs one `Raft` call on `channel`, forwarding queued batches until it breaks.
async fn stream(
    shared: &Shared,
    to: StoreId,
    channel: Channel,
    rx: &mut mpsc::Receiver<Vec<Bytes>>,
) -> StreamEnd {
    let mut shutdown = shared.shutdown.subscribe();
    let (tx, messages) = mpsc::channel(STREAM_BUFFER_MESSAGES);
    let hello = RaftMessage {
        from_store: shared.store,
        frames: Vec::new(),
    };
    if tx.send(hello).await.is_err() {
        return StreamEnd::Broken;
    }
    let mut client = client(shared, channel);
    let call = client.raft(ReceiverStream::new(messages));
    tokio::pin!(call);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => return StreamEnd::Stop,
            result = &mut call => {
                match result {
                    Ok(_) => tracing::debug!(store = to, "peer ended the raft stream"),
                    Err(status) => tracing::debug!(store = to, %status, "raft stream failed"),
                }
                return StreamEnd::Broken;
            }
            batch = rx.recv() => {
                let Some(frames) = batch else { return StreamEnd::Stop };
                if tx.send(RaftMessage { from_store: 0, frames }).await.is_err() {
                    return StreamEnd::Broken;
                }
            }
        }
    }
}
