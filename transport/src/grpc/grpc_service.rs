//! [`GrpcService`]: the server side of the gRPC transport.

use std::sync::Arc;

use async_trait::async_trait;
use tonic::{Request, Response, Status, Streaming};

use super::grpc_transport::Shared;
use super::proto::snapshot_message::Kind;
use super::proto::transport_server::Transport as TransportRpc;
use super::proto::{Done, RaftMessage, SnapshotAck, SnapshotMessage};
use crate::{Error, IncomingSnapshot, SnapshotWriter, StoreId};

/// Chunks buffered between a snapshot stream and the sink's reader.
const SNAPSHOT_BUFFER_CHUNKS: usize = 4;

/// Receives frames and snapshots from peers and hands them to the transport's sink.
///
/// Obtain it with [`GrpcTransport::service`](super::GrpcTransport::service). Every stream is
/// validated: the first message must name the sender, frames must respect
/// [`GrpcConfig::max_frame_bytes`](super::GrpcConfig::max_frame_bytes), snapshot chunks
/// and the whole body must match their CRC-32. A violation closes that stream only, with an
/// error status and a `warn!` line.
#[derive(Debug, Clone)]
pub struct GrpcService {
    shared: Arc<Shared>,
}

impl GrpcService {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Logs and returns the status that closes a stream carrying bad input.
    fn reject(&self, from: Option<StoreId>, status: Status) -> Status {
        tracing::warn!(store = self.shared.store, from, %status, "closing stream: bad input");
        status
    }

    fn unavailable() -> Status {
        Status::unavailable("transport is closed")
    }
}

#[async_trait]
impl TransportRpc for GrpcService {
    async fn raft(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<Done>, Status> {
        let mut shutdown = self.shared.shutdown.subscribe();
        if *shutdown.borrow_and_update() {
            return Err(Self::unavailable());
        }
        let mut stream = request.into_inner();
        let mut from = None;
        loop {
            let message = tokio::select! {
                _ = shutdown.changed() => return Ok(Response::new(Done {})),
                message = stream.message() => message,
            };
            let message = match message {
                Ok(Some(message)) => message,
                Ok(None) => return Ok(Response::new(Done {})),
                Err(status) => return Err(self.reject(from, status)),
            };
            let Some(sender) = from else {
                if message.from_store == 0 || !message.frames.is_empty() {
                    let status = Status::invalid_argument("first message must name the sender");
                    return Err(self.reject(None, status));
                }
                from = Some(message.from_store);
                continue;
            };
            if message.from_store != 0 && message.from_store != sender {
                return Err(self.reject(from, Status::invalid_argument("sender changed")));
            }
            let max_bytes = self.shared.config.max_frame_bytes;
            if let Some(frame) = message.frames.iter().find(|frame| frame.len() > max_bytes) {
                let error = Error::FrameTooLarge {
                    size_bytes: frame.len(),
                    max_bytes,
                };
                return Err(self.reject(from, Status::out_of_range(error.to_string())));
            }
            if !message.frames.is_empty() && !self.shared.deliver_frames(sender, message.frames) {
                return Err(Self::unavailable());
            }
        }
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<SnapshotMessage>>,
    ) -> Result<Response<SnapshotAck>, Status> {
        let mut shutdown = self.shared.shutdown.subscribe();
        if *shutdown.borrow_and_update() {
            return Err(Self::unavailable());
        }
        let mut stream = request.into_inner();
        let header = match stream.message().await {
            Ok(Some(SnapshotMessage {
                kind: Some(Kind::Header(header)),
            })) => header,
            Ok(_) => {
                let status = Status::invalid_argument("a snapshot must start with its header");
                return Err(self.reject(None, status));
            }
            Err(status) => return Err(self.reject(None, status)),
        };
        let from = header.from_store;
        let (writer, incoming) =
            IncomingSnapshot::channel(from, header.meta, SNAPSHOT_BUFFER_CHUNKS);
        if !self.shared.deliver_snapshot(from, incoming) {
            return Err(Self::unavailable());
        }
        // Shutdown interrupts the body even while a slow reader holds back `write`.
        let received = tokio::select! {
            received = receive_body(&mut stream, &writer) => received,
            _ = shutdown.changed() => Err(BodyError::Closed),
        };
        let rejected = || Status::aborted("the receiving store rejected the snapshot");
        match received {
            Ok(()) => match writer.finish().await {
                Ok(()) => Ok(Response::new(SnapshotAck {})),
                Err(_) => Err(rejected()),
            },
            Err(BodyError::Rejected) => Err(rejected()),
            Err(BodyError::Closed) => {
                writer.abort(Error::Disconnected(from));
                Err(Self::unavailable())
            }
            Err(BodyError::Truncated) => {
                writer.abort(Error::Disconnected(from));
                Err(Status::cancelled(
                    "snapshot stream ended before its trailer",
                ))
            }
            Err(BodyError::Stream(status)) => {
                writer.abort(Error::Disconnected(from));
                Err(self.reject(Some(from), status))
            }
            Err(BodyError::Corrupt(reason)) => {
                writer.abort(Error::Corrupt(reason.clone()));
                Err(self.reject(Some(from), Status::data_loss(reason)))
            }
        }
    }
}

/// Why a snapshot body was not received whole.
enum BodyError {
    /// The sink dropped the [`IncomingSnapshot`].
    Rejected,
    /// The transport is closing.
    Closed,
    /// The stream ended before the trailer.
    Truncated,
    /// The stream failed (connection loss, oversized or undecodable message).
    Stream(Status),
    /// A checksum, length or message-order check failed.
    Corrupt(String),
}

/// Receives chunks into `writer` until the trailer, verifying every chunk's CRC-32 and the
/// whole body's length and CRC-32.
async fn receive_body(
    stream: &mut Streaming<SnapshotMessage>,
    writer: &SnapshotWriter,
) -> Result<(), BodyError> {
    let mut hasher = crc32fast::Hasher::new();
    let mut total_bytes: u64 = 0;
    loop {
        let kind = match stream.message().await {
            Ok(Some(SnapshotMessage { kind })) => kind,
            Ok(None) => return Err(BodyError::Truncated),
            Err(status) => return Err(BodyError::Stream(status)),
        };
        match kind {
            Some(Kind::Chunk(chunk)) => {
                if crc32fast::hash(&chunk.data) != chunk.crc32 {
                    return Err(BodyError::Corrupt("chunk checksum mismatch".to_string()));
                }
                hasher.update(&chunk.data);
                total_bytes += chunk.data.len() as u64;
                writer
                    .write(chunk.data)
                    .await
                    .map_err(|_| BodyError::Rejected)?;
            }
            Some(Kind::Trailer(trailer)) => {
                let crc32 = hasher.finalize();
                if (trailer.total_bytes, trailer.crc32) == (total_bytes, crc32) {
                    return Ok(());
                }
                return Err(BodyError::Corrupt(format!(
                    "trailer says {} bytes with crc {:#010x}, received {total_bytes} bytes \
                     with crc {crc32:#010x}",
                    trailer.total_bytes, trailer.crc32
                )));
            }
            Some(Kind::Header(_)) | None => {
                return Err(BodyError::Corrupt(
                    "unexpected message in snapshot body".into(),
                ));
            }
        }
    }
}
