"""Gossip benchmark: prints the figures docs/benchmarks.md records.

    python bench/bench_gossip.py            # everything (the 1,000-node run takes minutes)
    python bench/bench_gossip.py --skip-1000

Figures (goals from the gossip issue):
  25 nodes / 100 ms: messages per update (<= 20), dissemination median (<= 1 s), max (<= 2 s)
  100 nodes / 100 ms: dissemination median (<= 1.5 s)
  detection in protocol periods, median over kills (<= 5); false positives at 10% loss (0)
  1,000 nodes gossiping for 60 virtual seconds: wall seconds (<= 60) and virtual/wall ratio
  MicroPython: heap held by a core with a 32-member view, and the peak while it works
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from roost.common.ids import node_name  # noqa: E402
from roost.emulator.gossip_scenario import run_gossip  # noqa: E402
from roost.emulator.sim import NetConfig, Simulator  # noqa: E402
from roost.node.gossip import GossipConfig, GossipCore  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def bench_25(seeds: list[int]) -> None:
    rs = [run_gossip(25, s, latency_ms=100, duration_s=30) for s in seeds]
    mpu = statistics.mean(r["messages_per_update"] for r in rs)
    med = statistics.median(r["dissemination_ms"]["median"] for r in rs)
    mx = max(r["dissemination_ms"]["max"] for r in rs)
    cov = min(r["coverage"] for r in rs)
    print("25 nodes, 100 ms, %d seeds, %d updates each:" % (len(seeds), rs[0]["updates"]))
    print("  messages per update      %.1f   (goal <= 20)" % mpu)
    print("  dissemination median     %.0f ms (goal <= 1000)" % med)
    print("  dissemination max        %.0f ms (goal <= 2000)" % mx)
    print("  coverage (worst run)     %.4f" % cov)


def bench_100(seed: int) -> None:
    r = run_gossip(100, seed, latency_ms=100, duration_s=15)
    d = r["dissemination_ms"]
    print("100 nodes, 100 ms, %d updates:" % r["updates"])
    print(
        "  dissemination median     %.0f ms (goal <= 1500); p99 %.0f, max %.0f"
        % (d["median"], d["p99"], d["max"])
    )
    print("  messages per update      %.1f; wall %.1f s" % (r["messages_per_update"], r["wall_s"]))


def bench_detection(seeds: list[int]) -> None:
    period_s = GossipConfig().probe_interval_ms / 1000.0
    for loss in (0.0, 0.1):
        meds = []
        maxes = []
        fps = 0
        for s in seeds:
            r = run_gossip(25, s, latency_ms=100, loss=loss, kill=3, duration_s=30)
            det = r["detection_s"]
            if det["median"] is not None:
                meds.append(det["median"])
            maxes.append(det["max"] if det["max"] is not None else float("inf"))
            fps += r["false_positives"]
        print("25 nodes, 3 killed, loss %d%%, %d seeds:" % (int(loss * 100), len(seeds)))
        print(
            "  detection median         %.2f periods (goal <= 5); worst %.2f"
            % (statistics.median(meds) / period_s, max(maxes) / period_s)
        )
        print("  false positives          %d (goal 0)" % fps)


def bench_1000(nodes: int, virtual_s: int) -> None:
    ids = [node_name(i + 1, 4) for i in range(nodes)]
    sim = Simulator(1, net=NetConfig(latency_ms=100, jitter_ms=10))
    cfg = GossipConfig(seeds=ids[:3])
    for n in ids:
        sim.add_node(n, lambda nid, ch, st, rng, now: GossipCore(nid, ch, cfg, rng, st, now))
    t0 = time.perf_counter()
    for t in range(1, virtual_s + 1):
        sim.run_until(t * 1000)
        if t % 10 == 0:
            print(
                "    t=%ds wall %.1fs sent %d" % (t, time.perf_counter() - t0, sim.stats["sent"]),
                file=sys.stderr,
                flush=True,
            )
        if t % 5 == 0:  # a reading now and then, from a rotating node
            sim.call(ids[t % nodes], lambda h, now, t=t: h.publish(now, [t, 21.5]))
    wall = time.perf_counter() - t0
    alive = sum(1 for m in sim.host(ids[-1]).members() if m[1] == "alive")
    print("%d nodes gossiping for %d virtual s (join storm included):" % (nodes, virtual_s))
    print(
        "  wall                     %.1f s (goal <= 60); virtual/wall %.2f"
        % (wall, virtual_s / wall)
    )
    print(
        "  messages                 %d (%.1f per node per s); %s sees %d alive"
        % (sim.stats["sent"], sim.stats["sent"] / nodes / virtual_s, ids[-1], alive)
    )


_MPY_SCRIPT = """
import gc, sys
sys.path.insert(0, %r)
import roost.node.gossip as g
from roost.common.channel import Channel
from roost.common import envelope
from roost.common.auth import Hmac
from roost.common.prng import Prng
mac = Hmac("k")
gc.collect()
base = gc.mem_alloc()
c = g.GossipCore("n01", Channel("n01", "k"), g.GossipConfig(), Prng(1), {}, 0)
peers = ["n%%02d" %% i for i in range(2, 33)]
seq = [0]
def msg(src, kind, body):
    seq[0] += 1
    return envelope.encode(envelope.Envelope(kind, src, "n01", 0, seq[0], body), mac)
