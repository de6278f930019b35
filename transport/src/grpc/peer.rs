//! The per-peer connection task: keeps one long-lived `Raft` stream open, reconnecting
//! with backoff. The stream's body reads the peer's bounded queue itself, so a batch goes
//! from the raft worker to gRPC with no task of ours in between (a task hop is a thread
//! wake-up, paid twice on every round trip between two stores).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::transport::{Channel, Endpoint};

use super::backoff::Backoff;
use super::grpc_transport::Shared;
use super::proto::RaftMessage;
use super::proto::transport_client::TransportClient;
use crate::{Error, Result, StoreId};

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

/// A peer's queue of batches, read by the body of whichever `Raft` call is open.
type Queue = Arc<Mutex<mpsc::Receiver<Vec<Bytes>>>>;

fn lock(queue: &Queue) -> std::sync::MutexGuard<'_, mpsc::Receiver<Vec<Bytes>>> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Connects, streams, and on failure drops what is queued and backs off, until the
/// transport closes or the queue's senders are gone.
async fn run(
    shared: Arc<Shared>,
    to: StoreId,
    rx: mpsc::Receiver<Vec<Bytes>>,
    state: Arc<LinkState>,
) {
    let queue: Queue = Arc::new(Mutex::new(rx));
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
            match stream(&shared, to, channel, &queue).await {
                StreamEnd::Stop => return,
                StreamEnd::Broken => {}
            }
        }
        // Down: senders fail fast until the next attempt; what was queued is stale.
        state.set_down(true);
        let mut lost = 0;
        {
            let mut rx = lock(&queue);
            while rx.try_recv().is_ok() {
                lost += 1;
            }
            if rx.is_closed() && rx.is_empty() {
                // Every sender is gone: nothing will be sent to this peer any more.
                return;
            }
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

/// The request body of one `Raft` call: the hello naming this store, then one message per
/// queued batch, taken from the peer's queue when gRPC asks for the next message.
struct QueueBody {
    hello: Option<RaftMessage>,
    queue: Queue,
    /// Cleared when the call has ended: a body gRPC still polls afterwards must not take
    /// batches meant for the next call.
    live: Arc<AtomicBool>,
    /// Set when the queue's senders are all gone.
    senders_gone: Arc<AtomicBool>,
}

impl Stream for QueueBody {
    type Item = RaftMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RaftMessage>> {
        if let Some(hello) = self.hello.take() {
            return Poll::Ready(Some(hello));
        }
        // Checked under the queue's lock, which the call's end also takes to clear it:
        // an ended call's body can neither take a batch nor replace the waker the next
        // call's body registered.
        let mut queue = lock(&self.queue);
        if !self.live.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        match queue.poll_recv(cx) {
            Poll::Ready(Some(frames)) => Poll::Ready(Some(RaftMessage {
                from_store: 0,
                frames,
            })),
            Poll::Ready(None) => {
                self.senders_gone.store(true, Ordering::Release);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Runs one `Raft` call on `channel`, its body reading `queue`, until it breaks.
async fn stream(shared: &Shared, to: StoreId, channel: Channel, queue: &Queue) -> StreamEnd {
    let mut shutdown = shared.shutdown.subscribe();
    let live = Arc::new(AtomicBool::new(true));
    let senders_gone = Arc::new(AtomicBool::new(false));
    let body = QueueBody {
        hello: Some(RaftMessage {
            from_store: shared.store,
            frames: Vec::new(),
        }),
        queue: queue.clone(),
        live: live.clone(),
        senders_gone: senders_gone.clone(),
    };
    let mut client = client(shared, channel);
    let end = tokio::select! {
        biased;
        _ = shutdown.changed() => StreamEnd::Stop,
        result = client.raft(body) => {
            match result {
                Ok(_) => tracing::debug!(store = to, "peer ended the raft stream"),
                Err(status) => tracing::debug!(store = to, %status, "raft stream failed"),
            }
            if senders_gone.load(Ordering::Acquire) {
                StreamEnd::Stop
            } else {
                StreamEnd::Broken
            }
        }
    };
    {
        let _queue = lock(queue);
        live.store(false, Ordering::Release);
    }
    end
}
