"""Benchmark: the Paxos key-value store in the simulator (2 ms one-way links, LAN presets).

Prints one figure per line:
  throughput with 1 and with 16 clients (ops per virtual second, after the first election)
  commit latency of one client, in round trips (median latency / 4 ms)
  time to resume writes after the leader is killed (goal <= 0.5 s), over several seeds
  peak heap of an ESP32-class replica on MicroPython: gossip + Paxos + KV holding a
  1,000-entry log window (goal <= 64 KB), if micropython is installed
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
base = gc.mem_free()
from roost.common.channel import Channel
from roost.common.prng import Prng
from roost.node.kv import KvReplica, OP_PUT, KV_REQUEST
try:
    from roost.node.gossip import GossipCore
except ImportError:
    GossipCore = None
from roost.node.paxos import PaxosConfig
gc.collect()
code = base - gc.mem_free()
ch = Channel("n1", "fleet-key")
low = gc.mem_free()
storage = {}
g = GossipCore("n1", ch, rng=Prng(1), storage={}) if GossipCore else None
r = KvReplica("n1", ch, ["n1"], paxos_config=PaxosConfig(snapshot_every=1000, max_batch=1),
              rng=Prng(2), storage=storage)
now = 0
for i in range(400):
    now += 10
    r.tick(now)
    if r.is_leader():
        break
cl = Channel("c1", "fleet-key")
def sample(low):
    f = gc.mem_free()
    return f if f < low else low
for i in range(999):
    now += 1
    body = [i + 1, OP_PUT, "k%%d" %% (i %% 20), "v%%d" %% i, None]
    effs = r.receive(now, "c1", cl.seal(KV_REQUEST, "n1", body))
    effs = None  # PERSIST values go to flash on a board, not to the heap
    if g is not None and i %% 50 == 0:
        g.tick(now)
    if i %% 10 == 0:
        low = sample(low)
    if i %% 100 == 99:
        gc.collect()  # a node runtime collects when idle
gc.collect()
held = base - code - gc.mem_free()
print("HEAP", code, base - low - code, held, r.paxos.applied_index, len(r.paxos.log),
      1 if g is not None else 0)
"""


def bench_heap() -> str:
    exe = shutil.which("micropython")
    if exe is None:
        return "heap: micropython not installed"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        src = root
        mpyc = shutil.which("mpy-cross")
        if mpyc:  # compile to .mpy as a board image does (source compiles need more RAM)
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
        script = _HEAP_SCRIPT % {"root": src}
        res = subprocess.run([exe, "-X", "heapsize=4M", "-c", script], capture_output=True,
                             text=True, timeout=300, cwd=tmp)
    for line in res.stdout.splitlines():
        if line.startswith("HEAP "):
            code, peak, held, applied, logn, gossip = map(int, line.split()[1:])
            return ("heap: ESP32-class replica (%s, KV, Paxos log window %d entries, %d "
                    "applied, %s): code %.1f KB, state peak %.1f KB, state held %.1f KB, "
                    "code+peak %.1f KB, %.0f bytes per log entry (goal <= 64 KB)"
                    % ("gossip" if gossip else "no gossip", logn, applied,
                       ".mpy" if mpyc else "source", code / 1024, peak / 1024, held / 1024,
                       (code + peak) / 1024, held / max(1, logn)))
    return "heap: failed: " + ((res.stderr or res.stdout).strip().splitlines() or ["?"])[-1]


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
        print(bench_heap())
    return 0


if __name__ == "__main__":
    sys.exit(main())
