//! Fault scenarios in the spirit of TinyKV's test_raftstore: five stores on raft worker
//! threads over the `channel` transport, concurrent recording clients, and faults
//! (unreliable network, partitions, restarts, a tiny log-GC limit, conf changes, splits,
//! leader transfers). Every scenario checks its whole history at the end: linearizable, no
//! acknowledged write lost, each client's appends exactly once and in order.
//!
//! Length: each scenario runs `SCENARIO_ITERATIONS` rounds (default 2) of
//! `SCENARIO_ROUND_MS` milliseconds of workload (default 400); between rounds the faults
//! heal and, in the persist variants, every store restarts. `SCENARIO_SEED` replays a run
//! (each scenario prints its seed). For a soak:
//! `SCENARIO_ITERATIONS=5 SCENARIO_ROUND_MS=5000 cargo test -p conformance-tests --test scenarios`.
#![allow(clippy::unwrap_used, clippy::print_stderr)] // a test, reporting its seed

use std::time::{Duration, Instant};

use conformance_tests::cluster::filter::{DropRate, Partition};
use conformance_tests::cluster::workload::{self, Workload, shared_key};
use conformance_tests::cluster::{
    ClientConfig, EngineFactory, LiveCluster, change_peer, get, split_at, transfer_leader,
};
use conformance_tests::env::u64_var;
use conformance_tests::linearizability::{KvInput, Outcome, Recorder};
use conformance_tests::on_engine;
use raft_core::eraftpb::{ConfChangeType, MessageType};
use raft_store::Config;
use raft_store::pb::metapb::Region;
use raft_store::pb::raft_cmdpb::{RaftCmdRequest, RequestHeader};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const STORES: u64 = 5;

fn iterations() -> u64 {
    u64_var("SCENARIO_ITERATIONS").unwrap_or(2)
}

fn round() -> Duration {
    Duration::from_millis(u64_var("SCENARIO_ROUND_MS").unwrap_or(400))
}

fn seed(name: &str) -> u64 {
    let seed = conformance_tests::env::seed("SCENARIO_SEED");
    eprintln!("scenario {name}: seed {seed} (replay with SCENARIO_SEED={seed})");
    seed
}

/// The faults of a generic scenario.
#[derive(Debug, Clone, Copy, Default)]
struct Spec {
    clients: u64,
    /// 10% of messages dropped, 0–3 ms of delay.
    unreliable: bool,
    /// A new random partition every 50–150 ms.
    partitions: bool,
    /// Every store restarts between rounds.
    restarts: bool,
    /// The log-GC limit (entries), which forces snapshots.
    gc_limit: Option<u64>,
    /// Random peer additions and removals during the rounds.
    conf_change: bool,
    /// Tiny split thresholds.
    split: bool,
}

fn store_config(spec: &Spec) -> Config {
    let mut cfg = Config {
        raft_base_tick_ms: 10,
        raft_election_ticks: 10,
        raft_heartbeat_ticks: 2,
        raft_log_gc_tick_ticks: 2,
        ..Config::default()
    };
    if let Some(limit) = spec.gc_limit {
        cfg.raft_log_gc_count_limit = limit;
    }
    if spec.split {
        cfg.split_check_tick_ticks = 5;
        cfg.region_max_size_bytes = 400;
        cfg.region_split_size_bytes = 200;
    }
    cfg
}

