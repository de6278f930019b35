#!/usr/bin/env python3
"""End-to-end benchmarks on raftkv-server clusters; prints Markdown for bench/run.sh.

    python3 bench/cluster_bench.py e2e       puts/gets per engine, the fsync floor, a latency breakdown
    python3 bench/cluster_bench.py scaling   throughput and p99 as clients and regions grow
    python3 bench/cluster_bench.py memory    RSS with many keys and a long log; overload
    python3 bench/cluster_bench.py batch     unary calls against BatchCommands streams

Expects release builds of raftkv-server, raftkv and the fsync_floor example (run.sh
builds them). Knobs: BENCH_SECS (seconds per run, default 6), BENCH_ENGINES (default
"fjall heed"; heed is skipped when the server was built without it), BENCH_BATCH_REPS
(repetitions per mode in `batch`, default 2).
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, fsync_floor, load_avg  # noqa: E402

SECS = float(os.environ.get("BENCH_SECS", "6"))
ENGINES = os.environ.get("BENCH_ENGINES", "fjall heed").split()
VALUE = 256


def ms(us):
    return f"{us / 1000:.2f}"


def metric(snapshot, name, labels=""):
    """The sum of `name` series whose labels contain `labels`."""
    total = 0.0
    for key, value in snapshot.items():
        base, _, rest = key.partition("{")
        if base == name and labels in rest:
            total += value
    return total


def delta(before, after, name, labels=""):
    return metric(after, name, labels) - metric(before, name, labels)


def row(engine, what, clients, r, load, floor=None):
    cls = r["read"] if r["read"]["ops"] else r["write"]
    lat = cls["latency_us"]
    cells = [engine, what, str(clients), f"{r['ops_per_sec']:.0f}", ms(lat["p50"]),
             ms(lat["p99"]), ms(lat["p999"]), str(r["errors"])]
    if floor is not None:
        rate, p50, _ = floor
        cells += [f"{r['ops_per_sec'] / rate:.2f}×", f"{lat['p50'] / p50:.2f}×"]
    cells.append(load)
    return "| " + " | ".join(cells) + " |"


def breakdown(cluster, r, before, after):
    """Single-client put latency split by the servers' metrics (means over the run)."""
    ops = r["write"]["ops"]
    put = 'method="RawPut"'
    leader = max(range(3), key=lambda i: delta(before[i], after[i], "raftkv_rpc_requests_total", put))
    followers = [i for i in range(3) if i != leader]

    def mean(i, name, labels=""):
        n = delta(before[i], after[i], f"{name}_count", labels)
        return (delta(before[i], after[i], f"{name}_sum", labels) / n * 1e6, n) if n else (0.0, 0)

    client = r["write"]["latency_us"]["mean"]
    server, _ = mean(leader, "raftkv_rpc_duration_seconds", put)
    lsync, lsyncs = mean(leader, "raftstore_raft_sync_write_seconds")
    fsyncs = [mean(i, "raftstore_raft_sync_write_seconds") for i in followers]
    fsync_f = sum(m for m, _ in fsyncs) / len(fsyncs)
    apply_total = delta(before[leader], after[leader], "raftstore_apply_seconds_sum") * 1e6
    apply = apply_total / ops if ops else 0.0
    # The leader's fsync and the followers' (plus the hop to them) overlap; the longer
    # one is on the critical path.
    replicate = max(lsync, fsync_f)
    rest = server - replicate - apply
    lines = [
        "| part | mean µs | share |",
        "|---|---:|---:|",
        f"| client ↔ leader (gRPC, loopback, client CPU) | {client - server:.0f} | {(client - server) / client:.0%} |",
        f"| fsync: max(leader {lsync:.0f}, followers {fsync_f:.0f}) | {replicate:.0f} | {replicate / client:.0%} |",
        f"| apply (state machine + kv write), per put | {apply:.0f} | {apply / client:.0%} |",
        f"| raft hops, waits and CPU on the servers (the rest) | {rest:.0f} | {rest / client:.0%} |",
        f"| **total (client mean)** | **{client:.0f}** | |",
        "",
        f"Leader fsyncs per put: {lsyncs / ops:.2f}; follower fsyncs per put: "
        f"{sum(n for _, n in fsyncs) / len(fsyncs) / ops:.2f} (over {ops} puts).",
    ]
    return lines


