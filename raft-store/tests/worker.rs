//! Three stores, each on its own raft worker thread with a real clock, exchanging
//! messages mailbox to mailbox.

#![allow(clippy::unwrap_used)] // a test

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conformance_tests::cluster::live::{on_leader, region, request};
use conformance_tests::cluster::{get, put};
use engines::MemoryEngine;
use raft_store::bootstrap::{bootstrap_region, bootstrap_store};
use raft_store::keys::{CF_DEFAULT, CF_META, CF_RAFT};
use raft_store::pb::raft_serverpb::RaftMessage;
use raft_store::raft_worker::MAILBOX_CAPACITY;
use raft_store::{
    Config, RaftMessageSender, RaftWorker, SnapManager, Store, StoreMailbox, StoreMsg,
};

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

#[test]
fn workers_elect_replicate_and_serve_reads() {
    elect_replicate_and_serve_reads(false);
}

/// The same with each store's raft batches written by its writer thread.
#[test]
fn workers_with_raft_log_writers_elect_replicate_and_serve_reads() {
    elect_replicate_and_serve_reads(true);
}

fn elect_replicate_and_serve_reads(raft_async_write: bool) {
    let cfg = Config {
        raft_base_tick_ms: 10,
        raft_async_write,
        ..Config::default()
    };
    let routes: Routes = Arc::default();
    let mut workers = Vec::new();
    let mut mailboxes = Vec::new();
    let snap_dir = tempfile::tempdir().unwrap();
    for id in 1..=3 {
        let raft = MemoryEngine::new(&[CF_RAFT]).unwrap();
        let kv = MemoryEngine::new(&[CF_DEFAULT, CF_META]).unwrap();
        bootstrap_store(&kv, 1, id).unwrap();
        bootstrap_region(&raft, &kv, &region()).unwrap();
        let sender = MailboxSender {
            routes: routes.clone(),
            pending: Vec::new(),
        };
        let snap_mgr = SnapManager::open(snap_dir.path().join(id.to_string()), &cfg).unwrap();
        let store = Store::open(id, cfg.clone(), raft, kv, sender, snap_mgr).unwrap();
        let (mailbox, rx) = StoreMailbox::new(MAILBOX_CAPACITY);
        routes.lock().unwrap().insert(id, mailbox.clone());
        mailboxes.push((id, mailbox.clone()));
        let tick = Duration::from_millis(cfg.raft_base_tick_ms);
        workers.push(RaftWorker::spawn(store, mailbox, rx, tick, cfg.max_batch_msgs).unwrap());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        on_leader(&mailboxes, request(vec![put(b"k", b"v")])).await;
        let (_, resp) = on_leader(&mailboxes, request(vec![get(b"k")])).await;
        let got = resp.responses[0].get.clone().unwrap();
        assert!(got.found);
        assert_eq!(&got.value[..], b"v");
        // Many writes in flight at once: rounds gather while a batch is written.
        let mut puts = tokio::task::JoinSet::new();
        for i in 0..200u32 {
            let mailboxes = mailboxes.clone();
            let req = request(vec![put(format!("k{i}").as_bytes(), b"x")]);
            puts.spawn(async move { on_leader(&mailboxes, req).await });
        }
        while let Some(done) = puts.join_next().await {
            done.unwrap();
        }
        let (_, resp) = on_leader(&mailboxes, request(vec![get(b"k199")])).await;
        assert!(resp.responses[0].get.clone().unwrap().found);
    });
    for worker in workers {
        worker.shutdown().unwrap();
    }
    // A stopped worker answers with a typed error instead of hanging.
    let resp = rt.block_on(mailboxes[0].1.execute(request(Vec::new())));
    assert!(resp.header.and_then(|h| h.error).is_some());
}
