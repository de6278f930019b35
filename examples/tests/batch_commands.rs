//! `Kv.BatchCommands` over real gRPC, in front of a fake store ([`fake_store`]) whose
//! commands the test answers by hand: answers are matched by id in completion order, each
//! command is admitted alone, a closing service ends its streams after answering what
//! they took, the client library's calls travel over the stream, and a call whose stream
//! breaks is retried as the same exactly-once write.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use raftkv_examples::proto::kvrpc::command::Request as CommandRequest;
use raftkv_examples::proto::kvrpc::command_answer::Response as CommandResponse;
use raftkv_examples::proto::kvrpc::kv_client::KvClient;
use raftkv_examples::proto::kvrpc::{
    BatchCommandsRequest, BatchCommandsResponse, Command, CommandAnswer,
};
use raftkv_examples::{Client, ServerLimits};
use tokio::sync::mpsc;
use tonic::Streaming;

#[path = "support/fake_store.rs"]
mod fake_store;
use fake_store::{
    FakeNode, next_command, put, start, start_advertising, start_without_batch_commands,
};

/// An open `BatchCommands` stream to `node`.
struct Stream {
    send: mpsc::UnboundedSender<BatchCommandsRequest>,
    answers: Streaming<BatchCommandsResponse>,
}

impl Stream {
    async fn open(node: &FakeNode) -> Self {
        let mut kv = KvClient::connect(format!("http://{}", node.addr))
            .await
            .unwrap();
        let (send, mut outgoing) = mpsc::unbounded_channel();
        let body = futures_util::stream::poll_fn(move |cx| outgoing.poll_recv(cx));
        let answers = kv.batch_commands(body).await.unwrap().into_inner();
        Self { send, answers }
    }

    fn send(&self, commands: Vec<Command>) {
        self.send.send(BatchCommandsRequest { commands }).unwrap();
    }

    /// The answers of the next message (bounded wait).
    async fn next(&mut self) -> Option<Vec<CommandAnswer>> {
        tokio::time::timeout(Duration::from_secs(20), self.answers.message())
            .await
            .expect("an answer message in time")
            .unwrap()
            .map(|m| m.answers)
    }
}

fn put_command(id: u64, key: &str) -> Command {
    Command {
        id,
        request: Some(CommandRequest::Put(put(key, 8))),
    }
}