def e2e():
    floor, shared = fsync_floor(3.0)
    rate, p50, p99 = floor
    shared_rate, shared_p50, shared_p99 = shared
    print(f"Disk floor (same run, same directory as the data dirs): one writer fdatasyncs "
          f"{rate:.0f} times/s, p50 {ms(p50)} ms, p99 {ms(p99)} ms. Three writers at once "
          f"(the three replicas share this disk): {shared_rate:.0f} syncs/s in all, p50 "
          f"{ms(shared_p50)} ms, p99 {ms(shared_p99)} ms.")
    print()
    print("Each run lasts", f"{SECS:g} s; 8-byte keys over 10,000 keys, {VALUE}-byte values, fsync on; "
          "the bench client runs on the same 2 cores as the three servers. ×floor: ops/s "
          "divided by the fdatasync rate, and p50 divided by the fdatasync p50.")
    print()
    print("| engine | workload | clients | ops/s | p50 ms | p99 ms | p99.9 ms | errors "
          "| ops/s ÷ fsync/s | p50 ÷ fsync p50 | load (1/5/15) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    notes = []
    for engine in ENGINES:
        try:
            cluster = Cluster(engine)
        except RuntimeError as e:
            if engine != "fjall" and "heed" in str(e):
                notes.append(f"{engine}: skipped (the server was built without it).")
                continue
            raise
        with cluster:
            before = cluster.all_metrics()
            r = cluster.bench(1, SECS, 0.0)
            after = cluster.all_metrics()
            print(row(engine, "put", 1, r, load_avg(), floor))
            lines = breakdown(cluster, r, before, after)
            put_p50 = r["write"]["latency_us"]["p50"]
            lines.append("")
            lines.append(f"Put p50 {ms(put_p50)} ms = {put_p50 / p50:.2f}× the one-writer "
                         f"fdatasync p50, {put_p50 / shared_p50:.2f}× the three-writer one.")
            notes.append((engine, lines))
            for c in (64, 1000):
                print(row(engine, "put", c, cluster.bench(c, SECS, 0.0), load_avg(), floor))
            for c in (1, 1000):
                r = cluster.bench(c, SECS, 1.0, preload=(c == 1))
                print(row(engine, "linearizable get", c, r, load_avg(), floor))
    print()
    if "fjall" in ENGINES:
        # The same single-client put with no fsync anywhere: what the hops, the network
        # and the CPU cost by themselves, so the latency target can be read against it.
        with Cluster("fjall", store={"sync_log": False}) as cluster:
            r = cluster.bench(1, SECS, 0.0)
        unsynced_p50 = r["write"]["latency_us"]["p50"]
        (_, end_p50, _), _ = fsync_floor(3.0)
        print(f"Without any fsync (`sync_log = false`, fjall, 1 client) a put's p50 is "
              f"{ms(unsynced_p50)} ms = {unsynced_p50 / p50:.2f}× the one-writer fdatasync "
              f"p50: the hops, the loopback network and the CPU alone. The disk floor "
              f"measured again at the end of the run: one writer p50 {ms(end_p50)} ms "
              f"(at the start: {ms(p50)} ms).")
        print()
    for note in notes:
        if isinstance(note, str):
            print(note)
            print()
            continue
        engine, lines = note
        print(f"Single-client put latency on {engine}, from the servers' metrics over the same run:")
        print()
        print("\n".join(lines))
        print()


def measured(cluster, clients, read_ratio, **kw):
    """A bench run plus what the servers did meanwhile: CPU (cores busy, summed over
    the three servers) and fsyncs per second (summed)."""
    import resource
    cpu0, m0 = cluster.cpu_seconds(), cluster.all_metrics()
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = cluster.bench(clients, SECS, read_ratio, **kw)
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1, m1 = cluster.cpu_seconds(), cluster.all_metrics()
    secs = r["elapsed_secs"]
    # The bench client's CPU (its run includes a second of connecting and reporting).
    r["client_cores"] = (c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime) / secs
    cores = (sum(cpu1) - sum(cpu0)) / secs
    syncs = sum(delta(a, b, "raftstore_raft_sync_write_seconds_count") for a, b in zip(m0, m1))
    entries = sum(delta(a, b, "raftstore_proposals_total") for a, b in zip(m0, m1))
    return r, cores, syncs / secs, entries


def scaling_row(label, r, cores, syncs):
    cls = r["read"] if r["read"]["ops"] else r["write"]
    lat = cls["latency_us"]
    return (f"| {label} | {r['ops_per_sec']:.0f} | {ms(lat['p50'])} | {ms(lat['p99'])} | "
            f"{r['errors']} | {cores:.2f} | {r['client_cores']:.2f} | {syncs:.0f} | {load_avg()} |")


def region_ids(cluster):
    import json
    r = cluster.cli("--json", "status")
    if r.returncode != 0:
        return 0
    ids = set()
    for line in r.stdout.splitlines():
        line = line.strip()
        if not line:
            continue
        doc = json.loads(line)
        for node in doc if isinstance(doc, list) else [doc]:
            ids.update(reg["id"] for reg in node.get("regions", []))
    return sorted(ids)


def region_count(cluster):
    return len(region_ids(cluster))


def split_points(regions, keys):
    """The keys that cut the bench's key space (`Cluster.bench`'s zero-padded indexes,
    no prefix) into `regions` ranges of equal key counts."""
    width = max(8, len(str(keys - 1)))
    return [f"{i * keys // regions:0{width}d}" for i in range(1, regions)]


def split_into(cluster, regions, keys):
    """Pre-splits region 1 into `regions` regions in one admin call (`raftkv split`:
    one batch split, one log entry); returns how many regions the stores report."""
    if regions > 1:
        r = cluster.cli("--json", "--timeout-ms", "120000", "split", "--region", "1",
                        *split_points(regions, keys), timeout=180)
        # A split slower than the client's per-attempt timeout (3 s; a 256-way split on a
        # starved machine) applies, and its retry is refused (the keys are boundaries
        # now): what counts is the regions the stores report.
        n = region_count(cluster)
        if r.returncode != 0 and n < regions:
            raise RuntimeError(f"split failed: {r.stderr[-2000:]}")
        return n
    return region_count(cluster)


def spread_leaders(cluster):
    """Moves region leaders round-robin over the stores (there is no placement driver)."""
    for n, region in enumerate(region_ids(cluster)):
        cluster.cli("transfer-leader", "--region", str(region), "--to", str(n % 3 + 1),
                    timeout=30)


def scaling():
    header = ("| {} | ops/s | p50 ms | p99 ms | errors | server CPU (cores) | client CPU "
              "(cores) | fsyncs/s (3 servers) | load (1/5/15) |")
    rule = "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    print(f"Each run {SECS:g} s, fjall, fsync on, 8-byte keys over 10,000 keys, "
          f"{VALUE}-byte values. Server CPU: cores busy, summed over the three servers "
          "(the bench client uses the rest of the 2 cores).")
    print()
    print("Puts by clients, one region:")
    print()
    print(header.format("clients"))
    print(rule)
    with Cluster("fjall") as cluster:
        for c in (1, 4, 16, 64, 256, 1024):
            r, cores, syncs, _ = measured(cluster, c, 0.0)
            print(scaling_row(c, r, cores, syncs))
        print()
        print("Linearizable gets by clients, one region:")
        print()
        print(header.format("clients"))
        print(rule)
        cluster.bench(16, 0.5, 1.0, preload=True)
        for c in (1, 16, 256, 1024):
            r, cores, syncs, _ = measured(cluster, c, 1.0)
            print(scaling_row(c, r, cores, syncs))
    print()
    print("Puts by 256 clients as regions grow (region 1 pre-split evenly over the keys by "
          "`raftkv split` before the run, leaders spread round-robin over the 3 stores):")
    print()
    print(header.format("regions"))
    print(rule)
    keys = 10_000
    for regions in (1, 16, 256):
        with Cluster("fjall") as cluster:
            n = split_into(cluster, regions, keys)
            if regions > 1:
                spread_leaders(cluster)
            r, cores, syncs, _ = measured(cluster, 256, 0.0, keys=keys)
            print(scaling_row(f"{regions} (got {n})", r, cores, syncs))