/// The shape of TinyKV's GenericTest: rounds of workload under faults, healed between
/// rounds (restarting every store in the persist variants), then the history is checked.
fn generic<F: EngineFactory>(name: &str, factory: F, spec: Spec) {
    let seed = seed(name);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cluster = LiveCluster::new(factory, STORES, store_config(&spec), seed);
    let recorder = Recorder::new();
    let mut workload = Workload::new(spec.clients);
    if spec.split {
        workload.keys = 12;
    }
    let mut next_peer_id = 100;
    let mut conf_changes = 0;
    let mut splits = 0;
    for _ in 0..iterations() {
        let running = workload.start(&cluster, &recorder);
        if spec.unreliable {
            cluster.filters().add(DropRate::new(0.1, rng.random()));
            cluster
                .network()
                .set_delay(Duration::ZERO..Duration::from_millis(3));
        }
        let end = Instant::now() + round();
        let mut partition = None;
        while Instant::now() < end {
            if spec.partitions {
                if let Some(p) = partition.take() {
                    cluster.filters().remove(p);
                }
                partition = Some(cluster.filters().add(random_partition(&mut rng)));
            }
            if spec.conf_change {
                conf_changes +=
                    u64::from(random_conf_change(&cluster, &mut rng, &mut next_peer_id));
            }
            if spec.split {
                splits += u64::from(random_split(&cluster, &mut rng, workload.keys));
            }
            // The workload's pace, not a synchronization.
            std::thread::sleep(Duration::from_millis(rng.random_range(50..150)));
        }
        cluster.heal();
        let ops: u64 = running.stop(&cluster).iter().sum();
        assert!(ops > 0, "the clients ran no operation");
        if spec.restarts {
            for id in cluster.running() {
                cluster.stop(id);
            }
            for id in 1..=STORES {
                cluster.start(id);
            }
        }
        if let Some(limit) = spec.gc_limit {
            wait_log_bounded(&cluster, limit);
        }
    }
    if let Some(limit) = spec.gc_limit {
        force_snapshot(&cluster, &recorder, limit);
    }
    // Under partitions every change or split of the rounds may time out (seen for splits
    // on heed on a loaded machine); healed, one of each must succeed (a pending change
    // never blocks the next for good).
    if spec.conf_change {
        one_succeeds("conf change", || {
            random_conf_change(&cluster, &mut rng, &mut next_peer_id)
        });
        conf_changes += 1;
    }
    if spec.split {
        one_succeeds("split", || random_split(&cluster, &mut rng, workload.keys));
        splits += 1;
    }
    cluster.wait_converged(Duration::from_secs(30));
    if spec.split {
        check_split_regions(&cluster);
    }
    let summary = workload::check(&cluster, &recorder, &workload);
    eprintln!(
        "scenario {name}: operations ok/failed/unknown {:?}, conf changes {conf_changes}, \
         requested splits {splits}, {} keys checked in {:?}",
        summary.outcomes, summary.report.keys, summary.report.elapsed
    );
}

/// Retries `attempt` until it succeeds, for at most 20 s.
fn one_succeeds(what: &str, mut attempt: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !attempt() {
        assert!(
            Instant::now() < deadline,
            "no {what} succeeds after healing"
        );
    }
}

/// Two random groups of stores (the first possibly a majority).
fn random_partition(rng: &mut StdRng) -> Partition {
    let mut stores: Vec<u64> = (1..=STORES).collect();
    stores.shuffle(rng);
    let cut = rng.random_range(1..STORES as usize);
    let (a, b) = stores.split_at(cut);
    Partition::new(&[a, b])
}

/// Region 1 as its leader sees it.
fn region_of_leader<F: EngineFactory>(
    cluster: &LiveCluster<F>,
    region_id: u64,
) -> Option<(u64, Region)> {
    let leader = cluster.leader_of(region_id)?;
    let status = cluster
        .regions(leader)?
        .into_iter()
        .find(|s| s.region.id == region_id)?;
    Some((leader, status.region))
}

/// Removes a random peer (keeping three) or adds one on a store without a peer; whether
/// the change was applied.
fn random_conf_change<F: EngineFactory>(
    cluster: &LiveCluster<F>,
    rng: &mut StdRng,
    next_peer_id: &mut u64,
) -> bool {
    let Some((_, region)) = region_of_leader(cluster, 1) else {
        return false;
    };
    let members: Vec<u64> = region.peers.iter().map(|p| p.store_id).collect();
    let free: Vec<u64> = (1..=STORES).filter(|s| !members.contains(s)).collect();
    let change = if members.len() > 3 && (free.is_empty() || rng.random_bool(0.5)) {
        let peer = region.peers[rng.random_range(0..region.peers.len())];
        change_peer(ConfChangeType::RemoveNode, peer.id, peer.store_id)
    } else {
        let Some(&store) = free.get(rng.random_range(0..free.len().max(1))) else {
            return false;
        };
        *next_peer_id += 1;
        change_peer(ConfChangeType::AddNode, *next_peer_id, store)
    };
    match cluster.admin(1, &change, Duration::from_millis(500)) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("a conf change failed: {e}");
            false
        }
    }
}

/// Splits the region holding a random shared key at that key; whether it was applied
/// (the store also splits on its own past the tiny size thresholds).
fn random_split<F: EngineFactory>(cluster: &LiveCluster<F>, rng: &mut StdRng, keys: u64) -> bool {
    let key = shared_key(rng.random_range(1..keys));
    let Some(leader) = cluster.leader_of(1) else {
        return false;
    };
    let Some(region) = cluster.regions(leader).and_then(|regions| {
        regions.into_iter().map(|s| s.region).find(|r| {
            raft_store::region_check::key_in_region(&key, r) && r.start_key[..] != key[..]
        })
    }) else {
        return false;
    };
    cluster
        .admin(region.id, &split_at(&key), Duration::from_secs(1))
        .is_ok()
}

