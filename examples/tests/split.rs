//! `Admin.SplitRegion` on three in-process nodes: a pre-split into several regions in one
//! call, writes in each of them, and the typed refusals of bad split keys.

use raftkv_examples::proto::kvrpc::{RegionInfo, SplitKeyProblem};
use raftkv_examples::{Client, Error};

mod support;
use support::{endpoints, shutdown, start_cluster};

/// The problem of a refused split, or a panic naming what came instead.
fn problem(r: raftkv_examples::Result<Vec<RegionInfo>>) -> (SplitKeyProblem, Vec<u8>) {
    match r {
        Err(Error::InvalidSplitKey { problem, key, .. }) => (problem, key.to_vec()),
        other => panic!("expected InvalidSplitKey, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_split_into_contiguous_regions_that_serve_and_refuse_bad_keys() {
    let nodes = start_cluster().await;
    let client = Client::connect(endpoints(&nodes)).expect("client");
    client.put("warmup", "x").await.expect("put");

    // Out of order on purpose: the server sorts the keys.
    let regions = client
        .split_region(1, ["m", "d", "t"])
        .await
        .expect("split");
    let ranges: Vec<(&[u8], &[u8])> = regions
        .iter()
        .map(|r| (&r.start_key[..], &r.end_key[..]))
        .collect();
    assert_eq!(
        ranges,
        [
            (&b""[..], &b"d"[..]),
            (b"d", b"m"),
            (b"m", b"t"),
            (b"t", b""),
        ],
        "contiguous ranges in key order, from the first key to the last"
    );
    assert_eq!(regions[0].id, 1, "the region keeps the first range");
    let mut ids: Vec<u64> = regions.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "every range is its own region");
    for r in &regions {
        assert_eq!(
            r.store_ids.len(),
            3,
            "region {} has a peer on every store",
            r.id
        );
    }

    // Every region serves: a put and a get in each, routed by the client.
    for (key, start) in [("a", ""), ("f", "d"), ("p", "m"), ("z", "t")] {
        client.put(key, format!("v-{key}")).await.expect("put");
        assert_eq!(
            client.get(key).await.expect("get").as_deref(),
            Some(format!("v-{key}").as_bytes())
        );
        let region = client.region_for_key(key).await.expect("route");
        assert_eq!(
            region.start_key,
            start.as_bytes(),
            "{key} routes by the new ranges"
        );
    }
    // The write from before the split is in the first region still.
    assert_eq!(
        client.get("warmup").await.expect("get").as_deref(),
        Some(&b"x"[..])
    );

    // Bad split keys are refused with a typed error, and nothing changes.
    let second = regions[1].id;
    assert_eq!(
        problem(client.split_region(second, ["d"]).await),
        (SplitKeyProblem::RegionBoundary, b"d".to_vec()),
        "the region's own start key"
    );
    assert_eq!(
        problem(client.split_region(second, ["m"]).await),
        (SplitKeyProblem::RegionBoundary, b"m".to_vec()),
        "its end key, the next region's start"
    );
    assert_eq!(
        problem(client.split_region(second, ["e", "x"]).await),
        (SplitKeyProblem::OutsideRegion, b"x".to_vec())
    );
    assert_eq!(
        problem(client.split_region(second, ["e", "e"]).await),
        (SplitKeyProblem::Repeated, b"e".to_vec())
    );
    match client.split_region(second, Vec::<&str>::new()).await {
        Err(Error::Server(msg)) => assert!(msg.contains("split key"), "{msg}"),
        other => panic!("an empty key list is a bad request, got {other:?}"),
    }
    let fresh = Client::connect(endpoints(&nodes)).expect("client");
    let f = fresh.region_for_key("f").await.expect("route");
    assert_eq!(
        (f.id, &f.start_key[..], &f.end_key[..]),
        (second, &b"d"[..], &b"m"[..]),
        "a refused split changed nothing"
    );
    shutdown(nodes).await;
}
