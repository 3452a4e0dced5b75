"""Benchmark: the smallest MicroPython heap in which an ESP32-class node runs under load.

The node is the emulated fleet's MicroPython node -- gossip member, Paxos replica, MQTT
client and simulated sensors, on the real unix port with ``-X heapsize``. Its code runs in
place from a ROMFS image, as on a board with a ROMFS partition, so the heap given is what
the node has beside its code (--code-in-ram: the .mpy code is loaded into that heap). For each heap
size: a 3-node fleet (that node and two CPython replicas of the same group), then a
closed-loop load of puts and appends over 120 keys with 200-character values (a store near
its limits, so snapshots are as large as they get) for --duration seconds. The node keeps
up when afterwards it is still running, needed no rebuild after a memory error (runtime
``memory_errors``, ``memory_rebuilds``), counted no host error and has applied every
command the other replicas applied; "no memory error" also asks for no skipped snapshot
(Paxos ``snapshot_failures``: a snapshot or a laggard's copy that did not fit, tried again).

    python bench/bench_node_heap.py                       # 256..640 KB, 60 s each
    python bench/bench_node_heap.py --heaps 448 --duration 600   # ten minutes at one size
    python bench/bench_node_heap.py --rate 50 --heaps 256,320    # a paced load: 50 ops/s
    python bench/bench_node_heap.py --role follower --heaps 384  # behind a CPython leader
    python bench/bench_node_heap.py --role member --heaps 128,160 --duration 600

--role member measures the esp32 profile's role instead: the MicroPython node is a gossip
member only (MQTT client and simulated sensors, no replica) in a fleet of --nodes (3 CPython
replicas under a paced load, the rest CPython members). Every 60 s a CPython member is killed
and restarted 10 s later, so the member's view changes. It keeps up when it is still
running, counted no memory error, rebuild or host error, sees every other node alive at the
end and kept publishing its readings.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _status(d: Path, node: str) -> dict:
    try:
        return json.loads((d / "nodes" / node / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _leader(d: Path, nodes) -> str | None:
    for n in nodes:
        g = _status(d, n).get("host", {}).get("group", {})
        if g.get("is_leader"):
            return n
    return None


def _set_role(d: Path, nodes, mpy: str, role: str) -> str | None:
    """Pause the leader for a moment until the MicroPython node has the role asked for
    (its group elects another); -> the leader at the end (None: no leader seen)."""
    from roost.emulator import chaos

    leader = None
    for _ in range(12):
        deadline = time.time() + 10
        while time.time() < deadline:
            leader = _leader(d, nodes)
            if leader is not None:
                break
            time.sleep(0.5)
        if leader is None or role == "any" or (leader == mpy) == (role == "leader"):
            return leader
        chaos.pause(d, leader)
        time.sleep(2.5)
        chaos.resume(d, leader)
        time.sleep(6)  # its status file says it no longer leads
    return leader


def _memory_report(d: Path, mpy: str) -> dict:
    """What the MicroPython node says of its heap: running, memory errors, rebuilds, host
    errors, free heap, given up. -> (those fields, its status)."""
    from roost.emulator import fleet

    st = fleet.load_state(d)
    ms = _status(d, mpy)
    stats = ms.get("stats", {})
    return {"alive": fleet.pid_alive(st["nodes"][mpy].get("pid"), fleet.node_marker(st, mpy)),
            "memory_errors": stats.get("memory_errors", 0),
            "memory_rebuilds": stats.get("memory_rebuilds", 0),
            "host_errors": stats.get("host_errors", 0), "mem_free": ms.get("mem_free"),
            "gave_up": bool(ms.get("out_of_memory"))}, ms


def _kept_up(out: dict) -> bool:
    return bool(out["alive"] and not out["memory_errors"] and not out["memory_rebuilds"]
                and not out["host_errors"])


def run_one(heap_k: int, duration: float, tmp: str, clients: int = 8, rate: float = 0,
            code_in_rom: bool = True, role: str = "any") -> dict:
    """One fleet at heap_k; returns what the MicroPython node counted and the verdict."""
    from roost.emulator import fleet
    from roost.gateway import client

    d = Path(tmp) / ("heap%d" % heap_k)
    snap = fleet.up(d, 3, micropython=1, heap_k=heap_k, groups=1, replicas=3, timeout_s=90,
                    opts={"fsync": False}, code_in_rom=code_in_rom)
    try:
        if not snap["health"]["healthy"]:
            return {"heap_k": heap_k, "keeps_up": False, "no_memory_error": False,
                    "why": "fleet not healthy: %s" % snap["health"]["problems"]}
        state = fleet.load_state(d)
        mpy = [n for n, v in state["nodes"].items() if v.get("interp") == "micropython"][0]
        first = _set_role(d, list(state["nodes"]), mpy, role)
        s = client.run_load(d, clients, duration, keys=120, mix="put:3,append:1,get:1",
                            value_size=200, rate=rate)
        time.sleep(5)  # the last commits and a status file or two
        st = fleet.load_state(d)
        applied = {}
        for n in st["nodes"]:
            g = _status(d, n).get("host", {}).get("group", {})
            applied[n] = g.get("applied", -1)
        mem, ms = _memory_report(d, mpy)
        px = ms.get("host", {}).get("group", {}).get("paxos", {})
        out = {"heap_k": heap_k, "node": mpy, "ops": s["ops"],
               "role": "leader" if first == mpy else "follower",
               "leader_at_end": _leader(d, list(st["nodes"])),
               "writes_per_s": s["writes_per_s"],
               "snapshot_failures": px.get("snapshot_failures", 0),
               "snapshots": px.get("snapshots", 0),
               "snapshots_installed": px.get("snapshots_installed", 0),
               "log_peak_bytes": px.get("log_peak_bytes"),  # beside the 36 KB reserve
               "log_new_buffers": px.get("log_new_buffers"), "applied": applied, **mem}
        try:
            log = (d / "nodes" / mpy / "node.log").read_text().splitlines()
        except OSError:
            log = []
        errs = [x for x in log if "rror" in x and not x.startswith(" ")]
        out["errors_logged"] = len(errs)
        out["last_error"] = errs[-1][:160] if errs else None
        out["keeps_up"] = _kept_up(out) and applied[mpy] == max(applied.values()) > 0
        out["no_memory_error"] = out["keeps_up"] and not out["snapshot_failures"]
        return out
    finally:
        fleet.down(d)


def run_member(heap_k: int, duration: float, tmp: str, nodes: int = 6,
               code_in_rom: bool = True) -> dict:
    """One fleet with a MicroPython gossip member at heap_k; what it counted and the verdict."""
    from roost.emulator import chaos, fleet
    from roost.gateway import client

    d = Path(tmp) / ("member%d" % heap_k)
    snap = fleet.up(d, nodes, micropython=1, heap_k=heap_k, groups=1, replicas=3,
                    timeout_s=90, opts={"fsync": False}, code_in_rom=code_in_rom)
    try:
        state = fleet.load_state(d)
        mpy = [n for n, v in state["nodes"].items() if v.get("interp") == "micropython"][0]
        if not snap["health"]["healthy"]:
            log = (d / "nodes" / mpy / "node.log").read_text().splitlines()[-1:]
            return {"heap_k": heap_k, "keeps_up": False, "no_memory_error": False,
                    "why": "fleet not healthy: %s" % snap["health"]["problems"],
                    "last_line": log[0][:160] if log else None}
        replicas = state["groups"][0][1]
        assert mpy not in replicas, "the MicroPython node should be a member only"
        others = [n for n in state["ids"] if n not in replicas and n != mpy]
        readings0 = _status(d, mpy).get("readings", 0)
        t_end = time.time() + duration
        cycles = ops = 0
        while time.time() < t_end:  # a paced load on the group; a member's plug pulled
            s = client.run_load(d, 2, min(50.0, max(1.0, t_end - time.time())), keys=16,
                                mix="put:1,get:1", rate=20)
            ops += s["ops"]
            if others and time.time() < t_end - 20:
                victim = others[cycles % len(others)]
                chaos.kill(d, victim)
                time.sleep(10)
                chaos.restart(d, victim)
                cycles += 1
        time.sleep(8)  # the restarted member is alive again in every view
        mem, ms = _memory_report(d, mpy)
        view = {m[0]: m[1] for m in ms.get("host", {}).get("members", [])}
        not_alive = [n for n in state["ids"] if view.get(n) != "alive"]
        out = {"heap_k": heap_k, "node": mpy, "nodes": nodes, "group_ops": ops,
               "member_kills": cycles, "readings": ms.get("readings", 0) - readings0,
               "not_alive_in_view": not_alive, **mem}
        out["keeps_up"] = _kept_up(out) and not not_alive and out["readings"] > 0
        out["no_memory_error"] = out["keeps_up"]
        return out
    finally:
        fleet.down(d)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heaps", default="256,320,384,448,512,640", help="KB, comma-separated")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load per heap")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rate", type=float, default=0,
                    help="operations/s in all (0: the clients as fast as the group answers)")
    ap.add_argument("--code-in-ram", action="store_true",
                    help="load the node's .mpy code into the heap (default: run it in place "
                    "from a ROMFS image, as a board with a ROMFS partition does)")
    ap.add_argument("--role", choices=("any", "leader", "follower", "member"), default="any",
                    help="make the MicroPython node lead or follow before the load (by "
                    "pausing the leader for a moment until it does; default: as elected), "
                    "or be a gossip member only (the esp32 profile's role)")
    ap.add_argument("--nodes", type=int, default=6,
                    help="with --role member: node processes in the fleet")
    a = ap.parse_args()
    heaps = [int(x) for x in a.heaps.split(",")]
    keeps = clean = None
    with tempfile.TemporaryDirectory() as tmp:
        for h in heaps:
            if a.role == "member":
                r = run_member(h, a.duration, tmp, a.nodes, not a.code_in_ram)
            else:
                r = run_one(h, a.duration, tmp, a.clients, a.rate, not a.code_in_ram, a.role)
            print(json.dumps(r, sort_keys=True), flush=True)
            if r["keeps_up"] and keeps is None:
                keeps = h
            if r["no_memory_error"] and clean is None:
                clean = h
    if a.role == "member":
        load = "%d nodes, 2 clients at 20 ops/s on the group, a member's plug pulled every 60 s" % (
            a.nodes)
    else:
        load = "%d clients, %s" % (a.clients, "%g ops/s" % a.rate if a.rate else "unpaced")
    print("smallest heap (KB) where the node keeps up: %s; with no memory error at all (no "
          "skipped snapshot either): %s (of %s; %.0f s of load each, %s; code %s; role %s)"
          % (keeps, clean, ",".join(map(str, heaps)), a.duration, load,
             "in the heap" if a.code_in_ram else "in place from ROMFS, not counted", a.role))
    return 0


if __name__ == "__main__":
    sys.exit(main())