/// Waits until, on every member store of every region, the log holds at most twice the
/// GC limit (a peer removed while cut off is no member and keeps its log).
fn wait_log_bounded<F: EngineFactory>(cluster: &LiveCluster<F>, limit: u64) {
    cluster.wait_until(
        "every raft log to shrink to 2 × the GC limit",
        Duration::from_secs(20),
        |c| {
            let Some(newest) = c.newest_regions() else {
                return false;
            };
            newest.values().all(|(region, _)| {
                region.peers.iter().all(|p| {
                    !c.running().contains(&p.store_id)
                        || c.apply_state(p.store_id, region.id).is_some_and(|s| {
                            let truncated = s.truncated_state.map_or(0, |t| t.index);
                            s.applied_index - truncated <= 2 * limit
                        })
                })
            })
        },
    );
}

/// Isolates a follower, writes until the leader's log is truncated past it, heals, and
/// checks that it caught up by snapshot.
fn force_snapshot<F: EngineFactory>(cluster: &LiveCluster<F>, recorder: &Recorder, limit: u64) {
    let snapshots_before = cluster.filters().passed(MessageType::MsgSnapshot);
    cluster.wait_until("a leader", Duration::from_secs(10), |c| {
        c.leader_of(1).is_some()
    });
    let (leader, region) = region_of_leader(cluster, 1).unwrap();
    // A member (after conf changes, some running stores are not).
    let follower = region
        .peers
        .iter()
        .map(|p| p.store_id)
        .find(|&id| id != leader)
        .unwrap();
    let others: Vec<u64> = cluster
        .running()
        .into_iter()
        .filter(|&id| id != follower)
        .collect();
    let cut = cluster
        .filters()
        .add(Partition::new(&[&[follower], &others]));
    let behind = cluster.apply_state(follower, 1).unwrap().applied_index;
    let mut client = cluster.client(1000, recorder, ClientConfig::default());
    let mut i = 0;
    cluster.wait_until(
        "the leader's log to be truncated past the isolated follower",
        Duration::from_secs(30),
        |c| {
            i += 1;
            let value = format!("snapshot.{i}");
            c.runtime()
                .block_on(client.put(&shared_key(0), value.as_bytes()));
            c.leader_of(1)
                .and_then(|l| c.apply_state(l, 1))
                .and_then(|s| s.truncated_state)
                .is_some_and(|t| t.index > behind + limit)
        },
    );
    cluster.filters().remove(cut);
    cluster.wait_converged(Duration::from_secs(30));
    assert!(
        cluster.filters().passed(MessageType::MsgSnapshot) > snapshots_before,
        "the isolated follower caught up without a snapshot"
    );
}

/// After splits: more than one region, ranges contiguous and non-overlapping over the
/// whole key space, and a request for a key outside a region gets `KeyNotInRegion`.
fn check_split_regions<F: EngineFactory>(cluster: &LiveCluster<F>) {
    let leader = cluster.leader_of(1).unwrap();
    let mut regions: Vec<Region> = cluster
        .regions(leader)
        .unwrap()
        .into_iter()
        .map(|s| s.region)
        .collect();
    regions.sort_by(|a, b| a.start_key.cmp(&b.start_key));
    assert!(regions.len() > 1, "no split happened: {regions:?}");
    assert!(
        regions[0].start_key.is_empty(),
        "the first region starts the key space"
    );
    assert!(
        regions.last().unwrap().end_key.is_empty(),
        "the last region ends the key space"
    );
    for pair in regions.windows(2) {
        assert_eq!(
            pair[0].end_key, pair[1].start_key,
            "regions {} and {} are not contiguous",
            pair[0].id, pair[1].id
        );
    }
    // A key of the last region, asked of the first one.
    let first = &regions[0];
    let outside = regions.last().unwrap().start_key.to_vec();
    let first_leader = cluster.leader_of(first.id).unwrap();
    let req = RaftCmdRequest {
        header: Some(RequestHeader {
            region_id: first.id,
            region_epoch: first.region_epoch,
            ..Default::default()
        }),
        requests: vec![get(&outside)],
        admin_request: None,
    };
    let resp = cluster
        .call(first_leader, req, Duration::from_secs(5))
        .expect("an answer");
    let error = resp.header.and_then(|h| h.error).expect("an error");
    assert!(error.key_not_in_region.is_some(), "{error:?}");
}

