//! A client's `Kv.BatchCommands` stream to one node: the single-key calls made to that
//! node at the same time go out together, as one message per turn of the link's task,
//! and their answers come back matched by id.
//!
//! Batching needs no timer: the link's task sends what is queued whenever it runs, so
//! a lone call goes out at once and calls made while a message is on its way share the
//! next one. The stream is opened on the first call and again after it breaks; a break
//! (the node stopped, the connection failed, the node closed the stream on shutdown)
//! fails every unanswered call with the stream's status, which the client treats like a
//! failed unary call (retried elsewhere; writes are exactly-once).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;
use tonic::transport::Channel;

use crate::node::MAX_KV_MESSAGE_BYTES;
use crate::proto::kvrpc::command::Request as CommandRequest;
use crate::proto::kvrpc::command_answer::Response as CommandResponse;
use crate::proto::kvrpc::kv_client::KvClient;
use crate::proto::kvrpc::{self, BatchCommandsRequest, BatchCommandsResponse, Command};

/// A message carries queued commands up to about this many encoded bytes.
const MESSAGE_BYTES: usize = 1 << 20;
/// The largest command sent over the link; a larger request goes as its own unary call
/// ([`Batched::fits_a_command`]), so it neither holds up the calls queued behind it on
/// the one stream nor pushes a message past the size limit.
pub(crate) const COMMAND_BYTES_MAX: usize = MESSAGE_BYTES;
/// Unanswered entries are pruned of abandoned calls when they reach this many (and then
/// twice as many as remained).
const PRUNE_AT_LEAST: usize = 1024;

type AnswerTx = oneshot::Sender<Result<CommandResponse, Status>>;

/// A call waiting to be sent.
struct Queued {
    request: CommandRequest,
    answer: AnswerTx,
}

/// The sending side of a link; cheap to clone. The link's task ends when every clone is
/// dropped.
#[derive(Debug, Clone)]
pub(crate) struct CommandLink {
    queue: mpsc::UnboundedSender<Queued>,
}

/// The answer of a unary call.
pub(crate) type UnaryAnswer<R> =
    Pin<Box<dyn Future<Output = Result<tonic::Response<R>, Status>> + Send>>;

/// A request that can travel as a command, and its response.
pub(crate) trait Batched: Message + Sized {
    /// The unary response type.
    type Response;
    /// The command carrying `self`.
    fn into_command(self) -> CommandRequest;
    /// The response, when the answer is of this request's type.
    fn response(answer: CommandResponse) -> Option<Self::Response>;
    /// Sends `self` as its own unary call instead.
    fn unary(self, client: KvClient<Channel>) -> UnaryAnswer<Self::Response>;

    /// Whether `self` is small enough to travel as a command.
    fn fits_a_command(&self) -> bool {
        self.encoded_len() <= COMMAND_BYTES_MAX
    }
}

macro_rules! batched {
    ($($request:ty => $response:ty, $variant:ident, $rpc:ident;)*) => {$(
        impl Batched for $request {
            type Response = $response;
            fn into_command(self) -> CommandRequest {
                CommandRequest::$variant(self)
            }
            fn response(answer: CommandResponse) -> Option<$response> {
                match answer {
                    CommandResponse::$variant(r) => Some(r),
                    _ => None,
                }
            }
            fn unary(self, mut client: KvClient<Channel>) -> UnaryAnswer<$response> {
                Box::pin(async move { client.$rpc(self).await })
            }
        }
    )*};
}

batched! {
    kvrpc::RawGetRequest => kvrpc::RawGetResponse, Get, raw_get;
    kvrpc::RawPutRequest => kvrpc::RawPutResponse, Put, raw_put;
    kvrpc::RawDeleteRequest => kvrpc::RawDeleteResponse, Delete, raw_delete;
    kvrpc::RawCompareAndSwapRequest => kvrpc::RawCompareAndSwapResponse, CompareAndSwap,
        raw_compare_and_swap;
}

impl CommandLink {
    /// A link over `channel`; its task runs on the current tokio runtime.
    pub(crate) fn spawn(channel: Channel) -> Self {
        let (queue, queued) = mpsc::unbounded_channel();
        tokio::spawn(run(channel, queued));
        Self { queue }
    }

    /// Sends `request` (at most [`COMMAND_BYTES_MAX`] bytes) as a command and waits for
    /// its answer. `Unimplemented` when the node has no `BatchCommands` or does not know
    /// the command.
    pub(crate) async fn call<R: Batched>(
        &self,
        request: R,
    ) -> Result<tonic::Response<R::Response>, Status> {
        let (answer, answered) = oneshot::channel();
        let queued = Queued {
            request: request.into_command(),
            answer,
        };
        self.queue
            .send(queued)
            .map_err(|_| Status::unavailable("the client's link task has stopped"))?;
        let response = answered
            .await
            .map_err(|_| Status::unavailable("the link to the node dropped the call"))??;
        R::response(response)
            .map(tonic::Response::new)
            .ok_or_else(|| Status::internal("the node answered with another call's response"))
    }
}

/// An open stream: where commands are sent, and where answers arrive.
struct Open {
    commands: mpsc::UnboundedSender<BatchCommandsRequest>,
    answers: tonic::Streaming<BatchCommandsResponse>,
}

async fn open(channel: &Channel) -> Result<Open, Status> {
    let (commands, outgoing) = mpsc::unbounded_channel();
    let mut outgoing = outgoing;
    let body = futures_util::stream::poll_fn(move |cx| outgoing.poll_recv(cx));
    let answers = KvClient::new(channel.clone())
        .max_decoding_message_size(MAX_KV_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_KV_MESSAGE_BYTES)
        .batch_commands(body)
        .await?
        .into_inner();
    Ok(Open { commands, answers })
}