fn put_answer(answer: &CommandAnswer) -> &raftkv_examples::proto::kvrpc::RawPutResponse {
    match &answer.response {
        Some(CommandResponse::Put(r)) => r,
        other => panic!("expected a put answer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_come_back_by_id_as_each_command_completes() {
    let mut node = start(ServerLimits::default()).await;
    let mut stream = Stream::open(&node).await;
    let empty = Command {
        id: 12,
        request: None,
    };
    stream.send(vec![put_command(10, "a"), put_command(11, "b"), empty]);

    // The command without a request is answered at once, with an error of its own.
    let first = stream.next().await.unwrap();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].id, 12);
    assert!(first[0].response.is_none());
    assert!(first[0].error.contains("no request"), "{}", first[0].error);

    // Both puts reach the store; the one answered first comes back first.
    let mut held = vec![next_command(&mut node).await, next_command(&mut node).await];
    held.sort_by_key(|h| h.key());
    let a = held.remove(0);
    let b = held.remove(0);
    b.succeed();
    let second = stream.next().await.unwrap();
    assert_eq!(second.iter().map(|x| x.id).collect::<Vec<_>>(), [11]);
    assert_eq!(put_answer(&second[0]).region_error, None);
    a.succeed();
    let third = stream.next().await.unwrap();
    assert_eq!(third.iter().map(|x| x.id).collect::<Vec<_>>(), [10]);
    assert!(put_answer(&third[0]).error.is_empty());
    assert_eq!(node.admission.requests_in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_command_is_admitted_alone() {
    let mut node = start(ServerLimits {
        max_requests_in_flight: 1,
        ..ServerLimits::default()
    })
    .await;
    let mut stream = Stream::open(&node).await;
    // The stream itself takes no request slot: the first command fills the only one.
    stream.send(vec![put_command(1, "held")]);
    let held = next_command(&mut node).await;
    assert_eq!(node.admission.requests_in_flight(), 1);
    stream.send(vec![put_command(2, "refused")]);
    let refused = stream.next().await.unwrap();
    assert_eq!(refused[0].id, 2);
    let busy = put_answer(&refused[0])
        .region_error
        .as_ref()
        .and_then(|e| e.server_is_busy.as_ref())
        .expect("ServerIsBusy");
    assert!(busy.reason.contains("requests in flight"), "{busy:?}");
    assert_eq!(node.admission.refused(), 1);
    assert!(
        node.commands.try_recv().is_err(),
        "a refused put reached the store"
    );
    held.succeed();
    assert_eq!(stream.next().await.unwrap()[0].id, 1);
    assert_eq!(node.admission.requests_in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_service_answers_what_its_streams_took_then_ends_them() {
    let mut node = start(ServerLimits::default()).await;
    let mut stream = Stream::open(&node).await;
    stream.send(vec![put_command(1, "taken")]);
    let taken = next_command(&mut node).await;

    node.kv.close_streams();
    // Sent after the close: never read, so it never reaches the store.
    stream.send(vec![put_command(2, "late")]);
    taken.succeed();
    let answers = stream.next().await.unwrap();
    assert_eq!(answers.iter().map(|a| a.id).collect::<Vec<_>>(), [1]);
    assert_eq!(
        stream.next().await,
        None,
        "the stream ends after its last answer"
    );
    assert!(node.commands.try_recv().is_err(), "a late command was read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_concurrent_client_call_gets_its_own_answer() {
    let mut node = start(ServerLimits::default()).await;
    let client = std::sync::Arc::new(Client::connect([node.addr.clone()]).unwrap());
    let calls: Vec<_> = ["x", "y", "z"]
        .into_iter()
        .map(|key| {
            let client = client.clone();
            tokio::spawn(async move { (key, client.get(key).await) })
        })
        .collect();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(next_command(&mut node).await);
    }
    // Answered in the reverse order of their keys, each with a value naming its key.
    held.sort_by_key(|h| std::cmp::Reverse(h.key()));
    for h in held {
        let value = [b"value of ".as_slice(), &h.key()].concat();
        h.found(&value);
    }
    for call in calls {
        let (key, got) = call.await.unwrap();
        let got = got.unwrap().expect("found");
        assert_eq!(got, format!("value of {key}").as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_too_large_for_a_command_is_answered_and_the_stream_still_serves() {
    let mut node = start(ServerLimits::default()).await;
    let client = std::sync::Arc::new(Client::connect([node.addr.clone()]).unwrap());
    // 40 MiB: over the link's command limit (and over what a message of the stream
    // could carry beside other commands), under the unary call's 64 MiB.
    let big = vec![9u8; 40 << 20];
    let put = {
        let client = client.clone();
        tokio::spawn(async move { client.put("big", big).await })
    };
    let held = next_command(&mut node).await;
    assert_eq!(held.key(), b"big");
    held.succeed();
    put.await.unwrap().expect("the large put is answered");
    // The stream still serves small calls afterwards.
    let small = tokio::spawn(async move { client.put("small", "v").await });
    next_command(&mut node).await.succeed();
    small.await.unwrap().expect("a small put after it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_stream_gets_unary_calls() {
    let mut node = start_without_batch_commands(ServerLimits::default()).await;
    let client = std::sync::Arc::new(Client::connect([node.addr.clone()]).unwrap());
    for key in ["first", "second"] {
        let client = client.clone();
        let put = tokio::spawn(async move { client.put(key, "v").await });
        let held = next_command(&mut node).await;
        assert_eq!(held.key(), key.as_bytes());
        held.succeed();
        put.await.unwrap().expect("answered over a unary call");
    }
}

/// A loopback TCP proxy whose open connections the test can cut at once (as a crashed
/// node or a network fault would), while it keeps accepting new ones.
struct CuttableProxy {
    addr: String,
    listener: tokio::net::TcpListener,
    connections: std::sync::Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
}

impl CuttableProxy {
    /// Binds the proxy's port; it forwards nothing until [`Self::forward_to`].
    async fn bind() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self {
            addr: listener.local_addr().unwrap().to_string(),
            listener,
            connections: std::sync::Arc::default(),
        }
    }

    /// Forwards every connection to `target`; returns the handle that cuts them.
    fn forward_to(self, target: String) -> ProxyCutter {
        let accepted = self.connections.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = self.listener.accept().await {
                let target = target.clone();
                accepted.lock().unwrap().spawn(async move {
                    let mut outbound = tokio::net::TcpStream::connect(target).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        ProxyCutter(self.connections)
    }
}

/// Cuts a [`CuttableProxy`]'s open connections.
struct ProxyCutter(std::sync::Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>);

impl ProxyCutter {
    /// Drops every open connection (both sockets of each are closed).
    fn cut(&self) {
        self.0.lock().unwrap().abort_all();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_whose_stream_breaks_is_retried_as_the_same_exactly_once_write() {
    // The node advertises the proxy's address, so every connection of the client (status
    // queries and the command stream) goes through it.
    let proxy = CuttableProxy::bind().await;
    let proxy_addr = proxy.addr.clone();
    let mut node = start_advertising(ServerLimits::default(), proxy_addr.clone()).await;
    let proxy = proxy.forward_to(node.addr.clone());
    // A deadline under the client's per-attempt timeout (3 s): only the stream breaking,
    // not a timed-out attempt, can bring the retry in time.
    let client = std::sync::Arc::new(
        Client::connect([proxy_addr])
            .unwrap()
            .with_timeout(Duration::from_millis(2500)),
    );
    let put = {
        let client = client.clone();
        tokio::spawn(async move { client.put("k", "v").await })
    };
    let first = next_command(&mut node).await;
    let (client_id, sequence) = first.session();
    assert!(
        client_id != 0 && sequence != 0,
        "a put is an exactly-once write"
    );
    // The store holds the put (its outcome unknown to the client) when the stream breaks.
    proxy.cut();
    let retry = next_command(&mut node).await;
    assert_eq!(retry.key(), b"k");
    assert_eq!(
        retry.session(),
        (client_id, sequence),
        "the retry must carry the first attempt's identity, so the store applies it once"
    );
    retry.succeed();
    put.await.unwrap().expect("the retried put is answered");
    // Held (unanswered) until here: dropping its callback earlier would answer the first
    // attempt with an error, a retry path other than the stream breaking.
    drop(first);
}
