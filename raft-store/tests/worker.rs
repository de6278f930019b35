//! Three stores, each on its own raft worker thread with a real clock, exchanging
//! messages mailbox to mailbox.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engines::MemoryEngine;
use raft_store::bootstrap::{bootstrap_region, bootstrap_store};
use raft_store::keys::{CF_DEFAULT, CF_META, CF_RAFT};
use raft_store::pb::metapb::{Peer, Region, RegionEpoch};
use raft_store::pb::raft_cmdpb::{
    CmdType, GetRequest, PutRequest, RaftCmdRequest, RaftCmdResponse, Request, RequestHeader,
};
use raft_store::pb::raft_serverpb::RaftMessage;
use raft_store::raft_worker::MAILBOX_CAPACITY;
use raft_store::{Config, RaftMessageSender, RaftWorker, Store, StoreMailbox, StoreMsg};

type Routes = Arc<Mutex<HashMap<u64, StoreMailbox>>>;

struct MailboxSender {
    routes: Routes,
    pending: Vec<(u64, RaftMessage)>,
}

impl RaftMessageSender for MailboxSender {
    fn send(&mut self, to_store: u64, msg: RaftMessage) {
        self.pending.push((to_store, msg));
    }

    fn flush(&mut self) {
        let routes = self.routes.lock().expect("routes lock: no holder panics");
        for (to, msg) in self.pending.drain(..) {
            if let Some(mailbox) = routes.get(&to) {
                // A full or stopped mailbox loses the message, as a network would.
                let _ = mailbox.try_send(StoreMsg::RaftMessage(Box::new(msg)));
            }
        }
    }
}

fn region() -> Region {
    Region {
        id: 1,
        region_epoch: Some(RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: (1..=3)
            .map(|id| Peer {
                id,
                store_id: id,
                role: 0,
            })
            .collect(),
        ..Default::default()
    }
}

fn request(requests: Vec<Request>) -> RaftCmdRequest {
    RaftCmdRequest {
        header: Some(RequestHeader {
            region_id: 1,
            region_epoch: region().region_epoch,
            ..Default::default()
        }),
        requests,
        admin_request: None,
    }
}

fn error_of(resp: &RaftCmdResponse) -> Option<&raft_store::pb::errorpb::Error> {
    resp.header.as_ref().and_then(|h| h.error.as_ref())
}

/// Sends `req` to every store until one accepts it (the leader), within a deadline.
async fn on_leader(mailboxes: &[StoreMailbox], req: RaftCmdRequest) -> RaftCmdResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for mailbox in mailboxes {
            let resp = mailbox.execute(req.clone()).await;
            match error_of(&resp) {
                None => return resp,
                Some(e) if e.not_leader.is_some() || e.stale_command.is_some() => {}
                Some(e) => panic!("request failed: {e:?}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "no leader accepted the request in time"
        );
        // Polling: elections take a few ticks and there is no event to wait on here.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn workers_elect_replicate_and_serve_reads() {
    let cfg = Config {
        raft_base_tick_ms: 10,
        ..Config::default()
    };
    let routes: Routes = Arc::default();
    let mut workers = Vec::new();
    let mut mailboxes = Vec::new();
    for id in 1..=3 {
        let raft = MemoryEngine::new(&[CF_RAFT]).unwrap();
        let kv = MemoryEngine::new(&[CF_DEFAULT, CF_META]).unwrap();
        bootstrap_store(&kv, 1, id).unwrap();
        bootstrap_region(&raft, &kv, &region()).unwrap();
        let sender = MailboxSender {
            routes: routes.clone(),
            pending: Vec::new(),
        };
        let store = Store::open(id, cfg.clone(), raft, kv, sender).unwrap();
        let (mailbox, rx) = StoreMailbox::new(MAILBOX_CAPACITY);
        routes.lock().unwrap().insert(id, mailbox.clone());
        mailboxes.push(mailbox.clone());
        let tick = Duration::from_millis(cfg.raft_base_tick_ms);
        workers.push(RaftWorker::spawn(store, mailbox, rx, tick, cfg.max_batch_msgs).unwrap());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let put = Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest {
                cf: String::new(),
                key: b"k".to_vec().into(),
                value: b"v".to_vec().into(),
            }),
            ..Default::default()
        };
        on_leader(&mailboxes, request(vec![put])).await;
        let get = Request {
            cmd_type: CmdType::Get as i32,
            get: Some(GetRequest {
                cf: String::new(),
                key: b"k".to_vec().into(),
            }),
            ..Default::default()
        };
        let resp = on_leader(&mailboxes, request(vec![get])).await;
        let got = resp.responses[0].get.clone().unwrap();
        assert!(got.found);
        assert_eq!(&got.value[..], b"v");
    });
    for worker in workers {
        worker.shutdown().unwrap();
    }
    // A stopped worker answers with a typed error instead of hanging.
    let resp = rt.block_on(mailboxes[0].execute(request(Vec::new())));
    assert!(error_of(&resp).is_some());
}
