"""Benchmark: the Paxos key-value store in the simulator (2 ms one-way links, LAN presets).

Prints one figure per line:
  throughput with 1 and with 16 clients (ops per virtual second, after the first election)
  commit latency of one client, in round trips (median latency / 4 ms)
  time to resume writes after the leader is killed (goal <= 0.5 s), over several seeds
  heap of an ESP32-class replica on MicroPython: gossip + Paxos + KV state holding a
  1,000-entry log window (goal <= 64 KB), then the same with PaxosConfig.esp32(); the code
  (bytecode, frozen into flash on a board) is reported apart, if micropython is installed
Run from the repository root: python bench/bench_kv.py [--seeds N] [--no-heap]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from roost.emulator.kv_scenario import KvRun  # noqa: E402

LATENCY_MS = 2


def steady_throughput(run: KvRun) -> float:
    """ok ops per virtual second, counted from the first answer (the election is over)."""
    ok = [r for r in run.history if r["ok"] is True]
    start = min(r["return"] for r in ok)
    end = max(r["return"] for r in ok)
    n = sum(1 for r in ok if r["call"] >= start)
    return n / (end - start) if end > start else 0.0


def bench_throughput(clients: int, ops: int) -> tuple[float, float]:
    run = KvRun(3, clients, ops, seed=1, think_ms=0, latency_ms=LATENCY_MS, check=False).run()
    ok = [r for r in run.history if r["ok"] is True]
    start = min(r["return"] for r in ok)
    lat = sorted((r["return"] - r["call"]) * 1000 for r in ok if r["call"] >= start)
    return steady_throughput(run), statistics.median(lat)


def bench_failover(seed: int) -> float:
    """ms from killing the leader to the first write that completes after it."""
    run = KvRun(3, 4, 400, seed=seed, think_ms=5, latency_ms=LATENCY_MS, check=False)
    kill_at = 1000
    killed: list[int] = []

    def kill(sim):
        leader = run.current_leader()
        if leader is not None:
            sim.crash(leader)
            killed.append(sim.now_ms)

    sim = run._build()
    sim.at(kill_at, kill)
    sim.run_until(4000)
    t = killed[0]
    writes = sorted(r["return"] * 1000 for r in run.history
                    if r["ok"] is True and r["op"] != "get" and r["return"] * 1000 > t)
    return writes[0] - t if writes else float("inf")


_HEAP_SCRIPT = r"""
import gc, sys
sys.path.insert(0, %(root)r)
gc.collect()
base = gc.mem_alloc()
from roost.common.channel import Channel
from roost.common.prng import Prng
from roost.node.kv import KvReplica, OP_PUT, KV_REQUEST
try:
    from roost.node.gossip import GossipCore
except ImportError:
    GossipCore = None
from roost.node.paxos import PaxosConfig
gc.collect()
code = gc.mem_alloc() - base
def used():
    gc.collect()
    return gc.mem_alloc() - base - code
PRESET = %(preset)r
N = %(entries)d
if PRESET == "esp32":
    pcfg = PaxosConfig.esp32(max_batch=1)
else:
    pcfg = PaxosConfig(snapshot_every=N + 24, max_batch=1)
ch = Channel("n1", "fleet-key")
cl = Channel("c1", "fleet-key")
s0 = used()
g = GossipCore("n1", ch, rng=Prng(1), storage={}) if GossipCore else None
s1 = used()
r = KvReplica("n1", ch, ["n1"], paxos_config=pcfg, rng=Prng(2), storage={})
now = 0
for i in range(400):
    now += 10
    r.tick(now)
    if r.is_leader():
        break
if g is not None:
    g.tick(now)
s2 = used()
peak = s2
for i in range(N):
    now += 1
    body = [i + 1, OP_PUT, "k%%d" %% (i %% 20), "v%%d" %% i, None]
    effs = r.receive(now, "c1", cl.seal(KV_REQUEST, "n1", body))
    effs = None  # PERSIST values go to flash on a board and APPLY/SEND to the runtime
    if g is not None and i %% 50 == 0:
        g.tick(now)
    if %(sample)d and i %% 25 == 24:
        u = used()  # live state between requests (a node runtime collects when idle)
        if u > peak:
            peak = u
s3 = used()
print("HEAP", code, s1 - s0, s2 - s1, s3 - s1, peak - s0, len(r.paxos.log),
      r.paxos.applied_index)
