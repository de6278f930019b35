//! The server side of `Kv.BatchCommands`: the commands of one client stream are served
//! concurrently, each exactly as its unary call would be, and their answers go back as
//! they complete, as many per message as are ready.
//!
//! Why a stream: a unary gRPC call costs an HTTP/2 stream (headers both ways, a task per
//! stream in the server, a frame per message) and a wake-up of each task on its way;
//! profiles of a node under load put two thirds of its CPU there, not in raft or the
//! engines. Over one stream, a message carries every command a client queued since the
//! last one, so those costs are paid per batch.
//!
//! Every command takes a request slot and its bytes from admission control (a refused
//! one is answered `server_is_busy` at once), and is measured as its unary RPC
//! ([`CallMeter`](crate::rpc_metrics::CallMeter)). The stream is driven by the task the
//! gRPC server polls its response with: no task or channel of its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::stream::{self, FuturesUnordered, Stream, StreamExt};
use prost::Message;
use tokio::sync::watch;
use tonic::{Status, Streaming};

use crate::answer::Answer;
use crate::kv_service::KvService;
use crate::proto::kvrpc::command::Request as CommandRequest;
use crate::proto::kvrpc::command_answer::Response as CommandResponse;
use crate::proto::kvrpc::{
    BatchCommandsRequest, BatchCommandsResponse, Command, CommandAnswer, RegionError,
};

/// Answers are gathered into one message up to this many encoded bytes; the rest go in
/// the next.
const ANSWER_MESSAGE_BYTES: usize = 1 << 20;
/// A stream stops reading commands while this many of its commands are unanswered, so
/// a client sending faster than they are answered is held back by HTTP/2 flow control
/// instead of growing the node's memory (admission refuses the excess cheaply, but each
/// refusal still costs a decode and an answer).
const PENDING_COMMANDS_MAX: usize = 4096;

/// The answers of one `BatchCommands` stream.
pub type AnswerStream =
    Pin<Box<dyn Stream<Item = Result<BatchCommandsResponse, Status>> + Send + 'static>>;

type PendingAnswers = FuturesUnordered<Pin<Box<dyn Future<Output = CommandAnswer> + Send>>>;

/// The state of one stream.
struct Serving {
    service: Arc<KvService>,
    commands: Streaming<BatchCommandsRequest>,
    closing: watch::Receiver<bool>,
    /// No more commands are read: the client closed its side or the node is closing.
    done_reading: bool,
    pending: PendingAnswers,
    /// An answer that did not fit in the last message; it starts the next one.
    carried: Option<CommandAnswer>,
}

/// Serves the commands arriving on `commands`.
pub(crate) fn serve(
    service: Arc<KvService>,
    commands: Streaming<BatchCommandsRequest>,
) -> AnswerStream {
    let closing = service.closing();
    let done_reading = *closing.borrow();
    let serving = Serving {
        service,
        commands,
        closing,
        done_reading,
        pending: FuturesUnordered::new(),
        carried: None,
    };
    Box::pin(stream::unfold(serving, |mut serving| async move {
        let answers = serving.next_answers().await?;
        Some((answers, serving))
    }))
}

impl Serving {
    /// The next message of answers; `None` when every command read is answered and no
    /// more will be read.
    async fn next_answers(&mut self) -> Option<Result<BatchCommandsResponse, Status>> {
        if let Some(first) = self.carried.take() {
            return Some(Ok(self.with_ready_answers(first)));
        }
        loop {
            if self.done_reading && self.pending.is_empty() {
                return None;
            }
            let may_read = !self.done_reading && self.pending.len() < PENDING_COMMANDS_MAX;
            tokio::select! {
                // Answers first: a client sending without pause must still get them.
                biased;
                Some(first) = self.pending.next(), if !self.pending.is_empty() => {
                    return Some(Ok(self.with_ready_answers(first)));
                }
                changed = self.closing.changed(), if !self.done_reading => {
                    // A dropped sender means the service is gone: stop as when closing.
                    if changed.is_err() || *self.closing.borrow() {
                        self.done_reading = true;
                    }
                }
                read = self.commands.message(), if may_read => match read {
                    Ok(Some(batch)) => self.start(batch),
                    Ok(None) => self.done_reading = true,
                    // A broken or malformed stream ends the call with its status.
                    Err(status) => return Some(Err(status)),
                },
            }
        }
    }

