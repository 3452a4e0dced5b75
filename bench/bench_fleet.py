"""Benchmark: the real fleet (3 CPython replica processes on loopback) against PySyncObj.

Side by side in one run, the same value size, 3 replica processes each:
  committed writes/s with 1 and 16 concurrent clients, median and p99 latency,
  time until writes resume after SIGKILL of the leader; then the ratios.
The two sides take turns, measurement by measurement, for --rounds rounds (default 3), and
each ratio is the median of the rounds' ratios: this shared machine's speed drifts by tens
of percent from one minute to the next, which one roost run then one PySyncObj run mistook
for a difference between them.
Like with like: PySyncObj keeps its log in memory and never fsyncs, so roost is measured
without fsync (its default for emulation: a kill -9 loses nothing, a power cut of the
machine may), then again with fsync on every write (--skip-fsync leaves that run out);
each side says "fsync" in its output.
roost: the clients run in this script's process, speaking the kv protocol over UDP
(``roost load``).
PySyncObj (appendEntriesUseBatch=False, its low-latency setting): clients are threads in a
follower process calling a @replicated set(sync=True) (forwarded to the leader: one hop, as
roost's client is one hop from the leader).
Optionally (--scale 10,20,40): how many node processes one machine runs with the fleet healthy.

Run from the repository root:
    python bench/bench_fleet.py [--duration S] [--rounds R] [--scale 10,20,40 [--scale-only]]
"""

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


# ---------------------------------------------------------------- roost


class RoostFleet:
    """3 CPython replicas kept up across the rounds (a killed leader is restarted)."""

    def __init__(self, tmp, fsync=False):
        from roost.emulator import fleet

        self.d = Path(tmp) / ("roost-fsync" if fsync else "roost")
        self.fsync = fsync
        self.snap = fleet.up(self.d, 3, groups=1, replicas=3, timeout_s=60,
                             opts={"fsync": fsync})
        self.error = None
        if not self.snap["health"]["healthy"]:
            self.error = "fleet not healthy: %s" % self.snap["health"]["problems"]

    def load(self, clients, duration, value_size):
        from roost.gateway import client

        s = client.run_load(self.d, clients, duration, keys=32, mix="put:1",
                            value_size=value_size)
        return {"writes_per_s": s["writes_per_s"], "p50_ms": s["latency_ms"]["p50"],
                "p99_ms": s["latency_ms"]["p99"], "unknown": s["unknown"]}

    def failover(self, duration, value_size):
        """Seconds without an acknowledged write around a SIGKILL of the leader."""
        from roost.emulator import chaos, fleet
        from roost.gateway import client

        snap = fleet.wait_healthy(self.d, 30)
        leader = snap["health"]["leaders"]["g0"][0]
        res = {}

        def load():
            res["s"] = client.run_load(self.d, 1, duration + 3, keys=32, mix="put:1",
                                       value_size=value_size, timeout_ms=10000)

        th = threading.Thread(target=load)
        th.start()
        time.sleep(1.5)
        chaos.kill(self.d, leader)
        th.join()
        chaos.restart(self.d, leader)  # the next round starts with three replicas again
        fleet.wait_healthy(self.d, 30)
        # the longest pause between consecutive acknowledged writes: the kill's outage
        rets = sorted(r["return"] for r in res["s"]["history"] if r["ok"])
        gaps = [b - a for a, b in zip(rets, rets[1:])]
        return round(max(gaps), 3) if gaps else None

    def down(self):
        from roost.emulator import fleet

        fleet.down(self.d)


# ---------------------------------------------------------------- PySyncObj