"""


def _mpy_tree(root: str, tmp: str) -> tuple[str, bool]:
    """Compile roost/common and roost/node to .mpy as a board image holds them."""
    mpyc = shutil.which("mpy-cross")
    if not mpyc:
        return root, False
    src = os.path.join(tmp, "tree")
    for folder in ("roost/common", "roost/node"):
        for name in sorted(os.listdir(os.path.join(root, folder))):
            if not name.endswith(".py"):
                continue
            dst_dir = os.path.join(src, folder)
            os.makedirs(dst_dir, exist_ok=True)
            out = os.path.join(dst_dir, name[:-3] + ".mpy")
            subprocess.run([mpyc, "-o", out, os.path.join(root, folder, name)],
                           check=False, capture_output=True)
    for pkg in ("roost", "roost/common", "roost/node"):
        open(os.path.join(src, pkg, "__init__.py"), "a").close()
    return src, True


def _run_heap(exe: str, tree: str, cwd: str, preset: str, entries: int, heap_kb: int,
              sample: bool) -> list[int] | None:
    script = _HEAP_SCRIPT % {"root": tree, "preset": preset, "entries": entries,
                             "sample": 1 if sample else 0}
    res = subprocess.run([exe, "-X", "heapsize=%dK" % heap_kb, "-c", script],
                         capture_output=True, text=True, timeout=300, cwd=cwd)
    for line in res.stdout.splitlines():
        if line.startswith("HEAP "):
            return [int(x) for x in line.split()[1:]]
    return None


def measure_heap(preset: str = "window", entries: int = 1000) -> dict | None:
    """One replica (gossip + Paxos + KV) after ``entries`` client writes on MicroPython's
    unix port (64-bit: objects cost about twice what they do on an ESP32; byte buffers the
    same). Figures in bytes:
      code      bytecode and module tables of the imported .mpy files (frozen into flash on
                a board, so no heap there)
      gossip    the gossip core's state
      state     gossip + Paxos + KV state held with the log window full (after a collection)
      peak      the largest live state seen between requests
      per_entry (state with the window full - state before the first write) / log entries
      min_heap  the smallest heap (code included) in which the whole run completes, with
                MicroPython collecting only when it must: live state plus fragmentation
    None when micropython is not installed."""
    exe = shutil.which("micropython")
    if exe is None:
        return None
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        tree, compiled = _mpy_tree(root, tmp)
        got = _run_heap(exe, tree, tmp, preset, entries, 4096, True)
        if got is None:
            return None
        code, gossip, replica0, state, peak, logn, applied = got
        lo, hi = 16, 4096  # KB: smallest heap that completes the run, by bisection
        if _run_heap(exe, tree, tmp, preset, entries, hi, False) is None:
            lo = hi = 0  # not even in 4 MB (a fragmented heap)
        while hi - lo > 2:
            mid = (lo + hi) // 2
            if _run_heap(exe, tree, tmp, preset, entries, mid, False) is not None:
                hi = mid
            else:
                lo = mid
    return {"code": code, "gossip": gossip, "state": state, "peak": peak, "log": logn,
            "applied": applied, "per_entry": (state - gossip - replica0) / max(1, logn),
            "min_heap": hi * 1024, "mpy": compiled, "preset": preset}


def bench_heap(preset: str = "window") -> str:
    m = measure_heap(preset)
    if m is None:
        return "heap: micropython not installed (or the heap run failed)"
    what = ("PaxosConfig.esp32()" if preset == "esp32"
            else "a %d-entry log window" % m["log"])
    per = ", %.0f bytes per log entry" % m["per_entry"] if preset != "esp32" else ""
    fits = ("fits a %.0f KB heap" % (m["min_heap"] / 1024) if m["min_heap"]
            else "does not complete in a 4 MB heap")
    return ("heap (%s): gossip + Paxos + KV with %s (%d entries held, %d applied, %s): "
            "state %.1f KB (gossip %.1f KB)%s, peak live state %.1f KB (goal <= 64 KB); "
            "code %.1f KB more, frozen into flash on a board; whole run %s with the code "
            "loaded in it (unix port, 64-bit)"
            % (preset, what, m["log"], m["applied"], ".mpy" if m["mpy"] else "source",
               m["state"] / 1024, m["gossip"] / 1024, per, m["peak"] / 1024,
               m["code"] / 1024, fits))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="seeds for the failover figure")
    ap.add_argument("--no-heap", action="store_true", help="skip the MicroPython heap figure")
    a = ap.parse_args()
    for clients, ops in ((1, 300), (16, 2000)):
        tput, med = bench_throughput(clients, ops)
        print("throughput: %2d client(s): %.0f ops/virtual s, median latency %.1f ms"
              % (clients, tput, med))
        if clients == 1:
            print("commit latency: %.2f round trips (median %.1f ms, round trip %d ms)"
                  % (med / (2 * LATENCY_MS), med, 2 * LATENCY_MS))
    gaps = [bench_failover(s) for s in range(1, a.seeds + 1)]
    print("failover: writes resume %.0f ms after the leader is killed (median of %d seeds, "
          "max %.0f ms; goal <= 500 ms)" % (statistics.median(gaps), len(gaps), max(gaps)))
    if not a.no_heap:
        print(bench_heap("window"))
        print(bench_heap("esp32"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
