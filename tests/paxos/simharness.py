"""Paxos groups in the deterministic simulator: a factory, a workload and the checks.
CPython only (the simulator is)."""

from __future__ import annotations

from typing import Any

from roost.emulator.sim import NetConfig, Simulator
from roost.node.effects import APPLY
from roost.node.paxos import PaxosConfig, PaxosCore
from tests.paxos.pump import CountSM


def replay(test: str, seed: int) -> str:
    return "replay: python -m pytest -q tests/paxos/test_sim.py -k %s  # seed=%d" % (test, seed)


class Group:
    """A replica group in a simulator, a client that proposes at the leader, and the
    agreement record of every APPLY."""

    def __init__(self, seed: int, ids: list[str], config: PaxosConfig | None = None,
                 net: NetConfig | None = None, members: list[str] | None = None) -> None:
        self.seed = seed
        self.ids = sorted(ids)
        self.members = sorted(members or ids)
        self.config = config or PaxosConfig.lan()
        self.sim = Simulator(seed, net=net or NetConfig(latency_ms=2, jitter_ms=1))
        self.by_index: dict[int, Any] = {}
        self.violations: list[tuple] = []
        self.applied_at: dict[Any, int] = {}  # command -> first time any replica applied it
        self.proposed: list[Any] = []
        self.sim.observe(self._observe)
        for n in self.ids:
            self.sim.add_node(n, self.factory(self.members))
        self._next = 0
        self._client_on = False

    def factory(self, members: list[str]):
        cfg = self.config

        def make(node_id, channel, storage, rng, now_ms):
            return PaxosCore(node_id, channel, members, CountSM(), config=cfg, rng=rng,
                             storage=storage, now_ms=now_ms)

        return make

    def add(self, node_id: str) -> None:
        """A new node that knows the group's first configuration (it joins as a learner)."""
        self.ids.append(node_id)
        self.ids.sort()
        self.sim.add_node(node_id, self.factory(self.members))

    def _observe(self, now_ms: int, node: str, eff: tuple) -> None:
        if eff[0] != APPLY:
            return
        idx, cmd = eff[1], eff[2]
        prev = self.by_index.get(idx)
        if prev is None:
            self.by_index[idx] = cmd
            self.applied_at.setdefault(repr(cmd), now_ms)
        elif prev != cmd:
            self.violations.append((now_ms, node, idx, prev, cmd))

    # ---- the client -----------------------------------------------------------------

    def leaders(self) -> list[str]:
        out = []
        for n in self.ids:
            h = self.sim.host(n)
            if h is not None and h.is_leader():
                out.append(n)
        return out

    def leader(self) -> str | None:
        ls = self.leaders()
        return ls[0] if len(ls) == 1 else (ls[-1] if ls else None)

    def propose(self, cmd: Any, at: str | None = None) -> bool:
        target = at or self.leader()
        if target is None:
            return False
        ok = self.call(target, lambda h, now: h.propose(now, cmd))
        if ok:
            self.proposed.append(cmd)
        return ok

    def call(self, node: str, fn) -> bool:
        """Run fn(host, now) -> (ok, effects) on a live node; the effects are carried out."""
        box = [False]

        def run(h, now):
            ok, effects = fn(h, now)
            box[0] = ok
            return effects

        self.sim.call(node, run)
        return box[0]

    def reconfigure(self, members: list[str]) -> bool:
        ld = self.leader()
        return bool(ld) and self.call(ld, lambda h, now: h.reconfigure(now, members))

    def client(self, every_ms: int, until_ms: int, burst: int = 1) -> None:
        """Propose a fresh command at the leader every every_ms until until_ms."""

        def step(sim):
            for _ in range(burst):
                self._next += 1
                self.propose(["c", self._next])
            if sim.now_ms + every_ms < until_ms:
                sim.at(sim.now_ms + every_ms, step)

        self.sim.at(self.sim.now_ms + every_ms, step)

    # ---- checks ---------------------------------------------------------------------

    def host(self, n: str) -> Any:
        return self.sim.host(n)

    def live(self) -> list[str]:
        return [n for n in self.ids if self.sim.host(n) is not None]

    def wait_leader(self, within_ms: int) -> str | None:
        end = self.sim.now_ms + within_ms
        while self.sim.now_ms < end:
            self.sim.run_for(10)
            if len(self.leaders()) == 1:
                return self.leaders()[0]
        return None

    def check_safety(self, test: str) -> None:
        assert not self.violations, "agreement violated %r; %s" % (
            self.violations[:3], replay(test, self.seed))

    def check_converged(self, test: str, members: list[str] | None = None) -> int:
        """Every live member applied the same prefix, and it holds every command that any
        replica applied (so every acknowledged proposal is everywhere)."""
        members = members or self.live()
        counts = {n: self.host(n).applied_index for n in members if self.host(n)}
        top = max(self.by_index) if self.by_index else 0
        assert set(counts.values()) == {top}, "replicas at %r, log at %d; %s" % (
            counts, top, replay(test, self.seed))
        snaps = {repr(self.host(n).sm.snapshot()) for n in counts}
        assert len(snaps) == 1, "state machines differ; %s" % replay(test, self.seed)
        return top


