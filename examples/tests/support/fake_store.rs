//! A `Kv` service in front of a fake store whose commands the test answers by hand, so
//! "the store holds N commands" is an event (they arrived) rather than a race with a real
//! store's commit.
#![allow(dead_code, clippy::unwrap_used)] // each test crate uses its own subset

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use raft_store::pb::metapb::Region;
use raft_store::pb::raft_cmdpb::{
    CmdType, GetResponse, RaftCmdRequest, RaftCmdResponse, Response, ResponseHeader,
};
use raft_store::{Callback, RegionStatus, StoreMailbox, StoreMsg};
use raftkv_examples::admission::{Admission, AdmissionLayer};
use raftkv_examples::kv_service::KvService;
use raftkv_examples::node::MAX_KV_MESSAGE_BYTES;
use raftkv_examples::proto::kvrpc::RawPutRequest;
use raftkv_examples::proto::kvrpc::admin_server::AdminServer;
use raftkv_examples::proto::kvrpc::kv_server::KvServer;
use raftkv_examples::{NodeConfig, ServerLimits};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

/// A command the fake store received, to be answered by the test.
pub struct Held {
    request: Box<RaftCmdRequest>,
    callback: Callback,
}

impl Held {
    /// The key of the put or get it carries.
    pub fn key(&self) -> Vec<u8> {
        let request = &self.request.requests[0];
        match (&request.put, &request.get) {
            (Some(put), _) => put.key.to_vec(),
            (None, Some(get)) => get.key.to_vec(),
            (None, None) => panic!("neither a put nor a get: {request:?}"),
        }
    }

    /// The exactly-once identity it carries: `(client_id, sequence)`.
    pub fn session(&self) -> (u64, u64) {
        let header = self
            .request
            .header
            .as_ref()
            .expect("a command has a header");
        (header.client_id, header.sequence)
    }

    /// Answers a get with `value`.
    pub fn found(self, value: &[u8]) {
        (self.callback)(RaftCmdResponse {
            header: Some(ResponseHeader::default()),
            responses: vec![Response {
                cmd_type: CmdType::Get as i32,
                get: Some(GetResponse {
                    value: value.to_vec().into(),
                    found: true,
                }),
                ..Default::default()
            }],
            ..Default::default()
        });
    }

    /// Answers it as applied.
    pub fn succeed(self) {
        (self.callback)(RaftCmdResponse {
            header: Some(ResponseHeader::default()),
            ..Default::default()
        });
    }
}

/// Store 1 alone, leading region 1 (the whole key space): its `Kv` and `Admin` services
/// on loopback, its store replaced by a thread that answers region queries and hands
/// every command to the test.
pub struct FakeNode {
    pub addr: String,
    pub admission: Arc<Admission>,
    pub commands: mpsc::UnboundedReceiver<Held>,
    /// The service (a clone of the one serving), to close its streams.
    pub kv: KvService,
}

pub async fn start(limits: ServerLimits) -> FakeNode {
    start_with(limits, false, None).await
}

/// Like [`start`], but the node tells clients (in its region statuses) that it is at
/// `advertised`, a proxy in front of it, say.
pub async fn start_advertising(limits: ServerLimits, advertised: String) -> FakeNode {
    start_with(limits, false, Some(advertised)).await
}

/// Like [`start`], but the server answers `Kv.BatchCommands` `Unimplemented`, as a node
/// from before the stream existed would.
pub async fn start_without_batch_commands(limits: ServerLimits) -> FakeNode {
    start_with(limits, true, None).await
}

/// Rewrites the path of `Kv.BatchCommands` (when `hide`) to a method tonic does not
/// route, which it answers `Unimplemented`.
#[derive(Clone)]
struct HideBatchCommands<S> {
    inner: S,
    hide: bool,
}

impl<S, B> tower::Service<http::Request<B>> for HideBatchCommands<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> S::Future {
        if self.hide && request.uri().path() == "/kvrpc.Kv/BatchCommands" {
            *request.uri_mut() = http::Uri::from_static("/kvrpc.Kv/NotServedHere");
        }
        self.inner.call(request)
    }
}

#[derive(Clone)]
struct HideBatchCommandsLayer(bool);

impl<S> tower::Layer<S> for HideBatchCommandsLayer {
    type Service = HideBatchCommands<S>;

    fn layer(&self, inner: S) -> HideBatchCommands<S> {
        HideBatchCommands {
            inner,
            hide: self.0,
        }
    }
}

async fn start_with(
    limits: ServerLimits,
    hide_batch_commands: bool,
    advertised: Option<String>,
) -> FakeNode {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peers = BTreeMap::from([(1, advertised.unwrap_or_else(|| addr.to_string()))]);
    let region: Region =
        NodeConfig::new(1, addr, peers.clone(), std::env::temp_dir()).first_region();
    let (mailbox, rx) = StoreMailbox::new(64);
    let (tx, commands) = mpsc::unbounded_channel();
    let status = region.clone();
    std::thread::spawn(move || {
        // Ends when the service (the mailbox's last sender) is dropped with the runtime.
        while let Ok(msg) = rx.recv() {
            match msg {
                StoreMsg::QueryRegions(answer) => answer(vec![RegionStatus {
                    region: status.clone(),
                    leader_store_id: 1,
                    is_leader: true,
                    term: 1,
                    commit_index: 1,
                    applied_index: 1,
                }]),
                StoreMsg::Command { request, callback } => {
                    let _ = tx.send(Held { request, callback });
                }
                other => panic!("unexpected store message {other:?}"),
            }
        }
    });
    let admission = Admission::new(1, &limits);
    let kv = KvService::new(1, mailbox, peers, region, admission.clone());
    let admin = kv.admin();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        Server::builder()
            .layer(HideBatchCommandsLayer(hide_batch_commands))
            .layer(AdmissionLayer::new(admission.clone()))
            .add_service(
                KvServer::new(kv.clone())
                    .max_decoding_message_size(MAX_KV_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_KV_MESSAGE_BYTES),
            )
            .add_service(AdminServer::new(admin))
            .serve_with_incoming(incoming),
    );
    FakeNode {
        addr: addr.to_string(),
        admission,
        commands,
        kv,
    }
}

pub fn put(key: &str, value: usize) -> RawPutRequest {
    RawPutRequest {
        context: None,
        key: key.as_bytes().to_vec().into(),
        value: vec![7; value].into(),
    }
}

/// Waits (bounded) for the next command the fake store received.
pub async fn next_command(node: &mut FakeNode) -> Held {
    tokio::time::timeout(Duration::from_secs(20), node.commands.recv())
        .await
        .expect("a command reached the store in time")
        .expect("the fake store runs")
}