    fn start(&mut self, batch: BatchCommandsRequest) {
        for command in batch.commands {
            // Counted in flight from the moment it is read, so a drain waits for it.
            let measured = command
                .request
                .as_ref()
                .and_then(|r| self.service.call_meter().start(rpc_path(r)));
            let service = Arc::clone(&self.service);
            self.pending.push(Box::pin(async move {
                let answer = answer(service, command).await;
                drop(measured);
                answer
            }));
        }
    }

    /// `first` and every other answer ready now, up to [`ANSWER_MESSAGE_BYTES`] (an
    /// answer that would pass it waits for the next message, so a message never grows
    /// past the size limit by more than its first answer).
    fn with_ready_answers(&mut self, first: CommandAnswer) -> BatchCommandsResponse {
        let mut bytes = first.encoded_len();
        let mut answers = vec![first];
        // Polled without a waker of ours: the stream is polled again after this message,
        // and that poll registers the task's waker for the rest.
        while bytes < ANSWER_MESSAGE_BYTES {
            let Some(Some(answer)) = self.pending.next().now_or_never() else {
                break;
            };
            let len = answer.encoded_len();
            if bytes + len > ANSWER_MESSAGE_BYTES {
                self.carried = Some(answer);
                break;
            }
            bytes += len;
            answers.push(answer);
        }
        BatchCommandsResponse { answers }
    }
}

/// The unary RPC whose metrics a command is counted in.
fn rpc_path(request: &CommandRequest) -> &'static str {
    match request {
        CommandRequest::Get(_) => "/kvrpc.Kv/RawGet",
        CommandRequest::Put(_) => "/kvrpc.Kv/RawPut",
        CommandRequest::Delete(_) => "/kvrpc.Kv/RawDelete",
        CommandRequest::CompareAndSwap(_) => "/kvrpc.Kv/RawCompareAndSwap",
    }
}

/// The response to `request` carrying `error` alone.
fn refused(request: &CommandRequest, error: RegionError) -> CommandResponse {
    match request {
        CommandRequest::Get(_) => CommandResponse::Get(Answer::with_region_error(error)),
        CommandRequest::Put(_) => CommandResponse::Put(Answer::with_region_error(error)),
        CommandRequest::Delete(_) => CommandResponse::Delete(Answer::with_region_error(error)),
        CommandRequest::CompareAndSwap(_) => {
            CommandResponse::CompareAndSwap(Answer::with_region_error(error))
        }
    }
}

/// Serves one command as its unary call would be served.
async fn answer(service: Arc<KvService>, command: Command) -> CommandAnswer {
    let id = command.id;
    let Some(request) = command.request else {
        return CommandAnswer {
            id,
            response: None,
            error: "bad request: the command carries no request this server knows".into(),
        };
    };
    let _slot = match service.admission().try_admit_request() {
        Ok(slot) => slot,
        Err(why) => {
            let busy = service.admission().busy_error(why);
            return CommandAnswer {
                id,
                response: Some(refused(&request, busy)),
                error: String::new(),
            };
        }
    };
    let response = match request {
        CommandRequest::Get(r) => CommandResponse::Get(service.answer_get(r).await),
        CommandRequest::Put(r) => CommandResponse::Put(service.answer_put(r).await),
        CommandRequest::Delete(r) => CommandResponse::Delete(service.answer_delete(r).await),
        CommandRequest::CompareAndSwap(r) => {
            CommandResponse::CompareAndSwap(service.answer_compare_and_swap(r).await)
        }
    };
    CommandAnswer {
        id,
        response: Some(response),
        error: String::new(),
    }
}