/// Scenarios that run [`generic`] with a [`Spec`] (fields not named keep their defaults),
/// each named after its function.
macro_rules! generic_scenarios {
    ($($(#[$doc:meta])* $name:ident { $($field:ident: $value:expr),* $(,)? })*) => {$(
        $(#[$doc])*
        fn $name<F: EngineFactory>(factory: F) {
            let spec = Spec { $($field: $value,)* ..Spec::default() };
            generic(stringify!($name), factory, spec);
        }
    )*};
}

const TINY_GC_LIMIT: Option<u64> = Some(10);

generic_scenarios! {
    basic { clients: 1 }
    concurrent { clients: 5 }
    unreliable { clients: 5, unreliable: true }
    many_partitions_one_client { clients: 1, partitions: true }
    many_partitions_many_clients { clients: 5, partitions: true }
    persist_one_client { clients: 1, restarts: true }
    persist_concurrent { clients: 5, restarts: true }
    persist_concurrent_unreliable { clients: 5, restarts: true, unreliable: true }
    persist_partition { clients: 5, restarts: true, partitions: true }
    persist_partition_unreliable {
        clients: 5, restarts: true, partitions: true, unreliable: true
    }
    snapshot_one_client { clients: 1, gc_limit: TINY_GC_LIMIT }
    snapshot_many_clients { clients: 5, gc_limit: TINY_GC_LIMIT }
    snapshot_unreliable { clients: 5, gc_limit: TINY_GC_LIMIT, unreliable: true }
    snapshot_unreliable_recover {
        clients: 5, gc_limit: TINY_GC_LIMIT, unreliable: true, restarts: true
    }
    snapshot_unreliable_recover_partitions {
        clients: 5, gc_limit: TINY_GC_LIMIT, unreliable: true, restarts: true, partitions: true
    }
    /// Random peer additions and removals (a store removed and added back under a new peer
    /// id, the leader removing itself) on an unreliable network with a tiny GC limit: added
    /// peers catch up by snapshot, removed ones are destroyed (also when they learn of it
    /// only from the members), and every member's log shrinks back under 2 × the limit.
    conf_change_under_faults {
        clients: 5, unreliable: true, conf_change: true, gc_limit: TINY_GC_LIMIT
    }
    /// The conf changes with everything else: partitions (a removed peer is often cut off
    /// when its removal commits), restarts of every store, loss and the tiny GC limit.
    conf_change_recover_partitions {
        clients: 5,
        unreliable: true,
        partitions: true,
        restarts: true,
        conf_change: true,
        gc_limit: TINY_GC_LIMIT,
    }
    split_under_faults { clients: 5, unreliable: true, partitions: true, split: true }
}

/// The leader and one follower cut off from the other three: the minority's leader cannot
/// complete a write, the majority elects a leader and serves, and after healing the
/// minority catches up.
fn one_partition<F: EngineFactory>(factory: F) {
    let seed = seed("one_partition");
    let cluster = LiveCluster::new(factory, STORES, store_config(&Spec::default()), seed);
    let recorder = Recorder::new();
    let workload = Workload::new(1);
    let mut client = cluster.client(1, &recorder, ClientConfig::default());
    let rt = cluster.runtime();
    assert!(matches!(
        rt.block_on(client.put(&shared_key(0), b"before")),
        Outcome::Ok(_)
    ));
    let leader = cluster.leader_of(1).unwrap();
    let follower = (1..=STORES).find(|&id| id != leader).unwrap();
    let majority: Vec<u64> = (1..=STORES)
        .filter(|&id| id != leader && id != follower)
        .collect();
    cluster
        .filters()
        .add(Partition::new(&[&[leader, follower], &majority]));

    // A write to the minority's leader never completes, whatever it answers.
    let req = RaftCmdRequest {
        header: Some(RequestHeader {
            region_id: 1,
            region_epoch: cluster.regions(leader).unwrap()[0].region.region_epoch,
            ..Default::default()
        }),
        requests: Vec::new(),
        admin_request: None,
    };
    assert!(
        !minority_write(&cluster, &recorder, leader, req.clone(), 1),
        "the minority's leader completed a write"
    );

    // The majority elects a leader and serves.
    cluster.wait_until("a majority leader", Duration::from_secs(10), |c| {
        c.leader_of(1).is_some_and(|l| majority.contains(&l))
    });
    assert!(matches!(
        rt.block_on(client.put(&shared_key(2), b"majority")),
        Outcome::Ok(_)
    ));
    // The minority still cannot: a follower there forwards nothing and answers not leader.
    assert!(
        !minority_write(&cluster, &recorder, follower, req, 3),
        "the minority completed a write"
    );

    cluster.heal();
    cluster.wait_converged(Duration::from_secs(30));
    for id in [leader, follower] {
        let kv = cluster.kv(id).unwrap();
        let key = raft_store::keys::data_key(&shared_key(2));
        assert_eq!(
            engines::Peekable::get(kv, raft_store::keys::CF_DEFAULT, &key).unwrap(),
            Some(b"majority".to_vec()),
            "store {id} caught up after the heal"
        );
    }
    workload::check(&cluster, &recorder, &workload);
}

/// Sends `req` with a put of "minority" to shared key `key` to `store` (on the minority
/// side of a partition) and records it into the history (to 99): whether the store
/// completed it. An error answer means it failed; no answer leaves it unknown.
fn minority_write<F: EngineFactory>(
    cluster: &LiveCluster<F>,
    recorder: &Recorder,
    store: u64,
    mut req: RaftCmdRequest,
    key: u64,
) -> bool {
    let key = shared_key(key);
    req.requests = vec![conformance_tests::cluster::put(&key, b"minority")];
    let pending = recorder.invoke(99, &key, KvInput::Put(b"minority".to_vec()));
    let answer = cluster.call(store, req, Duration::from_secs(1));
    let completed = answer
        .as_ref()
        .is_some_and(|r| r.header.as_ref().is_none_or(|h| h.error.is_none()));
    pending.complete(match answer {
        // Recorded as it is: a completed write is a bug the assertion reports.
        Some(_) if completed => Outcome::Ok(conformance_tests::linearizability::KvOutput::Put),
        Some(_) => Outcome::Failed,
        None => Outcome::Unknown,
    });
    completed
}

/// Leadership handed to every store in turn, repeatedly, under a concurrent workload.
fn leader_transfer_cycles<F: EngineFactory>(factory: F) {
    let seed = seed("leader_transfer_cycles");
    let cluster = LiveCluster::new(factory, STORES, store_config(&Spec::default()), seed);
    let recorder = Recorder::new();
    let workload = Workload::new(3);
    let running = workload.start(&cluster, &recorder);
    let mut transfers = 0;
    for _ in 0..iterations() {
        for target in 1..=STORES {
            let deadline = Instant::now() + Duration::from_secs(10);
            while cluster.leader_of(1) != Some(target) {
                assert!(
                    Instant::now() < deadline,
                    "leadership never reached store {target}"
                );
                // Peer ids equal store ids in the bootstrap region.
                let _ = cluster.admin(1, &transfer_leader(target, target), Duration::from_secs(1));
                cluster.wait_until("the transfer to settle", Duration::from_secs(5), |c| {
                    c.leader_of(1).is_some()
                });
                std::thread::sleep(Duration::from_millis(20));
            }
            transfers += 1;
        }
    }
    running.stop(&cluster);
    cluster.wait_converged(Duration::from_secs(30));
    let summary = workload::check(&cluster, &recorder, &workload);
    eprintln!(
        "scenario leader_transfer_cycles: {transfers} transfers, operations ok/failed/unknown {:?}",
        summary.outcomes
    );
}

/// Every scenario on one engine.
macro_rules! all_scenarios {
    ($engine:ident = $factory:expr) => {
        on_engine!($engine = $factory;
            basic,
            concurrent,
            unreliable,
            one_partition,
            many_partitions_one_client,
            many_partitions_many_clients,
            persist_one_client,
            persist_concurrent,
            persist_concurrent_unreliable,
            persist_partition,
            persist_partition_unreliable,
            snapshot_one_client,
            snapshot_many_clients,
            snapshot_unreliable,
            snapshot_unreliable_recover,
            snapshot_unreliable_recover_partitions,
            conf_change_under_faults,
            conf_change_recover_partitions,
            split_under_faults,
            leader_transfer_cycles,
        );
    };
}

all_scenarios!(memory = conformance_tests::cluster::MemoryFactory::default());
#[cfg(feature = "fjall")]
all_scenarios!(fjall = conformance_tests::cluster::FjallFactory::new());
// A representative subset on heed: restarts, snapshots, conf changes and splits under faults.
#[cfg(feature = "heed")]
on_engine!(heed = conformance_tests::cluster::HeedFactory::new();
    basic,
    persist_partition_unreliable,
    snapshot_unreliable_recover_partitions,
    conf_change_under_faults,
    split_under_faults,
);
