//! A leader deposed while writes wait to be proposed. Writes handed to a peer are queued
//! and proposed at the end of the store's loop iteration; a message later in the same
//! iteration may make the peer a follower (a newer leader's append). A follower's raft
//! forwards a proposal to the leader and reports success without appending it, so the
//! queued writes must be refused, not registered at the follower's last index: that index
//! holds another entry, whose result (or the empty answer of a leader's no-op) would be
//! taken for theirs. Found by the kill -9 crash tests (a compare-and-swap answered
//! "not swapped, key absent" while the key held a value).
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use conformance_tests::cluster::{Cluster, cas, test_config};
use engines::Peekable;
use raft_store::StoreMsg;
use raft_store::keys::{self, CF_DEFAULT};
use raft_store::pb::raft_cmdpb::RaftCmdResponse;
use raft_store::pb::raft_serverpb::RaftMessage;

#[test]
fn writes_queued_on_a_leader_deposed_in_the_same_iteration_are_refused() {
    let mut c = Cluster::new(3, test_config(), b"", b"");
    c.must_put(b"k", b"v0");
    let old = c.leader(1);
    let others: Vec<u64> = (1..=3).filter(|&id| id != old).collect();

    // Isolate the leader, holding back what the others send it.
    let held: Arc<Mutex<Vec<RaftMessage>>> = Arc::default();
    let isolated = c.filters().add({
        let held = held.clone();
        move |from: u64, to: u64, msg: &RaftMessage| {
            if to == old {
                held.lock().unwrap().push(msg.clone());
            }
            from == old || to == old
        }
    });
    // Only the others' clocks run: the old leader keeps believing it leads.
    let new = 'elected: {
        for _ in 0..500 {
            for &id in &others {
                c.stores
                    .get_mut(&id)
                    .unwrap()
                    .handle_msgs([StoreMsg::Tick])
                    .unwrap();
            }
            c.run();
            let leaders: HashSet<u64> = others
                .iter()
                .copied()
                .filter(|&id| c.stores[&id].peer(1).unwrap().is_leader())
                .collect();
            if let Some(&id) = leaders.iter().next() {
                break 'elected id;
            }
        }
        panic!("the others elected no leader");
    };
    // The new leader's no-op is committed on the majority.
    c.must_put(b"other", b"x");
    assert!(c.stores[&old].peer(1).unwrap().is_leader());
    c.filters().remove(isolated);

    // One loop iteration of the old leader: a write it still accepts as leader, then the
    // new leader's messages, which depose it and append the new term's entries.
    let answer: Arc<Mutex<Option<RaftCmdResponse>>> = Arc::default();
    let mut msgs = vec![StoreMsg::Command {
        request: Box::new(c.request(old, vec![cas(b"k", Some(b"v0"), Some(b"v1"))])),
        callback: Box::new({
            let answer = answer.clone();
            move |resp| *answer.lock().unwrap() = Some(resp)
        }),
    }];
    let from_new: Vec<RaftMessage> = held
        .lock()
        .unwrap()
        .drain(..)
        .filter(|m| m.from_peer.is_some_and(|p| p.store_id == new))
        .collect();
    assert!(!from_new.is_empty(), "the new leader sent nothing");
    msgs.extend(
        from_new
            .into_iter()
            .map(|m| StoreMsg::RaftMessage(Box::new(m))),
    );
    c.stores.get_mut(&old).unwrap().handle_msgs(msgs).unwrap();
    assert!(!c.stores[&old].peer(1).unwrap().is_leader());
    for _ in 0..50 {
        c.tick();
    }

    let resp = answer
        .lock()
        .unwrap()
        .take()
        .expect("the write was answered");
    let error = resp.header.as_ref().and_then(|h| h.error.as_ref());
    assert!(
        error.is_some_and(|e| e.not_leader.is_some()),
        "a write queued on a deposed leader must be refused with not_leader: {resp:?}"
    );
    // And it was not applied behind the client's back.
    for id in 1..=3 {
        let v = c.kv(id).get(CF_DEFAULT, &keys::data_key(b"k")).unwrap();
        assert_eq!(v.as_deref(), Some(&b"v0"[..]), "store {id}");
    }
}