ms = [g.encode_member([p, 0, 1, "esp32", "room1", 0]) for p in peers]
c.receive(0, "n02", msg("n02", g.GOSSIP, [[ms, []]]))
for p in peers:
    c.receive(0, p, msg(p, g.GOSSIP, [[[], [[p, 1, [21.5, 40, 1013]]]]]))
peak = 0
now = 0
for _ in range(200):  # 20 s of ticks, every ping answered
    d = c.next_deadline_ms()
    now = d if d > now else now
    for e in c.tick(now):
        if e[0] == 1 and e[1] != "*":
            env = Channel(e[1], "k").open(e[2])
            if env is not None and env.kind == g.PING:
                c.receive(now, e[1], msg(e[1], g.ACK, [env.body[0], [[], []]]))
    a = gc.mem_alloc() - base
    peak = a if a > peak else peak
gc.collect()
print(len(c.members()), gc.mem_alloc() - base, peak)
"""


def _mpy_run(script: str, heap_k: int) -> list[str] | None:
    try:
        out = subprocess.run(
            ["micropython", "-X", "heapsize=%dK" % heap_k, "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    return parts if out.returncode == 0 and len(parts) == 3 else None


def bench_mpy() -> None:
    """Heap held by the core (after gc.collect) and the smallest -X heapsize that runs the
    whole 32-member workload (code of the gossip and common modules included)."""
    script = _MPY_SCRIPT % os.path.abspath(ROOT)
    parts = _mpy_run(script, 400)
    if parts is None:
        print("MicroPython heap: could not run the workload under micropython")
        return
    n, held = int(parts[0]), int(parts[1])
    lo, hi = 40, 400  # lo fails (below the code size), hi works
    while hi - lo > 2:
        mid = (lo + hi) // 2
        if _mpy_run(script, mid) is None:
            lo = mid
        else:
            hi = mid
    print("MicroPython (unix port, 64-bit), a core with a %d-member view, 32 summaries:" % n)
    print("  heap held by the core    %.1f KB (after gc.collect, code excluded)" % (held / 1024))
    print("  smallest heap that runs  %d KB (-X heapsize, code and probing included)" % hi)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-1000", action="store_true", help="skip the 1,000-node speed run")
    ap.add_argument("--only-1000", action="store_true", help="run only the 1,000-node speed run")
    ap.add_argument("--nodes-speed", type=int, default=1000)
    ap.add_argument("--virtual-s", type=int, default=60)
    ap.add_argument("--seeds", type=int, default=5)
    a = ap.parse_args()
    seeds = list(range(1, a.seeds + 1))
    if not a.only_1000:
        bench_25(seeds)
        bench_100(1)
        bench_detection(seeds)
        bench_mpy()
    if not a.skip_1000:
        bench_1000(a.nodes_speed, a.virtual_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
