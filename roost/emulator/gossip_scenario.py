"""`roost sim gossip`: N gossip nodes in the deterministic simulator, measured from events.

Timeline of a run (virtual time):

* ``0 .. warm-up``: every node boots and joins through the seeds (the first three nodes);
  warm-up is 3 s plus 10 ms per node, not measured.
* measured window ``[t0, t0 + duration_s]``:
  - updates: nodes that survive the run publish a new summary (a reading) at random times
    in the first 80% of the window; ``updates_per_s`` of them fleet-wide (default: one per
    node per second, at most 25 per second), so ``updates = round(rate * 0.8 * duration)``;
  - ``kill`` random nodes crash at ``t0 + duration/3``;
  - ``partition`` cuts the network from ``t0 + duration/4`` to ``t0 + duration/2``:
    ``"A/B"`` splits the nodes into two halves (first half / second half by id),
    ``"n01,n02/n03,n04"`` lists explicit groups (unlisted nodes form one more group).
* Metrics (all from the cores' EVENT effects):
  - ``messages_per_update``: every datagram sent during the measured window (pings, acks,
    ping-reqs, gossip rounds, push-pull, all of it) divided by ``updates``. Failure detection
    is included, so the figure depends on the update rate; see docs/gossip.md.
  - ``dissemination_ms``: per update, publish time to the time the last surviving node holds
    that version or a newer one of the same origin (a newer version supersedes it);
    over updates that reached every survivor.
  - ``coverage``: delivered (survivor, update) pairs / all such pairs.
  - ``detection_s``: per killed node, kill time to the time every survivor marks it dead
    (or left); null when nothing was killed, an undetected kill makes ``max`` null.
  - ``false_positives``: nodes that were never killed yet were marked dead by some node
    (a partition longer than the suspicion timeout produces them by design).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from typing import Any

from roost.common.ids import node_name
from roost.common.prng import Prng, seed_problem
from roost.emulator.sim import NetConfig, Simulator
from roost.node.effects import EVENT
from roost.node.gossip import GossipConfig, GossipCore

_MAX_RATE = 25.0  # default fleet-wide updates per second cap


def parse_partition(spec: str, ids: list[str]) -> list[list[str]]:
    """ "A/B" -> two halves; "n01,n02/n03" -> explicit groups. ValueError with one sentence."""
    spec = spec.strip()
    if spec.upper() == "A/B":
        half = len(ids) // 2
        if half < 1:
            raise ValueError("a partition needs at least two nodes")
        return [ids[:half], ids[half:]]
    groups = []
    seen: set[str] = set()
    for part in spec.split("/"):
        names = [n.strip() for n in part.split(",") if n.strip()]
        if not names:
            raise ValueError("partition %r has an empty group" % spec)
        for n in names:
            if n not in ids:
                raise ValueError("partition names unknown node %r" % n)
            if n in seen:
                raise ValueError("partition lists node %r twice" % n)
            seen.add(n)
        groups.append(names)
    if len(groups) < 2 and len(seen) == len(ids):
        raise ValueError("partition %r needs at least two groups" % spec)
    return groups


def _pct(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return 0.0
    i = min(len(sorted_vals) - 1, max(0, math.ceil(p * len(sorted_vals)) - 1))
    return sorted_vals[i]


def _median(vals: list[float]) -> float:
    s = sorted(vals)
    n = len(s)
    if n == 0:
        return 0.0
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def run_gossip(
    nodes: int,
    seed: int,
    latency_ms: int = 100,
    loss: float = 0.0,
    duration_s: float = 30,
    kill: int = 0,
    partition: str | None = None,
    jitter_ms: int | None = None,
    progress: Callable[[float], Any] | None = None,
    updates_per_s: float | None = None,
    config: dict | None = None,
    sim_out: list | None = None,
) -> dict:
    """Run one gossip scenario; returns the summary dict described in the module doc."""
    if nodes < 2:
        raise ValueError("a gossip run needs at least 2 nodes")
    if not 0.0 <= loss < 1.0:
        raise ValueError("loss must be between 0 and 1")
    if kill < 0 or kill > nodes - 1:
        raise ValueError("kill must be between 0 and nodes - 1")
    if duration_s <= 0:
        raise ValueError("duration must be positive")
    if latency_ms < 0:
        raise ValueError("latency must not be negative")
    wall0 = time.perf_counter()
    width = max(2, len(str(nodes)))
    ids = [node_name(i + 1, width) for i in range(nodes)]
    groups = parse_partition(partition, ids) if partition else None
    jitter = latency_ms // 10 if jitter_ms is None else jitter_ms
    net = NetConfig(latency_ms=latency_ms, jitter_ms=jitter, loss=float(loss))
    sim = Simulator(seed, net=net, key="gossip-scenario")
    if sim_out is not None:
        sim_out.append(sim)
    overrides = dict(config or {})
    overrides.setdefault("seeds", ids[:3])

    def factory(node_id, channel, storage, rng, now_ms):
        return GossipCore(node_id, channel, GossipConfig(**overrides), rng, storage, now_ms)

    # what every node learned, as (time, ...)
    dead_at: dict[str, dict[str, int]] = {}  # subject -> {observer: time marked dead/left}
    ever_dead: set[str] = set()
    learned: dict[tuple[str, str], list[tuple[int, int]]] = {}  # (node, origin) -> [(t, ver)]

    def observe(now_ms: int, node_id: str, eff: tuple) -> None:
        if eff[0] != EVENT:
            return
        name, data = eff[1], eff[2]
        if name == "member":
            subject, state = data[0], data[1]
            if state == "dead" or state == "left":
                dead_at.setdefault(subject, {}).setdefault(node_id, now_ms)
                if state == "dead":
                    ever_dead.add(subject)
            elif subject in dead_at:
                dead_at[subject].pop(node_id, None)
        elif name == "summary":
            learned.setdefault((node_id, data[0]), []).append((now_ms, data[1]))

    sim.observe(observe)
    for nid in ids:
        sim.add_node(nid, factory)

    rng = Prng(seed).fork("scenario")
    warm = 3000 + 10 * nodes
    dur = int(duration_s * 1000)
    t0 = warm
    t_end = t0 + dur
    killed = sorted(rng.sample(ids, kill)) if kill else []
    survivors = [n for n in ids if n not in killed]
    t_kill = t0 + dur // 3
    rate = updates_per_s if updates_per_s is not None else min(float(nodes), _MAX_RATE)
    n_updates = max(1, int(round(rate * 0.8 * duration_s)))
    times = sorted(t0 + rng.randbelow(max(1, dur * 8 // 10)) for _ in range(n_updates))
    published: list[tuple[str, int, int]] = []  # (origin, version, t)
    counters: dict[str, int] = {}

    for i, t in enumerate(times):
        origin = survivors[rng.randbelow(len(survivors))]

        def pub(s: Simulator, origin: str = origin, i: int = i) -> None:
            value = [i, (i * 37) % 101]
            eff = s.call(origin, lambda host, now: host.publish(now, value))
            if eff is None:
                return
            counters[origin] = counters.get(origin, 0)
            for e in eff:
                if e[0] == EVENT and e[1] == "summary":
                    published.append((origin, e[2][1], s.now_ms))

        sim.at(t, pub)
    for k in killed:
        sim.at(t_kill, lambda s, k=k: s.crash(k))
    if groups:
        sim.at(t0 + dur // 4, lambda s: s.partition(groups))
        sim.at(t0 + dur // 2, lambda s: s.heal())

    sim.run_until(t0)
    sent0 = sim.stats["sent"]
    step = 1000
    t = t0
    while t < t_end:
        t = min(t_end, t + step)
        sim.run_until(t)
        if progress is not None:
            progress((t - t0) / dur)
    sent = sim.stats["sent"] - sent0

    # dissemination and coverage
    dis: list[float] = []
    delivered = 0
    pairs = 0
    for origin, ver, tp in published:
        last = tp
        ok = True
        for nid in survivors:
            pairs += 1
            if nid == origin:
                delivered += 1
                continue
            got = None
            for tl, v in learned.get((nid, origin), ()):
                if v >= ver:
                    got = tl
                    break
            if got is None:
                ok = False
            else:
                delivered += 1
                last = max(last, got)
        if ok:
            dis.append(float(last - tp))
    dis.sort()
    det: list[float] = []
    undetected = False
    for k in killed:
        seen = dead_at.get(k, {})
        if all(n in seen for n in survivors):
            det.append((max(seen[n] for n in survivors) - t_kill) / 1000.0)
        else:
            undetected = True
    detection = None
    if killed:
        detection = {
            "median": round(_median(det), 3) if det and not undetected else None,
            "max": None if undetected else round(max(det), 3),
        }
        if undetected and det and len(det) * 2 > len(killed):
            detection["median"] = round(sorted(det)[len(killed) // 2], 3)
    false_pos = sorted(n for n in ever_dead if n not in killed)
    return {
        "nodes": nodes,
        "seed": seed,
        "updates": len(published),
        "messages_per_update": round(sent / max(1, len(published)), 2),
        "dissemination_ms": {
            "median": round(_median(dis), 1),
            "p99": round(_pct(dis, 0.99), 1),
            "max": round(dis[-1], 1) if dis else 0.0,
        },
        "coverage": round(delivered / pairs, 5) if pairs else 1.0,
        "detection_s": detection,
        "false_positives": len(false_pos),
        "wall_s": round(time.perf_counter() - wall0, 3),
    }


# ---- command line --------------------------------------------------------------------


class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one sentence, exit 2, no usage dump
        raise _ArgError(message)


def add_gossip_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "gossip",
        help="simulate SWIM gossip: dissemination, detection, false positives",
        description="Run N gossip nodes in the deterministic simulator and report "
        "dissemination, failure detection and message cost.",
    )
    p.add_argument("--nodes", type=int, default=25, help="number of nodes (default 25)")
    p.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    p.add_argument("--latency-ms", type=int, default=100, help="one-way latency (default 100)")
    p.add_argument("--jitter-ms", type=int, default=None, help="jitter (default latency/10)")
    p.add_argument("--loss", type=float, default=0.0, help="message loss 0..1 (default 0)")
    p.add_argument("--duration", type=float, default=30, help="measured seconds (default 30)")
    p.add_argument("--kill", type=int, default=0, help="nodes to crash at duration/3")
    p.add_argument("--partition", default=None, help='"A/B" halves or "n01,n02/n03,n04"')
    p.add_argument("--updates-per-s", type=float, default=None, help="fleet-wide update rate")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=run_gossip_cli)
    return p


def _check_args(args: Any) -> None:
    if args.nodes < 2 or args.nodes > 5000:
        raise _ArgError("--nodes must be between 2 and 5000")
    if not 0 <= args.latency_ms <= 60000 or (args.jitter_ms is not None
                                             and not 0 <= args.jitter_ms <= 60000):
        raise _ArgError("--latency-ms and --jitter-ms must be 0 to 60000 (a minute)")
    if not 0.0 <= args.loss < 1.0:
        raise _ArgError("--loss must be a fraction from 0 up to (not including) 1")
    if not 0 < args.duration <= 3600:
        raise _ArgError("--duration must be more than 0 and at most 3600 seconds")
    if seed_problem(args.seed):
        raise _ArgError(seed_problem(args.seed))
    if args.kill < 0 or args.kill >= args.nodes:
        raise _ArgError("--kill must be between 0 and nodes - 1")
    if args.updates_per_s is not None and not 0 < args.updates_per_s <= 10000:
        raise _ArgError("--updates-per-s must be between 0 and 10000")
    if args.partition:
        width = max(2, len(str(args.nodes)))
        try:
            parse_partition(args.partition, [node_name(i + 1, width) for i in range(args.nodes)])
        except ValueError as e:
            raise _ArgError("--partition: %s" % e) from None


def run_gossip_cli(args: Any) -> int:
    try:
        _check_args(args)
    except _ArgError as e:
        print("roost sim gossip: %s" % e, file=sys.stderr)
        return 2
    bar = None
    if args.nodes >= 100 and sys.stderr.isatty():

        def bar(fraction: float) -> None:
            n = int(fraction * 40)
            sys.stderr.write("\r[%s%s] %3d%%" % ("#" * n, "." * (40 - n), int(fraction * 100)))
            sys.stderr.flush()

    res = run_gossip(
        args.nodes,
        args.seed,
        latency_ms=args.latency_ms,
        loss=args.loss,
        duration_s=args.duration,
        kill=args.kill,
        partition=args.partition,
        jitter_ms=args.jitter_ms,
        progress=bar,
        updates_per_s=args.updates_per_s,
    )
    if bar is not None:
        sys.stderr.write("\n")
    if args.json:
        print(json.dumps(res, sort_keys=True))
        return 0
    d = res["dissemination_ms"]
    print("gossip: %d nodes, seed %d, %d updates" % (res["nodes"], res["seed"], res["updates"]))
    print("  messages per update   %.2f" % res["messages_per_update"])
    print(
        "  dissemination (ms)    median %.0f  p99 %.0f  max %.0f"
        % (d["median"], d["p99"], d["max"])
    )
    print("  coverage              %.4f" % res["coverage"])
    det = res["detection_s"]
    if det is None:
        print("  detection             (nothing killed)")
    else:
        print("  detection (s)         median %s  max %s" % (det["median"], det["max"]))
    print("  false positives       %d" % res["false_positives"])
    print("  wall                  %.2f s" % res["wall_s"])
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry: python -m roost.emulator.gossip_scenario --nodes 25 ..."""
    parser = _Parser(prog="roost sim")
    sub = parser.add_subparsers(dest="cmd", parser_class=_Parser)
    add_gossip_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "gossip":
        argv = ["gossip"] + argv
    try:
        args = parser.parse_args(argv)
    except _ArgError as e:
        print("roost sim gossip: %s" % e, file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