def pso_node(args):
    """One PySyncObj replica process (run by this file with --pso-node)."""
    from pysyncobj import SyncObj, SyncObjConf, replicated
    from pysyncobj.syncobj import SyncObjException

    class KV(SyncObj):
        def __init__(self, me, partners):
            conf = SyncObjConf(appendEntriesUseBatch=False, dynamicMembershipChange=False)
            super().__init__(me, partners, conf)
            self._d = {}

        @replicated
        def set(self, k, v):
            self._d[k] = v

    ports = [int(p) for p in args.ports.split(",")]
    addrs = ["127.0.0.1:%d" % p for p in ports]
    me = addrs[args.pso_node]
    obj = KV(me, [a for a in addrs if a != me])
    outdir = Path(args.out)
    deadline = time.monotonic() + 30
    while obj._getLeader() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    leader = str(obj._getLeader())
    (outdir / ("leader.%d" % args.pso_node)).write_text(leader)
    followers = sorted(a for a in addrs if a != leader)
    if me != followers[0]:
        while True:  # serve until killed
            time.sleep(1)
    time.sleep(0.5)
    value = "x" * args.value_size
    lat, acks = [], []
    lock = threading.Lock()
    t0 = time.monotonic()
    t_end = t0 + args.duration

    def worker(i):
        n = 0
        while time.monotonic() < t_end:
            n += 1
            c = time.monotonic()
            try:
                obj.set("k%d" % ((i * 7919 + n) % 32), value + str(n), sync=True, timeout=5)
            except SyncObjException:
                continue
            r = time.monotonic()
            with lock:
                lat.append((r - c) * 1000)
                acks.append((c - t0, r - t0))

    (outdir / "go").write_text(str(time.time()))
    ths = [threading.Thread(target=worker, args=(i,)) for i in range(args.clients)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    el = time.monotonic() - t0
    tmp = outdir / "result.json.tmp"  # renamed when whole: the bench polls for the name
    tmp.write_text(json.dumps({"lat": lat, "acks": acks, "elapsed": el,
                               "t0_wall": time.time() - el}))
    tmp.rename(outdir / "result.json")
    while True:
        time.sleep(1)


def _free_ports(n):
    import socket

    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def pso_run(clients, duration, value_size, tmp, kill_leader_at=None):
    out = Path(tempfile.mkdtemp(dir=tmp))
    ports = _free_ports(3)
    procs = []
    try:
        for i in range(3):
            procs.append(subprocess.Popen(
                [sys.executable, __file__, "--pso-node", str(i), "--ports",
                 ",".join(map(str, ports)), "--clients", str(clients), "--duration",
                 str(duration), "--value-size", str(value_size), "--out", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        while not (out / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not (out / "go").exists():
            return {"error": "PySyncObj elected no leader"}
        killed = False
        if kill_leader_at is not None:
            time.sleep(kill_leader_at)
            leader = (out / "leader.0").read_text()
            port = int(leader.rsplit(":", 1)[1])
            victim = procs[ports.index(port)]
            victim.send_signal(signal.SIGKILL)
            killed = True
        deadline = time.monotonic() + duration + 30
        while not (out / "result.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not (out / "result.json").exists():
            return {"error": "PySyncObj's clients did not finish"}
        res = json.loads((out / "result.json").read_text())
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
    lat = res["lat"]
    s = {"writes_per_s": round(len(lat) / res["elapsed"], 1), "p50_ms": _r(_pct(lat, 50)),
         "p99_ms": _r(_pct(lat, 99))}
    if killed:
        rets = sorted(r for _, r in res["acks"])
        gaps = [b - a for a, b in zip(rets, rets[1:])]
        s["failover_s"] = round(max(gaps), 3) if gaps else None
    return s


def _r(x):
    return None if x is None else round(x, 3)


def pso_available():
    try:
        import pysyncobj  # noqa: F401
    except ImportError:
        return False
    return True


def _median(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None


def _summary(runs):
    """The round with the median writes/s (its latencies too), and every round's rate."""
    ok = [r for r in runs if "writes_per_s" in r]
    if not ok:
        return runs[-1] if runs else {"error": "not measured"}
    ok.sort(key=lambda r: r["writes_per_s"])
    out = dict(ok[len(ok) // 2])
    out["rounds_writes_per_s"] = [r.get("writes_per_s") for r in runs]
    return out


def _ratio(a, b):
    try:
        return round(a / b, 2)
    except (TypeError, ZeroDivisionError):
        return None


def interleaved(rounds, duration, value_size, tmp, say):
    """Each round measures roost then PySyncObj at 1 client, at 16, then a leader kill:
    the two sides see the machine within seconds of each other, and a ratio is taken per
    round (this shared machine's speed drifts by tens of percent between minutes)."""
    rf = RoostFleet(tmp)
    roost = {"fsync": False}
    pso = {"fsync": False}  # PySyncObj keeps its log in memory (no journal file configured)
    have_pso = pso_available()
    if not have_pso:
        pso["error"] = "pysyncobj is not installed (pip install pysyncobj)"
    runs = {"roost": {1: [], 16: [], "fo": []}, "pso": {1: [], 16: [], "fo": []}}
    ratios = {1: [], 16: [], "fo": []}
    try:
        if rf.error:
            roost["error"] = rf.error
            return roost, pso, {}
        for r in range(rounds):
            for c in (1, 16):
                a = rf.load(c, duration, value_size)
                runs["roost"][c].append(a)
                b = pso_run(c, duration, value_size, tmp) if have_pso else {}
                runs["pso"][c].append(b)
                ratios[c].append(_ratio(a.get("writes_per_s"), b.get("writes_per_s")))
                say("round %d, %2d client(s): roost %s, PySyncObj %s writes/s"
                    % (r + 1, c, a.get("writes_per_s"), b.get("writes_per_s", "-")))
            a = rf.failover(duration, value_size)
            b = pso_run(1, duration + 3, value_size, tmp, 1.5).get("failover_s") if have_pso \
                else None
            runs["roost"]["fo"].append(a)
            runs["pso"]["fo"].append(b)
            ratios["fo"].append(_ratio(b, a))
            say("round %d, failover: roost %s s, PySyncObj %s s" % (r + 1, a, b))
    finally:
        rf.down()
    for side, out in (("roost", roost), ("pso", pso)):
        for c in (1, 16):
            out["c%d" % c] = _summary(runs[side][c])
        out["failover_s"] = _median(runs[side]["fo"])
        out["rounds_failover_s"] = runs[side]["fo"]
    med = {"writes_c1": _median(ratios[1]), "writes_c16": _median(ratios[16]),
           "failover_speedup": _median(ratios["fo"]), "rounds": rounds,
           "rounds_writes_c1": ratios[1], "rounds_writes_c16": ratios[16],
           "rounds_failover_speedup": ratios["fo"]}
    return roost, pso, med


def fsync_run(duration, value_size, tmp):
    rf = RoostFleet(tmp, fsync=True)
    try:
        if rf.error:
            return {"fsync": True, "error": rf.error}
        return {"fsync": True, "c1": rf.load(1, duration, value_size),
                "c16": rf.load(16, duration, value_size)}
    finally:
        rf.down()


# ---------------------------------------------------------------- scale


def scale_bench(sizes, tmp, preset="lan"):
    from roost.emulator import fleet

    out = {}
    for n in sizes:
        d = Path(tmp) / ("scale%d" % n)
        t0 = time.monotonic()
        try:
            snap = fleet.up(d, n, groups=max(1, n // 10), replicas=3, timeout_s=max(90, n),
                            opts={"preset": preset})
            ok = snap["health"]["healthy"]
            took = round(time.monotonic() - t0, 1)
            still = None
            later = []
            if ok:
                time.sleep(10)
                h = fleet.snapshot(fleet.load_state(d))["health"]
                still = h["healthy"]
                later = h["problems"][:3]
            out[n] = {"healthy": ok, "seconds_to_healthy": took if ok else None,
                      "healthy_10s_later": still,
                      "problems": snap["health"]["problems"][:3] + later}
        finally:
            fleet.down(d)
        print("scale %d nodes (%s timers): %s" % (n, preset, out[n]), flush=True)
        if not out[n]["healthy"]:
            break
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    ap.add_argument("--value-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of roost and PySyncObj measured in turn (medians reported)")
    ap.add_argument("--scale", default="", help="node counts to try, e.g. 10,20,40")
    ap.add_argument("--preset", choices=("lan", "wifi"), default="lan",
                    help="the nodes' timers in the --scale fleets")
    ap.add_argument("--scale-only", action="store_true",
                    help="with --scale: only the node counts, not the comparison")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--skip-fsync", action="store_true",
                    help="skip the extra roost run with fsync on every write")
    ap.add_argument("--pso-node", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--ports", help=argparse.SUPPRESS)
    ap.add_argument("--clients", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.pso_node is not None:
        pso_node(a)
        return 0
    if a.rounds < 1:
        ap.error("--rounds must be at least 1")
    if a.scale_only:
        if not a.scale:
            ap.error("--scale-only needs --scale")
        with tempfile.TemporaryDirectory() as tmp:
            scale_bench([int(x) for x in a.scale.split(",")], tmp, a.preset)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        roost, pso, ratios = interleaved(a.rounds, a.duration, a.value_size, tmp,
                                         lambda m: print(m, flush=True))
        print("roost (no fsync, as PySyncObj): %s" % json.dumps(roost, sort_keys=True),
              flush=True)
        print("pysyncobj (no fsync):           %s" % json.dumps(pso, sort_keys=True), flush=True)
        roost_fs = None
        if not a.skip_fsync:
            roost_fs = fsync_run(a.duration, a.value_size, tmp)
            print("roost (fsync every write):      %s" % json.dumps(roost_fs, sort_keys=True),
                  flush=True)
            for c in ("c1", "c16"):  # against PySyncObj's median round (not paired)
                ratios["writes_%s_fsync" % c] = _ratio(
                    (roost_fs.get(c) or {}).get("writes_per_s"),
                    (pso.get(c) or {}).get("writes_per_s"))
        print("ratios (roost / pysyncobj, the median of the rounds' ratios; failover: "
              "pysyncobj time / roost time): %s" % json.dumps(ratios, sort_keys=True),
              flush=True)
        result = {"roost": roost, "roost_fsync": roost_fs, "pysyncobj": pso, "ratios": ratios}
        if a.scale:
            result["scale"] = scale_bench([int(x) for x in a.scale.split(",")], tmp, a.preset)
        if a.json:
            print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