/// The calls sent and not yet answered, by command id.
#[derive(Default)]
struct Unanswered {
    calls: HashMap<u64, AnswerTx>,
    last_id: u64,
    prune_at: usize,
}

impl Unanswered {
    /// Registers `queued`'s call and returns its command.
    fn command(&mut self, queued: Queued) -> Command {
        self.last_id += 1;
        self.calls.insert(self.last_id, queued.answer);
        if self.calls.len() >= self.prune_at.max(PRUNE_AT_LEAST) {
            // Calls whose caller gave up (timed out) wait for answers nobody reads.
            self.calls.retain(|_, tx| !tx.is_closed());
            self.prune_at = self.calls.len() * 2;
        }
        Command {
            id: self.last_id,
            request: Some(queued.request),
        }
    }

    fn answer(&mut self, answers: BatchCommandsResponse) {
        for a in answers.answers {
            let Some(tx) = self.calls.remove(&a.id) else {
                continue;
            };
            let outcome = match a.response {
                Some(response) => Ok(response),
                None => Err(Status::unimplemented(a.error)),
            };
            // The caller may have given up waiting.
            let _ = tx.send(outcome);
        }
    }

    fn fail_all(&mut self, status: &Status) {
        for (_, tx) in self.calls.drain() {
            let _ = tx.send(Err(status.clone()));
        }
    }
}

/// The link's task: sends what is queued, hands out answers, reopens a broken stream.
async fn run(channel: Channel, mut queued: mpsc::UnboundedReceiver<Queued>) {
    let mut stream: Option<Open> = None;
    let mut unanswered = Unanswered::default();
    loop {
        tokio::select! {
            first = queued.recv() => {
                // Every `CommandLink` is gone: the client was dropped.
                let Some(first) = first else { return };
                let batch = drain(first, &mut queued);
                if batch.is_empty() {
                    continue;
                }
                let open_stream = match stream.take() {
                    Some(s) => s,
                    None => match open(&channel).await {
                        Ok(s) => s,
                        Err(status) => {
                            for q in batch {
                                let _ = q.answer.send(Err(status.clone()));
                            }
                            continue;
                        }
                    },
                };
                let commands = batch.into_iter().map(|q| unanswered.command(q)).collect();
                if open_stream.commands.send(BatchCommandsRequest { commands }).is_err() {
                    unanswered.fail_all(&Status::unavailable("the stream to the node closed"));
                } else {
                    stream = Some(open_stream);
                }
            }
            answers = next_answers(stream.as_mut()), if stream.is_some() => match answers {
                Ok(Some(answers)) => unanswered.answer(answers),
                Ok(None) => {
                    stream = None;
                    unanswered.fail_all(&Status::unavailable("the node ended the stream"));
                }
                Err(status) => {
                    stream = None;
                    unanswered.fail_all(&status);
                }
            },
        }
    }
}

async fn next_answers(stream: Option<&mut Open>) -> Result<Option<BatchCommandsResponse>, Status> {
    match stream {
        Some(s) => s.answers.message().await,
        None => std::future::pending().await,
    }
}

/// `first` and whatever else is queued now, up to [`MESSAGE_BYTES`], without the calls
/// whose caller has given up (timed out): sending those would only replay stale work on
/// a node that was slow, after the caller moved on.
fn drain(first: Queued, queued: &mut mpsc::UnboundedReceiver<Queued>) -> Vec<Queued> {
    let mut bytes = 0;
    let mut batch = Vec::new();
    let mut next = Some(first);
    while let Some(q) = next.take() {
        if !q.answer.is_closed() {
            bytes += q.request.encoded_len();
            batch.push(q);
        }
        if bytes < MESSAGE_BYTES {
            next = queued.try_recv().ok();
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queued get and the receiver its caller would await.
    fn queued() -> (Queued, oneshot::Receiver<Result<CommandResponse, Status>>) {
        let (answer, rx) = oneshot::channel();
        let request = CommandRequest::Get(kvrpc::RawGetRequest::default());
        (Queued { request, answer }, rx)
    }

    #[test]
    fn abandoned_calls_are_pruned_and_live_ones_kept() {
        let mut unanswered = Unanswered::default();
        let mut live = Vec::new();
        // Every tenth caller keeps waiting; the others give up after their call was sent.
        for i in 0..PRUNE_AT_LEAST {
            let (q, rx) = queued();
            unanswered.command(q);
            if i % 10 == 0 {
                live.push(rx);
            }
        }
        assert_eq!(
            unanswered.calls.len(),
            live.len() + 1,
            "pruned at the threshold"
        );
        // The next prune waits for twice the calls that remained (no prune per call).
        assert_eq!(unanswered.prune_at, unanswered.calls.len() * 2);
        // The live callers still get their answers.
        unanswered.fail_all(&Status::unavailable("the stream broke"));
        for mut rx in live {
            let outcome = rx.try_recv().expect("a live caller is answered");
            assert_eq!(outcome.unwrap_err().code(), tonic::Code::Unavailable);
        }
    }

    #[test]
    fn drain_skips_calls_whose_caller_gave_up() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (first, _first_rx) = queued();
        let (abandoned, abandoned_rx) = queued();
        let (last, _last_rx) = queued();
        drop(abandoned_rx);
        tx.send(abandoned).unwrap();
        tx.send(last).unwrap();
        assert_eq!(drain(first, &mut rx).len(), 2);
    }
}
