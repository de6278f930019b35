"""Puts, gets and compares-and-swaps against a raftkv cluster through a client generated
from examples/proto/kvrpc.proto by grpcio-tools, as any non-Rust user would.

Usage: kv_client.py GENERATED_DIR ENDPOINT...   (prints OK and exits 0 on success)
"""
import random
import sys
import time

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
import kvrpc_pb2 as pb  # noqa: E402
import kvrpc_pb2_grpc as rpc  # noqa: E402

ENDPOINTS = sys.argv[2:]
STUBS = {addr: rpc.KvStub(grpc.insecure_channel(addr)) for addr in ENDPOINTS}
DEADLINE = time.monotonic() + 30
CLIENT_ID = random.getrandbits(63) + 1
RETRYABLE = ("not_leader", "epoch_not_match", "region_not_found", "server_is_busy", "stale_command")


def call(method, request):
    """Sends `request` until a node serves it: follows not_leader hints, tries the next
    node on other retryable errors. The same request (same context) is resent, so a write
    is applied once however often it is retried."""
    i = 0
    addr = ENDPOINTS[0]
    while True:
        if time.monotonic() > DEADLINE:
            sys.exit(f"no node served {method}")
        try:
            resp = getattr(STUBS[addr], method)(request, timeout=5)
        except grpc.RpcError:
            i += 1
            addr = ENDPOINTS[i % len(ENDPOINTS)]
            time.sleep(0.05)
            continue
        if resp.HasField("region_error"):
            err = resp.region_error
            if not any(err.HasField(f) for f in RETRYABLE):
                sys.exit(f"{method}: {err}")
            hint = err.not_leader.leader_addr if err.HasField("not_leader") else ""
            if hint in STUBS and hint != addr:
                addr = hint
            else:
                i += 1
                addr = ENDPOINTS[i % len(ENDPOINTS)]
                time.sleep(0.05)
            continue
        if resp.error:
            sys.exit(f"{method}: {resp.error}")
        return resp


SEQUENCE = 0


def write_context():
    global SEQUENCE
    SEQUENCE += 1
    return pb.Context(client_id=CLIENT_ID, sequence=SEQUENCE)


def check(cond, what):
    if not cond:
        sys.exit(f"check failed: {what}")


call("RawPut", pb.RawPutRequest(context=write_context(), key=b"py/k", value=b"v1"))
got = call("RawGet", pb.RawGetRequest(key=b"py/k"))
check(not got.not_found and got.value == b"v1", f"get after put: {got}")
check(call("RawGet", pb.RawGetRequest(key=b"py/missing")).not_found, "missing key")

lock = pb.RawCompareAndSwapRequest(
    context=write_context(), key=b"py/lock", value=b"me", previous_not_exist=True
)
first = call("RawCompareAndSwap", lock)
check(first.succeed and first.previous_not_exist, f"CAS on an absent key: {first}")
# The same request again (same client id and sequence) is a retry: the first answer.
check(call("RawCompareAndSwap", lock) == first, "a retried CAS returns its first answer")
# A new request expecting absence fails and shows the current value.
again = pb.RawCompareAndSwapRequest(
    context=write_context(), key=b"py/lock", value=b"you", previous_not_exist=True
)
taken = call("RawCompareAndSwap", again)
check(not taken.succeed and taken.previous_value == b"me", f"CAS on a taken key: {taken}")

swap = pb.RawCompareAndSwapRequest(
    context=write_context(), key=b"py/k", value=b"v2", previous_value=b"v1"
)
check(call("RawCompareAndSwap", swap).succeed, "CAS v1 -> v2")
check(call("RawGet", pb.RawGetRequest(key=b"py/k")).value == b"v2", "value after CAS")
delete = pb.RawCompareAndSwapRequest(
    context=write_context(), key=b"py/k", previous_value=b"v2", delete=True
)
check(call("RawCompareAndSwap", delete).succeed, "CAS delete")
check(call("RawGet", pb.RawGetRequest(key=b"py/k")).not_found, "deleted by CAS")

print("OK")
