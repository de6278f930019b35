"""A 3-node raftkv-server cluster on loopback for the end-to-end benchmarks.

Used by bench/cluster_bench.py. Every server gets free ports, a TOML config and a data
dir under one temp dir (on the disk whose fsync floor the benchmark measures), and is
killed (by its own pid) when the cluster stops.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

RELEASE = "target/release"
SERVER = f"{RELEASE}/raftkv-server"
CLI = f"{RELEASE}/raftkv"
FSYNC_FLOOR = f"{RELEASE}/examples/fsync_floor"

# Where the clusters' data dirs live (and where the fsync floor is measured).
DATA_ROOT = os.environ.get("BENCH_DATA_DIR", "target/bench-data")

# How long a cluster may take to elect a leader and answer a put.
START_DEADLINE_S = 60


def free_ports(n):
    """n distinct free loopback ports: all bound at once, then released."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return str(v)


def parse_prometheus(text):
    """{'name{labels}': value} of a Prometheus text page (comments skipped)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out


class Cluster:
    """n raftkv-server processes forming one cluster (region 1 on every store)."""

    def __init__(self, engine="fjall", store=None, n=3, tick_ms=100, server=None,
                 binary=SERVER, extra_env=None):
        """`store`: the [store] table's settings; `server`: top-level config keys;
        `binary`: the raftkv-server executable; `extra_env`: variables added to the
        servers' environment."""
        os.makedirs(DATA_ROOT, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix=f"{engine}-", dir=DATA_ROOT)
        ports = free_ports(2 * n)
        self.addrs = [f"127.0.0.1:{p}" for p in ports[:n]]
        self.metrics_addrs = [f"127.0.0.1:{p}" for p in ports[n:]]
        peers = ", ".join(f'"{i + 1}={a}"' for i, a in enumerate(self.addrs))
        store = dict(store or {})
        store.setdefault("raft_base_tick_ms", tick_ms)
        env = dict(os.environ, RUST_LOG=os.environ.get("BENCH_RUST_LOG", "warn"))
        env.update(extra_env or {})
        self.procs = []
        for i in range(n):
            cfg = os.path.join(self.dir, f"node{i + 1}.toml")
            with open(cfg, "w") as f:
                f.write(
                    f'node_id = {i + 1}\nlisten = "{self.addrs[i]}"\n'
                    f'metrics_listen = "{self.metrics_addrs[i]}"\npeers = [{peers}]\n'
                    f'data_dir = "{self.dir}/data{i + 1}"\nengine = "{engine}"\n'
                    + "".join(f"{k} = {toml_value(v)}\n" for k, v in (server or {}).items())
                    + "[store]\n"
                    + "".join(f"{k} = {toml_value(v)}\n" for k, v in store.items())
                )
            log = open(os.path.join(self.dir, f"node{i + 1}.log"), "w")
            self.procs.append(
                subprocess.Popen([binary, "--config", cfg], stdout=subprocess.DEVNULL,
                                 stderr=log, env=env)
            )
        self._wait_serving()

    def endpoints(self):
        return ",".join(self.addrs)

    def cli(self, *args, timeout=None):
        return subprocess.run([CLI, "-e", self.endpoints(), *args], capture_output=True,
                              text=True, timeout=timeout)

    def _wait_serving(self):
        deadline = time.time() + START_DEADLINE_S
        while True:
            for i, p in enumerate(self.procs):
                if p.poll() is not None:
                    log = open(os.path.join(self.dir, f"node{i + 1}.log")).read()
                    raise RuntimeError(f"store {i + 1} exited:\n{log[-3000:]}")
            if self.cli("--timeout-ms", "2000", "put", "bench-warmup", "x").returncode == 0:
                return
            if time.time() > deadline:
                raise RuntimeError("the cluster did not start")
            time.sleep(0.2)

    def metrics(self, i):
        with urllib.request.urlopen(f"http://{self.metrics_addrs[i]}/metrics", timeout=5) as r:
            return parse_prometheus(r.read().decode())

    def all_metrics(self):
        return [self.metrics(i) for i in range(len(self.procs))]

    def rss_kib(self, i):
        with open(f"/proc/{self.procs[i].pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def pid(self, i):
        return self.procs[i].pid

    def cpu_seconds(self):
        """User+system CPU seconds used so far by each server process."""
        tick = os.sysconf("SC_CLK_TCK")
        out = []
        for p in self.procs:
            with open(f"/proc/{p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out.append((int(fields[11]) + int(fields[12])) / tick)
        return out

    def bench(self, clients, seconds, read_ratio, keys=10_000, value_size=256, preload=False,
              extra=(), timeout=None):
        """One `raftkv bench --json` run: 8-byte keys (no prefix), `value_size` values;
        killed (subprocess.TimeoutExpired) after `timeout` seconds if given."""
        key_size = max(8, len(str(keys - 1)))
        args = ["--json", "--timeout-ms", "20000", "bench", "-c", str(clients),
                "-d", f"{seconds}s", "--keys", str(keys), "--key-size", str(key_size),
                "--key-prefix", "", "--value-size", str(value_size),
                "--read-ratio", str(read_ratio), *extra]
        if not preload:
            args.append("--no-preload")
        r = self.cli(*args, timeout=timeout or seconds + 600)
        if r.returncode != 0:
            raise RuntimeError(f"bench failed: {r.stderr[-2000:]}")
        return json.loads(r.stdout)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
        for p in self.procs:
            p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def fsync_floor(seconds=3.0):
    """The fdatasync floor in DATA_ROOT from one run of the probe: ((syncs/s, p50 µs,
    p99 µs) of one writer, the same of three writers at once, as three replicas on this
    disk sync)."""
    os.makedirs(DATA_ROOT, exist_ok=True)
    out = subprocess.run([FSYNC_FLOOR, DATA_ROOT, str(seconds)], capture_output=True,
                         text=True, check=True).stdout
    # "fdatasync floor in DIR: N syncs/s by one writer, p50 X, p99 Y (K syncs)"
    # "three writers at once: N syncs/s in all, p50 X, p99 Y (K syncs)"
    def parse(line):
        rate = float(line.split(": ", 1)[1].split(" syncs/s")[0])
        p50 = parse_debug_duration(line.split("p50 ", 1)[1].split(",")[0])
        p99 = parse_debug_duration(line.split("p99 ", 1)[1].split(" (")[0])
        return rate, p50, p99
    one, three = out.splitlines()[:2]
    return parse(one), parse(three)


def parse_debug_duration(s):
    """Microseconds of a Rust Debug Duration (`4.1ms`, `812µs`, `1.2s`, `900ns`)."""
    s = s.strip()
    for unit, scale in (("ns", 1e-3), ("µs", 1.0), ("us", 1.0), ("ms", 1e3), ("s", 1e6)):
        if s.endswith(unit):
            return float(s[: -len(unit)]) * scale
    raise ValueError(s)


def load_avg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
