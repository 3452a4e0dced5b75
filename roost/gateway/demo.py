"""``roost demo``: the first thing a newcomer runs.

By default a live fleet of real processes (``demo_live.py``). With ``--sim``, this module: a
narrated, simulated fleet of sensor nodes gossiping in virtual time: two plugs are pulled,
one comes back. It says who noticed, how fast, and whether every reading still arrived; the
same seed tells the same story every time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from roost.common.ids import node_name
from roost.common.prng import seed_problem
from roost.emulator.sim import NetConfig, Simulator
from roost.node.effects import EVENT
from roost.node.gossip import GossipConfig, GossipCore

_PUBLISH_EVERY_MS = 2000


class _Fleet:
    """Gossip nodes in the simulator, with what the narration needs to know."""

    def __init__(self, nodes: int, seed: int, latency_ms: int, loss: float) -> None:
        self.ids = [node_name(i + 1) for i in range(nodes)]
        self.sim = Simulator(seed, net=NetConfig(latency_ms=latency_ms, jitter_ms=latency_ms // 2,
                                                 loss=loss))
        self.config = GossipConfig()
        self.views: dict[tuple[str, str], str] = {}  # (observer, subject) -> state
        self.first_seen: dict[tuple[str, int], dict[str, int]] = {}  # (origin, version) -> t
        self.published: dict[tuple[str, int], int] = {}
        self.notices: dict[str, list[tuple[int, str, str]]] = {}  # subject -> (t, observer, state)
        self.sim.observe(self._on_effect)
        seeds = self.ids[:1]
        for n in self.ids:
            self.sim.add_node(n, self._factory(seeds), start=False)

    def _factory(self, seeds: list[str]):
        def make(node_id, channel, storage, rng, now_ms):
            board = "esp32" if node_id[-1] in "13579" else "pi4"
            config = GossipConfig(seeds=tuple(s for s in seeds if s != node_id), board=board,
                                  domain="shelf")
            return GossipCore(node_id, channel, config=config, rng=rng, storage=storage,
                              now_ms=now_ms)

        return make

    def _on_effect(self, t: int, node: str, eff: tuple) -> None:
        if eff[0] != EVENT:
            return
        if eff[1] == "member":
            subject, state = eff[2][0], eff[2][1]
            self.views[(node, subject)] = state
            if state in ("suspect", "dead"):
                self.notices.setdefault(subject, []).append((t, node, state))
        elif eff[1] == "summary":
            origin, version = eff[2][0], eff[2][1]
            self.first_seen.setdefault((origin, version), {}).setdefault(node, t)

    def boot(self, t: int) -> None:
        for i, n in enumerate(self.ids):
            self.sim.at(t + 50 * i, lambda sim, n=n: self._start(n))

    def _start(self, n: str) -> None:
        self.sim.restart(n)
        self.sim.call(n, lambda core, now: core.join(now))

    def publish_all(self, sim: Simulator) -> None:
        for n in self.ids:
            if sim.alive(n):
                reading = [round(18 + (sim.rng.randbelow(60) / 10), 1)]
                effects = sim.call(n, lambda core, now, r=reading: core.publish(now, r))
                if effects is not None:
                    core = sim.host(n)
                    version = core.summaries()[n][0]
                    self.published[(n, version)] = sim.now_ms
        sim.at(sim.now_ms + _PUBLISH_EVERY_MS, self.publish_all)

    def live(self) -> list[str]:
        return [n for n in self.ids if self.sim.alive(n)]

    def all_see(self, subject: str, states: tuple[str, ...]) -> bool:
        """Every live node other than subject holds it in one of states (and some do)."""
        others = [o for o in self.live() if o != subject]
        return bool(others) and all(self.views.get((o, subject)) in states for o in others)

    def who_sees(self, subject: str, state: str) -> list[str]:
        return [o for o in self.live() if o != subject and self.views.get((o, subject)) == state]


def _wait(fleet: _Fleet, cond, limit_ms: int, step_ms: int = 100) -> int | None:
    """Run until cond() holds (checked every step); the time it first held, or None."""
    sim = fleet.sim
    end = sim.now_ms + limit_ms
    while sim.now_ms < end:
        if cond():
            return sim.now_ms
        sim.run_for(step_ms)
    return sim.now_ms if cond() else None


def run_demo(nodes: int = 9, seed: int = 1, latency_ms: int = 5, loss: float = 0.0,
             say=print) -> dict[str, Any]:
    """Tell the story; return the figures it told."""
    wall0 = time.monotonic()
    fleet = _Fleet(nodes, seed, latency_ms, loss)
    sim = fleet.sim
    period_s = fleet.config.probe_interval_ms / 1000
    say("roost demo --sim: %d simulated sensor nodes gossip in virtual time (seed %d)."
        % (nodes, seed))
    say("Each node probes one peer every %.1f s and shares its latest reading with everyone."
        % period_s)
    say("")
    fleet.boot(0)
    sim.at(1000, fleet.publish_all)

    def stamp(t: int) -> str:
        return "t=%6.1fs" % (t / 1000)

    t = _wait(fleet, lambda: len(fleet.live()) == nodes
              and all(fleet.all_see(n, ("alive",)) for n in fleet.ids), 20000)
    result: dict[str, Any] = {"nodes": nodes, "seed": seed, "converged_s": None, "pulls": []}
    if t is None:
        say("The fleet did not converge within 20 s; something is wrong.")
        return result
    result["converged_s"] = t / 1000
    say("%s  all %d nodes see each other alive" % (stamp(t), nodes))

    victims = [fleet.ids[len(fleet.ids) // 2], fleet.ids[-2]]
    comeback = victims[0]
    for victim in victims:
        sim.run_for(4000)
        pulled = sim.now_ms
        sim.crash(victim)
        say("%s  PLUG PULLED on %s" % (stamp(pulled), victim))
        fleet.notices[victim] = []
        _wait(fleet, lambda v=victim: bool(fleet.notices[v]), 30000, 50)
        first = None
        if fleet.notices[victim]:
            first, noticer, state = fleet.notices[victim][0]
            say("%s  %s noticed first: its probe of %s went unanswered, so %s is %s "
                "(%.1f s after the pull)" % (stamp(first), noticer, victim, victim, state,
                                             (first - pulled) / 1000))
        dead = _wait(fleet, lambda v=victim: fleet.all_see(v, ("dead",)), 60000, 50)
        entry = {"node": victim, "pulled_s": pulled / 1000,
                 "first_noticed_s": None if first is None else (first - pulled) / 1000,
                 "all_marked_dead_s": None if dead is None else (dead - pulled) / 1000}
        result["pulls"].append(entry)
        if dead is None:
            say("%s  not every node marked %s dead within 60 s" % (stamp(sim.now_ms), victim))
        else:
            say("%s  all %d live nodes mark %s dead: detected in %.1f s (%.1f probe periods)"
                % (stamp(dead), len(fleet.live()), victim, (dead - pulled) / 1000,
                   (dead - pulled) / 1000 / period_s))

    sim.run_for(3000)
    back = sim.now_ms
    fleet._start(comeback)
    say("%s  %s is plugged back in; it reboots from its flash and rejoins" % (stamp(back),
                                                                            comeback))
    rejoined = _wait(fleet, lambda: fleet.all_see(comeback, ("alive",)), 30000, 50)
    result["rejoin_s"] = None if rejoined is None else (rejoined - back) / 1000
    if rejoined is not None:
        say("%s  every live node sees %s alive again (%.1f s)" % (stamp(rejoined), comeback,
                                                                 (rejoined - back) / 1000))
    sim.run_for(6000)

    # Did every reading published by a node reach every node that was live throughout?
    live = set(fleet.live())
    delivered = total = 0
    latencies: list[int] = []
    for (origin, version), t_pub in sorted(fleet.published.items()):
        if t_pub > sim.now_ms - 5000:
            continue  # too recent to judge
        seen = fleet.first_seen.get((origin, version), {})
        for n in sorted(live):
            if n == origin:
                continue
            total += 1
            t_seen = _first_seen_at_or_after(fleet, origin, version, n)
            if t_seen is not None:
                delivered += 1
                latencies.append(t_seen - t_pub)
        del seen
    latencies.sort()
    coverage = delivered / total if total else 1.0
    result["readings"] = len(fleet.published)
    result["coverage"] = coverage
    result["reading_latency_ms_median"] = latencies[len(latencies) // 2] if latencies else None
    say("")
    say("Readings: %d published; %.1f%% of (reading, live node) pairs arrived%s."
        % (len(fleet.published), 100 * coverage,
           "" if not latencies else ", median %.2f s after publishing"
           % (latencies[len(latencies) // 2] / 1000)))
    say("Messages: %d sent, %d lost to pulled plugs. Virtual time %.0f s in %.1f s of wall time."
        % (sim.stats["sent"], sim.stats["dropped_dead"], sim.now_ms / 1000,
           time.monotonic() - wall0))
    say("Next: 'roost sim gossip --nodes 25 --kill 2 --loss 0.1' measures it at scale.")
    result["wall_s"] = round(time.monotonic() - wall0, 3)
    return result


def _first_seen_at_or_after(fleet: _Fleet, origin: str, version: int, node: str) -> int | None:
    """When node first held this version of origin's reading (or a newer one)."""
    best = None
    for (o, v), seen in fleet.first_seen.items():
        if o == origin and v >= version and node in seen:
            t = seen[node]
            if best is None or t < best:
                best = t
    return best


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="a live fleet on this machine: plugs are pulled under load, the outcome narrated",
        description="Start a fleet of real node processes on this machine (an embedded MQTT "
        "broker, CPython nodes, MicroPython nodes when micropython is installed), write to its "
        "replicated store while plugs are pulled, and narrate what happened: writes lost, "
        "failover, detection, readings. No broker or board needed; everything started is "
        "stopped at the end. --sim tells the same story in the simulator, in virtual time.",
    )
    p.add_argument("--nodes", type=int, default=None, help="fleet size (default 5; 9 with --sim)")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the load's operations (with --sim: of the whole simulation); "
                   "default 1")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p.add_argument("--sim", action="store_true",
                   help="the simulated fleet instead: sensor nodes in virtual time, replayable "
                   "from --seed, no process started (roost/gateway/demo.py)")
    p.add_argument("--live", action="store_true", help=argparse.SUPPRESS)  # the default now
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of load (default 18; not with --sim)")
    p.set_defaults(handler=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    if args.sim and args.live:
        raise ValueError("--sim and --live exclude each other: the live fleet is the default")
    if seed_problem(args.seed):
        raise ValueError(seed_problem(args.seed))
    if not args.sim:
        from roost.gateway import demo_live

        return demo_live.run_cli(args)
    if args.duration is not None:
        raise ValueError("--duration is for the live demo: the simulated one (--sim) runs "
                         "until its story is told")
    if args.nodes is None:
        args.nodes = 9
    if not 4 <= args.nodes <= 200:
        raise ValueError("--nodes must be between 4 and 200")
    if args.json:
        result = run_demo(args.nodes, args.seed, say=lambda *a: None)
        print(json.dumps(result, sort_keys=True))
    else:
        result = run_demo(args.nodes, args.seed, say=lambda s="": print(s, flush=True))
    ok = result.get("converged_s") is not None and all(
        p["all_marked_dead_s"] is not None for p in result["pulls"])
    if not ok:
        print("roost demo --sim: the fleet did not behave as expected (seed %d)" % args.seed,
              file=sys.stderr)
    return 0 if ok else 1