def log_entries(cluster):
    """Log entries written so far over every region: the sum of each region's commit
    index as its leader reports it (a region split off starts its log near 0)."""
    import json
    r = cluster.cli("--json", "status")
    commit = {}
    for line in r.stdout.splitlines():
        if not line.strip():
            continue
        doc = json.loads(line)
        for node in doc if isinstance(doc, list) else [doc]:
            for reg in node.get("regions", []):
                if reg["is_leader"]:
                    commit[reg["id"]] = max(commit.get(reg["id"], 0), reg["commit_index"])
    return sum(commit.values()), len(commit)


def rss_line(cluster):
    return ", ".join(f"store {i + 1}: {cluster.rss_kib(i) / 1024:.0f} MiB" for i in range(3))


def memory():
    import threading
    import time
    keys = int(os.environ.get("BENCH_MEMORY_KEYS", "1000000"))
    cap = float(os.environ.get("BENCH_MEMORY_LOAD_SECS", "300"))
    print(f"3-node fjall clusters, `sync_log = false` for this part only (durability does "
          f"not change what is held in memory; with fsync the load takes longer), log GC "
          f"limit raised to 2,000,000 entries. First {keys:,} keys ({VALUE}-byte values) "
          f"written in batches of 256 KiB (a short log); then, on a fresh cluster whose "
          f"`raft_entry_max_bytes` is 512 bytes so that every put is its own log entry, the "
          f"same {keys:,} keys written by one put each from 256 clients: {keys:,} keys and a "
          f"log of about {keys:,} entries. The load stops after {cap:g} s "
          "(`BENCH_MEMORY_LOAD_SECS`); the log row reports how many entries it reached.")
    print()
    print("| state | RSS | load (1/5/15) |")
    print("|---|---|---|")
    store = {"raft_log_gc_count_limit": 2_000_000, "sync_log": False}
    with Cluster("fjall", store=store) as cluster:
        print(f"| started, empty | {rss_line(cluster)} | |")
        cluster.bench(64, 0.5, 1.0, keys=keys, preload=True)
        print(f"| {keys:,} keys (batched writes, short log) | {rss_line(cluster)} | {load_avg()} |")
    store = dict(store, raft_entry_max_bytes=512)
    with Cluster("fjall", store=store) as cluster:
        started = time.time()
        try:
            cluster.bench(256, 0.5, 1.0, keys=keys, preload=True,
                          extra=("--preload-batch-keys", "1"), timeout=cap)
            note = ""
        except (RuntimeError, subprocess.TimeoutExpired):
            note = f" (load stopped after {cap:g} s)"
        entries, regions = log_entries(cluster)
        print(f"| {keys:,} keys, one put each: logs of {entries:,} entries in all ({regions} "
              f"regions after size splits; sum of commit indexes){note}, loaded in "
              f"{time.time() - started:.0f} s | {rss_line(cluster)} | {load_avg()} |")
    print()
    limit_mib = int(os.environ.get("BENCH_OVERLOAD_UNCOMMITTED_MIB", "16"))
    admitted_mib = int(os.environ.get("BENCH_OVERLOAD_ADMITTED_MIB", "16"))
    value = 64 << 10
    print(f"Overload: fsync on, {value >> 10} KiB values over 1,000 keys, closed-loop clients "
          f"whose requests in flight exceed the leader's `raft_max_uncommitted_bytes` "
          f"({limit_mib} MiB here) and the servers' admission limit "
          f"`max_request_bytes_in_flight` ({admitted_mib} MiB here; \"off\": 64 GiB, i.e. "
          "no admission control). Each row runs on a fresh cluster; the servers' RSS and "
          "`raftkv_admission_bytes_in_flight` are sampled every 0.2 s (maxima over the three "
          "servers and the run); `busy` counts the requests the servers shed with "
          "ServerIsBusy (`raftkv_server_busy_total`; the client retries them with backoff).")
    print()
    print("| clients | offered in flight | admission limit | ops/s | p99 ms | busy answers "
          "| max admitted | max RSS | load (1/5/15) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    store = {"raft_max_uncommitted_bytes": limit_mib << 20}
    rows = [(64, admitted_mib), (512, admitted_mib), (2048, admitted_mib), (2048, None)]
    for clients, admitted in rows:
        server = {"max_request_bytes_in_flight": (admitted or 65536) << 20}
        with Cluster("fjall", store=store, server=server) as cluster:
            before = cluster.all_metrics()
            peak = {"rss": 0, "admitted": 0.0}
            done = threading.Event()

            def sample():
                while not done.is_set():
                    peak["rss"] = max(peak["rss"], max(cluster.rss_kib(i) for i in range(3)))
                    try:
                        now = cluster.all_metrics()
                    except OSError:
                        now = []
                    for m in now:
                        peak["admitted"] = max(peak["admitted"],
                                               metric(m, "raftkv_admission_bytes_in_flight"))
                    time.sleep(0.2)

            t = threading.Thread(target=sample)
            t.start()
            try:
                r = cluster.bench(clients, SECS, 0.0, keys=1000, value_size=value)
            finally:
                done.set()
                t.join()
            after = cluster.all_metrics()
            busy = sum(delta(a, b, "raftkv_server_busy_total") for a, b in zip(before, after))
            limit = f"{admitted} MiB" if admitted else "off"
            print(f"| {clients} | {clients * value >> 20} MiB | {limit} | "
                  f"{r['ops_per_sec']:.0f} | {ms(r['write']['latency_us']['p99'])} | "
                  f"{busy:.0f} | {peak['admitted'] / 2**20:.1f} MiB | "
                  f"{peak['rss'] / 1024:.0f} MiB | {load_avg()} |")


def batch():
    """Unary calls against BatchCommands streams, interleaved on one cluster."""
    reps = int(os.environ.get("BENCH_BATCH_REPS", "2"))
    print(f"One 3-node fjall cluster, fsync on, {VALUE}-byte values over 10,000 keys; each "
          f"row runs {reps} times per mode, the modes alternating (which goes first swaps "
          f"every repetition), {SECS:g} s per run; figures are the means. `unary`: every "
          "get and put is its own gRPC call (`raftkv bench --unary`, the client before "
          "`BatchCommands`); `stream`: the calls a client makes to a node meanwhile share "
          "one message of its `BatchCommands` stream. Cores: CPU of the three servers and "
          "of the bench client, per second of run.")
    print()
    print("| workload | clients | unary ops/s | stream ops/s | stream ÷ unary | unary p50 / p99 ms "
          "| stream p50 / p99 ms | unary cores (servers + client) | stream cores | load (1/5/15) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    rows = [("put", 1), ("put", 64), ("put", 1000), ("linearizable get", 1000)]
    with Cluster("fjall") as cluster:
        cluster.bench(64, 2, 0.0, preload=True)
        for what, clients in rows:
            read_ratio = 1.0 if what != "put" else 0.0
            runs = {True: [], False: []}
            for rep in range(reps):
                for unary in ((True, False) if rep % 2 == 0 else (False, True)):
                    extra = ("--unary",) if unary else ()
                    r, cores, _, _ = measured(cluster, clients, read_ratio, extra=extra)
                    runs[unary].append((r, cores))

            def mean(unary, f):
                return sum(f(r, c) for r, c in runs[unary]) / len(runs[unary])

            def lat(r, key):
                cls = r["read"] if r["read"]["ops"] else r["write"]
                return cls["latency_us"][key]

            ops = {u: mean(u, lambda r, c: r["ops_per_sec"]) for u in (True, False)}
            p = {u: (mean(u, lambda r, c: lat(r, "p50")), mean(u, lambda r, c: lat(r, "p99")))
                 for u in (True, False)}
            cores = {u: (mean(u, lambda r, c: c), mean(u, lambda r, c: r["client_cores"]))
                     for u in (True, False)}
            print(f"| {what} | {clients} | {ops[True]:.0f} | {ops[False]:.0f} | "
                  f"{ops[False] / ops[True]:.2f}× | {ms(p[True][0])} / {ms(p[True][1])} | "
                  f"{ms(p[False][0])} / {ms(p[False][1])} | "
                  f"{cores[True][0]:.2f} + {cores[True][1]:.2f} | "
                  f"{cores[False][0]:.2f} + {cores[False][1]:.2f} | {load_avg()} |")
    print()


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "e2e"
    {"e2e": e2e, "scaling": scaling, "memory": memory, "batch": batch}[what]()


if __name__ == "__main__":
    main()