def replace_one_under_load(seed: int, why: str) -> tuple[Group, list[str]]:
    """A group of three under load loses a follower for good and has it replaced by n4 (the
    first step of the reconfiguration tests): the group, and the members it has now."""
    ids = ["n1", "n2", "n3"]
    g = Group(seed, ids, config=PaxosConfig(snapshot_every=100))
    g.wait_leader(1000)
    g.client(5, 6000)
    g.sim.run_for(500)
    dead = [n for n in ids if n != g.leader()][0]
    g.sim.crash(dead)
    g.add("n4")
    replaced = sorted([n for n in ids if n != dead] + ["n4"])
    assert g.reconfigure(replaced), why
    g.sim.run_for(1000)
    return g, replaced


def leader_nemesis(g: Group, rng: Any, start_ms: int, end_ms: int, mean_ms: int) -> None:
    """Faults aimed at the leader and its followers, drawn from rng: isolate a follower,
    crash a follower in the middle of its next step (after its first effect), kill the
    leader, restart one crashed node, heal; everything healed and restarted at end_ms."""
    sim = g.sim

    def heal_all(sim):
        sim.heal()
        for n in g.ids:
            if not sim.alive(n):
                sim.restart(n)

    def strike(sim):
        ld = g.leader()
        act = rng.randbelow(20)
        others = [n for n in g.live() if n != ld]
        down = [n for n in g.ids if not sim.alive(n)]
        if act < 5:
            if others:
                sim.isolate(rng.choice(others))
        elif act < 10:
            if others:
                sim.crash(rng.choice(others), after_effects=1)
        elif act < 13:
            if ld is not None:
                sim.crash(ld)
        elif act < 18:
            if down:
                sim.restart(rng.choice(down))
        else:
            sim.heal()
        t = sim.now_ms + 1 + rng.randbelow(2 * mean_ms)
        if t < end_ms:
            sim.at(t, strike)
        else:
            # an armed crash-mid-step may fire after the heal: restart again a bit later
            for t in (end_ms, end_ms + 200, end_ms + 600):
                sim.at(t, heal_all)

    sim.at(start_ms, strike)


def lost_write_faults(g: Group, rng: Any, start_ms: int, cycles: int) -> None:
    """A seeded fault pattern aimed at durability: cut one follower off, crash the other in
    the middle of its next step (after its first effect), kill the leader a little later,
    bring the crashed follower back and heal, and keep the old leader down while the two
    followers elect. Timing and targets come from rng."""
    sim = g.sim
    t = start_ms
    for _ in range(cycles):
        t += 300 + rng.randbelow(400)
        plan = {}

        def cut(sim, plan=plan):
            ld = g.leader()
            others = [n for n in g.live() if n != ld]
            if ld is None or len(others) < 2:
                return
            rng.shuffle(others)
            plan["leader"], plan["a"], plan["b"] = ld, others[0], others[1]
            sim.partition([[ld, others[1]], [others[0]]])
            sim.crash(others[1], after_effects=1)

        def kill(sim, plan=plan):
            if plan:
                sim.crash(plan["leader"])

        def back(sim, plan=plan):
            if plan:
                sim.heal()
                sim.restart(plan["b"])

        def leader_back(sim, plan=plan):
            for n in g.ids:
                if not sim.alive(n):
                    sim.restart(n)

        sim.at(t, cut)
        t += 5 + rng.randbelow(30)
        sim.at(t, kill)
        t += 5 + rng.randbelow(30)
        sim.at(t, back)
        t += 700 + rng.randbelow(300)
        sim.at(t, leader_back)
