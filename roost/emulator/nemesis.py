"""A nemesis schedule drawn from the seed: the faults a run suffers, then healing.

A run has a safety phase, from ``start_ms`` to ``end_ms``, in which faults of the chosen
kinds strike at random moments, and then everything is healed (partitions removed, paused
nodes resumed, crashed nodes restarted, the network back to its base model) so that a
liveness phase can check that the system recovers. At most a minority of ``targets`` is
down (crashed or paused) at any moment unless ``allow_majority_down`` is set, except in a
``power-cut``: every target's plug at once (a power strip's master switch), some of them in
the middle of a step, each back on 50 to 450 ms later. A ``wipe`` pulls a plug and erases
that node's flash (a board flashed again); it counts as down until restarted, and no other
node is wiped while a wiped one has not rebuilt (a Paxos replica still ``unsure``): losing the
flash of more replicas than the group survives is outside what it can promise.
"""

from __future__ import annotations

from typing import Any

from roost.common.prng import Prng
from roost.emulator.sim import Simulator

KINDS = ("kill", "restart", "partition", "pause", "loss", "dup", "reorder", "crash-mid-step",
         "power-cut", "wipe")


def parse_kinds(text: str | None) -> tuple[str, ...]:
    """'kill,partition' -> ('kill', 'partition'); ValueError names the unknown kind."""
    if not text:
        return ()
    kinds = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part not in KINDS:
            raise ValueError(
                "unknown nemesis %r; choose from %s" % (part, ", ".join(KINDS))
            )
        if part not in kinds:
            kinds.append(part)
    return tuple(kinds)


