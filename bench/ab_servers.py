#!/usr/bin/env python3
"""Two raftkv-server builds (or settings) side by side: interleaved runs, fresh clusters.

    python3 bench/ab_servers.py [--clients 1000] [--seconds 10] [--reps 3] [--read-ratio 0]
        before=/tmp/raftkv-server-old after=target/release/raftkv-server[,ENV=VALUE...]

Each side is `label=path`, optionally followed by `,NAME=VALUE` environment variables
for its servers (e.g. `purge=target/release/raftkv-server,MIMALLOC_PURGE_DELAY=-1`)
and `,@key=value` top-level server settings (e.g. `kv=target/release/raftkv-server,
@raft_engine=kv`).
Every repetition starts a fresh 3-node fjall cluster (fsync on) per side from that
binary and runs `raftkv bench` (8-byte keys over 10,000 keys, 256-byte values) against
it; the sides alternate, and which goes first swaps every repetition, so load on the
shared machine hits both. Prints each run and the means (ops/s, p50, and the servers'
CPU time per operation, all three summed), and the ratio of the last side to the first. To compare two commits: build one, copy its `target/release/raftkv-server`
aside, build the other.

The bench client is `target/release/raftkv` for both sides.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster  # noqa: E402


def side(spec):
    label, _, rest = spec.partition("=")
    path, *items = rest.split(",")
    if not label or not path or any("=" not in item for item in items):
        raise argparse.ArgumentTypeError(
            f"expected label=path[,NAME=VALUE...][,@key=value...]: {spec}")
    pairs = [item.split("=", 1) for item in items]
    env = {k: v for k, v in pairs if not k.startswith("@")}
    server = {k[1:]: int(v) if v.isdigit() else v for k, v in pairs if k.startswith("@")}
    return label, path, env, server


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--read-ratio", type=float, default=0.0)
    parser.add_argument("sides", nargs="+", type=side)
    args = parser.parse_args()
    runs = {label: [] for label, *_ in args.sides}
    p50s = {label: [] for label, *_ in args.sides}
    cpus = {label: [] for label, *_ in args.sides}
    for rep in range(args.reps):
        order = args.sides if rep % 2 == 0 else list(reversed(args.sides))
        for label, path, env, server in order:
            with Cluster("fjall", binary=path, extra_env=env, server=server) as cluster:
                before = sum(cluster.cpu_seconds())
                result = cluster.bench(args.clients, args.seconds, args.read_ratio,
                                       preload=args.read_ratio > 0)
                cpu = sum(cluster.cpu_seconds()) - before
            runs[label].append(result["ops_per_sec"])
            ops = result["ops_per_sec"] * args.seconds
            cpus[label].append(cpu / ops * 1e6 if ops else 0.0)
            p50 = result["write" if args.read_ratio < 1 else "read"]["latency_us"]["p50"]
            p50s[label].append(p50)
            print(f"rep {rep + 1} {label}: {result['ops_per_sec']:.0f} ops/s, "
                  f"p50 {p50 / 1000:.2f} ms, server CPU {cpus[label][-1]:.0f} µs/op", flush=True)
    means = {label: sum(v) / len(v) for label, v in runs.items()}
    for label, mean in means.items():
        p50 = sum(p50s[label]) / len(p50s[label]) / 1000
        cpu = sum(cpus[label]) / len(cpus[label])
        print(f"mean {label}: {mean:.0f} ops/s, p50 {p50:.2f} ms, server CPU {cpu:.0f} µs/op "
              f"over {len(runs[label])} runs")
    first, last = args.sides[0][0], args.sides[-1][0]
    if first != last:
        print(f"{last} / {first}: {means[last] / means[first]:.2f}x")


if __name__ == "__main__":
    main()
