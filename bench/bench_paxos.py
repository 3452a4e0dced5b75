"""Benchmark: Multi-Paxos throughput and latency.

1. Committed commands per wall second for a 3-replica group in one process (no network,
   the in-process pump), on CPython and on MicroPython (a subprocess) side by side.
2. In the simulator with 2 ms one-way latency: commit latency in round trips at the leader
   (goal: one round trip in steady state), and the time writes take to resume after the
   leader is killed with the LAN preset (goal: at most 0.5 s).

Run from the repository root: python bench/bench_paxos.py [--commands N] [--seeds S]
(MicroPython runs the first part itself: micropython bench/bench_paxos.py --inproc N).
"""

import sys

try:
    import os

    _ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
except (ImportError, AttributeError):  # MicroPython: run from the repository root
    _ROOT = "."
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from roost.node.paxos import PaxosConfig  # noqa: E402
from tests.paxos.pump import Cluster  # noqa: E402

_MPY = sys.implementation.name == "micropython"


def _clock_ms():
    import time

    if _MPY:
        return time.ticks_ms()
    return time.perf_counter() * 1000.0


def inproc(n):
    """Commit n commands through a 3-replica group in one process; commands per second."""
    cl = Cluster(["n1", "n2", "n3"], config=PaxosConfig(snapshot_every=200), check=False)
    leader = cl.wait_leader()
    t0 = _clock_ms()
    sent = 0
    while sent < n:
        for _ in range(64):
            if sent < n and cl.propose(leader, ["put", "k%d" % (sent % 50), sent]):
                sent += 1
        cl.deliver()
        cl.advance(1)
    cl.deliver()
    elapsed = _clock_ms() - t0
    if _MPY:
        import time

        elapsed = time.ticks_diff(_clock_ms(), t0)
    done = cl.core(leader).applied_index
    return done, elapsed / 1000.0


def _sim_latency(seeds):
    from roost.emulator.sim import NetConfig
    from tests.paxos.simharness import Group

    rtts = []
    for seed in range(seeds):
        g = Group(seed, ["n1", "n2", "n3"], net=NetConfig(latency_ms=2, jitter_ms=0))
        leader = g.wait_leader(1000)
        g.sim.run_for(200)
        for k in range(50):
            cmd = ["lat", seed, k]
            t0 = g.sim.now_ms
            g.propose(cmd, at=leader)
            while repr(cmd) not in g.applied_at and g.sim.now_ms - t0 < 1000:
                g.sim.run_for(1)
            rtts.append((g.applied_at[repr(cmd)] - t0) / 4.0)
            g.sim.run_for(7)
    return rtts


def _sim_failover(seeds):
    from roost.emulator.sim import NetConfig
    from tests.paxos.simharness import Group

    gaps = []
    for seed in range(seeds):
        g = Group(seed, ["n1", "n2", "n3"], config=PaxosConfig.lan(),
                  net=NetConfig(latency_ms=2, jitter_ms=1))
        g.wait_leader(1000)
        g.client(5, 4000)
        g.sim.run_until(1500)
        g.sim.crash(g.leader())
        killed = g.sim.now_ms
        g.sim.run_until(3500)
        after = [t for t in g.applied_at.values() if t > killed]
        gaps.append(min(after) - killed if after else None)
    return gaps


def main():
    args = sys.argv[1:]
    n = 20000
    seeds = 10
    i = 0
    while i < len(args):
        if args[i] in ("--commands", "--inproc") and i + 1 < len(args):
            n = int(args[i + 1])
            i += 1
        elif args[i] == "--seeds" and i + 1 < len(args):
            seeds = int(args[i + 1])
            i += 1
        i += 1
    if _MPY or "--inproc" in args:
        done, secs = inproc(n)
        print("inproc %s: %d commands in %.3f s = %.0f commits/s"
              % (sys.implementation.name, done, secs, done / secs))
        return 0
    import shutil
    import subprocess

    done, secs = inproc(n)
    cpy = done / secs
    print("paxos in-process, 3 replicas, CPython: %d commands in %.2f s = %.0f commits/s"
          % (done, secs, cpy))
    exe = shutil.which("micropython")
    if exe:
        out = subprocess.run([exe, "-X", "heapsize=8M", "bench/bench_paxos.py", "--inproc",
                              str(n)], capture_output=True, text=True, cwd=_ROOT, timeout=600)
        line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-300:]
        print("paxos in-process, 3 replicas, MicroPython: " + line.split(": ", 1)[-1])
        try:
            mpy = float(line.rsplit("= ", 1)[1].split()[0])
            print("paxos in-process, CPython/MicroPython ratio: %.1fx" % (cpy / mpy))
        except (IndexError, ValueError):
            pass
    else:
        print("paxos in-process, MicroPython: not installed")
    rtts = sorted(_sim_latency(seeds))
    print("paxos sim commit latency at the leader (2 ms one-way): median %.2f RTT, max %.2f RTT"
          " over %d commands" % (rtts[len(rtts) // 2], rtts[-1], len(rtts)))
    gaps = _sim_failover(seeds)
    ok = sorted(g for g in gaps if g is not None)
    print("paxos sim writes resume after leader kill (LAN preset): median %d ms, max %d ms, "
          "%d/%d seeds within 500 ms" % (ok[len(ok) // 2], ok[-1],
                                          sum(1 for g in ok if g <= 500), len(gaps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