class Nemesis:
    def __init__(
        self,
        sim: Simulator,
        kinds: tuple[str, ...],
        targets: list[str],
        rng: Prng,
        start_ms: int,
        end_ms: int,
        mean_interval_ms: int = 400,
        allow_majority_down: bool = False,
    ) -> None:
        self.sim = sim
        self.kinds = kinds
        self.targets = sorted(targets)
        self.rng = rng
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.mean_interval_ms = max(1, mean_interval_ms)
        self.allow_majority_down = allow_majority_down
        self.base_net = sim.net.copy()
        self.log: list[tuple[int, str]] = []
        self.down: set[str] = set()
        self.paused: set[str] = set()
        self.wiped: set[str] = set()  # wiped nodes until they say they have rebuilt

    def install(self) -> None:
        """Schedule the faults and the final heal on the simulator."""
        if not self.kinds:
            return
        t = self.start_ms
        while True:
            t += 1 + self.rng.randbelow(2 * self.mean_interval_ms)
            if t >= self.end_ms:
                break
            self.sim.at(t, self._strike)
        self.sim.at(self.end_ms, self.heal_all)

    def _max_down(self) -> int:
        n = len(self.targets)
        return n if self.allow_majority_down else (n - 1) // 2

    def _strike(self, sim: Simulator) -> None:
        kind = self.rng.choice(self.kinds)
        getattr(self, "_do_" + kind.replace("-", "_"))(sim)

    def _note(self, what: str) -> None:
        self.log.append((self.sim.now_ms, what))

    def _up_targets(self) -> list[str]:
        return [n for n in self.targets if n not in self.down and n not in self.paused]

    def _do_kill(self, sim: Simulator) -> None:
        up = self._up_targets()
        if not up or len(self.down) + len(self.paused) >= self._max_down():
            return self._do_restart(sim)
        victim = self.rng.choice(up)
        sim.crash(victim)
        self.down.add(victim)
        self._note("kill " + victim)

    def _do_crash_mid_step(self, sim: Simulator) -> None:
        up = self._up_targets()
        if not up or len(self.down) + len(self.paused) >= self._max_down():
            return self._do_restart(sim)
        victim = self.rng.choice(up)
        sim.crash(victim, after_effects=self.rng.randbelow(4))
        self.down.add(victim)
        self._note("crash-mid-step " + victim)

    def _do_wipe(self, sim: Simulator) -> None:
        up = self._up_targets()
        for n in sorted(self.wiped):
            if _rebuilt(sim, n):
                self.wiped.discard(n)
        if not up or self.wiped or len(self.down) + len(self.paused) >= self._max_down():
            return self._do_restart(sim)
        victim = self.rng.choice(up)
        sim.wipe(victim)
        self.down.add(victim)
        self.wiped.add(victim)
        self._note("wipe " + victim)

    def _do_power_cut(self, sim: Simulator) -> None:
        if self.down or self.paused:  # one outage at a time: everyone back first
            self._resume_paused(sim)
            return self._do_restart(sim)
        for n in self.targets:
            k = self.rng.randbelow(5)  # 0-3: after that many effects of its next step
            sim.crash(n, after_effects=k if k < 4 else None)
            self.down.add(n)
            # each comes back on its own (boards boot at their own pace): the first ones
            # back may elect a leader before the last one's log is heard
            sim.at(sim.now_ms + 50 + self.rng.randbelow(400),
                   lambda s, n=n: self._power_on(s, n))
        self._note("power-cut " + ",".join(self.targets))

    def _power_on(self, sim: Simulator, n: str) -> None:
        if n not in self.down:
            return  # brought back already (a restart or the heal)
        sim.disarm(n)  # armed mid-step but never stepped: the plug is pulled now
        sim.crash(n)
        sim.restart(n)
        self.down.discard(n)
        self._note("power-on " + n)

    def _do_restart(self, sim: Simulator) -> None:
        for n in sorted(self.down):
            if not sim.alive(n):
                sim.restart(n)
                self._note("restart " + n)
        self.down.clear()

    def _resume_paused(self, sim: Simulator) -> None:
        for n in sorted(self.paused):
            sim.resume(n)
            self._note("resume " + n)
        self.paused.clear()

    def _do_pause(self, sim: Simulator) -> None:
        if self.paused:
            return self._resume_paused(sim)
        up = self._up_targets()
        if not up or len(self.down) >= self._max_down():
            return
        victim = self.rng.choice(up)
        sim.pause(victim)
        self.paused.add(victim)
        self._note("pause " + victim)

    def _do_partition(self, sim: Simulator) -> None:
        if sim._group or sim._isolated:
            sim.heal()
            self._note("heal")
            return
        nodes = sim.nodes()
        self.rng.shuffle(nodes)
        cut = 1 + self.rng.randbelow(max(1, len(nodes) - 1))
        groups = [sorted(nodes[:cut]), sorted(nodes[cut:])]
        sim.partition(groups)
        self._note("partition " + "/".join(",".join(g) for g in groups))

    def _do_loss(self, sim: Simulator) -> None:
        loss = 0.05 + 0.05 * self.rng.randbelow(5) if sim.net.loss == 0 else 0.0
        sim.set_net(loss=loss)
        self._note("loss %.2f" % loss)

    def _do_dup(self, sim: Simulator) -> None:
        dup = 0.2 if sim.net.dup == 0 else 0.0
        sim.set_net(dup=dup)
        self._note("dup %.2f" % dup)

    def _do_reorder(self, sim: Simulator) -> None:
        reorder = 0.3 if sim.net.reorder == 0 else 0.0
        sim.set_net(reorder=reorder, reorder_ms=max(5, 5 * self.base_net.latency_ms))
        self._note("reorder %.2f" % reorder)

    def heal_all(self, sim: Simulator) -> None:
        """End of the safety phase: every fault undone."""
        sim.heal()
        for n in sorted(self.paused):
            sim.resume(n)
        self.paused.clear()
        for n in self.targets:
            sim.disarm(n)  # a crash armed mid-step must not fire after the heal
            if not sim.alive(n):
                sim.restart(n)
        self.down.clear()
        base = self.base_net
        sim.set_net(
            loss=base.loss, dup=base.dup, reorder=base.reorder, reorder_ms=base.reorder_ms
        )
        self._note("heal-all")

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for _t, what in self.log:
            k = what.split(" ")[0]
            counts[k] = counts.get(k, 0) + 1
        return {"faults": len(self.log), "by_kind": counts}


def _rebuilt(sim: Simulator, node_id: str) -> bool:
    """A wiped node is up again and, if it is a Paxos replica, votes again."""
    host = sim.host(node_id) if sim.alive(node_id) else None
    if host is None:
        return False
    paxos = getattr(host, "paxos", None)
    if paxos is None:
        replica = getattr(host, "replica", None)
        paxos = getattr(replica, "paxos", None)
    return paxos is None or not paxos.unsure
