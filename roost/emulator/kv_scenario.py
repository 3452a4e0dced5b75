"""`roost sim kv`: a replicated key-value store under a seeded nemesis, judged linearizable.

Replicas n1..nR (Paxos ``KvReplica`` or primary/backup ``PbServer`` plus a view service
``vs``) and clients c1..cC run in the deterministic simulator. Each client issues random
operations over a small key set (so there is contention) until ``ops`` operations have
completed or been abandoned in total. With a nemesis, a safety phase suffers faults drawn
from the seed, then everything is healed and a liveness phase follows in which every client
must complete at least one operation. The client history (shared/spec/history.md) is then
checked by ``roost.emulator.linearize``.

Besides the nemesis kinds of ``roost.emulator.nemesis``, two scripted faults compare the
two replication modes (docs/primary-backup.md):
  kill-vs   at 1 s the view service dies, at 1.5 s the primary dies (in Paxos mode: the
            leader dies; there is no view service); both come back at the heal
  split-vs  from 1 s the primary cannot reach the view service (Paxos mode: the leader
            cannot reach the other replicas), and client c1 - from then on a dashboard
            that only reads - reaches only the primary; the other clients reach everyone
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from roost.common.prng import SEED_MAX, Prng, seed_problem
from roost.emulator.nemesis import KINDS, Nemesis
from roost.emulator.sim import NetConfig, Simulator
from roost.node.effects import EVENT
from roost.node.kv import KvConfig, make_replica_factory
from roost.node.kvclient import KvClient, KvClientConfig
from roost.node.paxos import PaxosConfig
from roost.node.pb import PbConfig, make_pb_factories

MODES = ("paxos", "primary-backup")
SCRIPTED = ("kill-vs", "split-vs")
ALL_KINDS = tuple(k for k in KINDS if k != "crash-mid-step") + ("crash-mid-step",) + SCRIPTED
VS_ID = "vs"
START_MS = 300  # faults start after the first election
LIVENESS_MS = 30_000  # virtual time the liveness phase may take at most
CHECK_TIMEOUT_S = 20.0


def parse_nemesis(text: str | None) -> tuple[str, ...]:
    """'kill,partition' -> ('kill', 'partition'); ValueError names an unknown kind."""
    if not text:
        return ()
    kinds: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part not in ALL_KINDS:
            raise ValueError("unknown nemesis %r; choose from %s" % (part, ", ".join(ALL_KINDS)))
        if part not in kinds:
            kinds.append(part)
    return tuple(kinds)


class _Budget:
    """Operations left to issue; one per client is held back for the liveness phase."""

    def __init__(self, ops: int, clients: int) -> None:
        self.total = ops
        self.issued = 0
        self.reserve = min(clients, ops)
        self.liveness = False

    def take(self, needs_liveness_op: bool) -> bool:
        if self.liveness:
            if self.issued < self.total or needs_liveness_op:
                self.issued += 1
                return True
            return False
        if self.issued < self.total - self.reserve:
            self.issued += 1
            return True
        return False


class _Worker:
    """A simulated client: a KvClient plus a random workload over a few keys."""

    def __init__(self, run: KvRun, node_id: str, channel, rng: Prng, now_ms: int) -> None:
        self.run = run
        self.node_id = node_id
        self.rng = rng
        self.client = KvClient(
            node_id, channel, run.members, config=run.client_config, rng=rng.fork("client"),
            now_ms=now_ms,
        )
        self.client.on_done = self._done
        self.n = 0
        self.next_op_ms: int | None = now_ms + rng.randbelow(20)
        self.done_after_heal = False
        self.read_only = False  # a dashboard-like client that only reads

    def _done(self, rec: dict) -> None:
        self.run.history.append(rec)
        if self.run.heal_ms is not None and rec["ok"] is not None:
            if rec["call"] * 1000 >= self.run.heal_ms:
                self.done_after_heal = True
        if self.run.progress is not None:
            self.run.progress(len(self.run.history), self.run.ops)

    def receive(self, now_ms: int, src: str, payload: bytes) -> list:
        out = self.client.receive(now_ms, src, payload)
        self._plan(now_ms)
        return out

    def tick(self, now_ms: int) -> list:
        out = list(self.client.tick(now_ms))
        self._plan(now_ms)
        if not self.client.busy() and self.next_op_ms is not None and now_ms >= self.next_op_ms:
            self.next_op_ms = None
            out.extend(self._issue(now_ms))
        return out

    def next_deadline_ms(self) -> int | None:
        d = self.client.next_deadline_ms()
        if self.next_op_ms is not None and (d is None or self.next_op_ms < d):
            d = self.next_op_ms
        return d

    def _plan(self, now_ms: int) -> None:
        if not self.client.busy() and self.next_op_ms is None:
            self.next_op_ms = now_ms + self.rng.randbelow(self.run.think_ms + 1)

    def _issue(self, now_ms: int) -> list:
        budget = self.run.budget
        needs = budget.liveness and not self.done_after_heal
        if not budget.take(needs):
            if not (budget.liveness and budget.issued >= budget.total and not needs):
                self.next_op_ms = now_ms + 50  # held back for the liveness phase: ask again
            return []
        self.n += 1
        rng = self.rng
        key = "k%d" % rng.randbelow(self.run.keys)
        value = "%s.%d" % (self.node_id, self.n)
        r = rng.randbelow(100)
        c = self.client
        if r < 30 or self.read_only:
            return c.submit(now_ms, "get", key)
        if r < 50:
            return c.submit(now_ms, "put", key, value=value)
        if r < 80:
            return c.submit(now_ms, "append", key, value=value + ";")
        old = None if rng.randbelow(3) == 0 else "%s.%d" % (
            "c%d" % (1 + rng.randbelow(self.run.clients)), rng.randbelow(self.n + 1)
        )
        return c.submit(now_ms, "cas", key, old=old, new=value)


class KvRun:
    """One run; ``run()`` then ``summary()`` (the JSON of ``roost sim kv``)."""

    def __init__(
        self,
        replicas: int = 3,
        clients: int = 4,
        ops: int = 200,
        seed: int = 1,
        nemesis: tuple[str, ...] | list[str] = (),
        mode: str = "paxos",
        latency_ms: int = 2,
        progress: Callable[[int, int], None] | None = None,
        keys: int = 3,
        think_ms: int = 10,
        paxos_config: Any = None,
        pb_config: PbConfig | None = None,
        kv_config: KvConfig | None = None,
        client_config: KvClientConfig | None = None,
        check: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ValueError("unknown mode %r; choose paxos or primary-backup" % (mode,))
        if replicas < 1 or clients < 1 or ops < 1 or keys < 1:
            raise ValueError("replicas, clients, ops and keys must be at least 1")
        if latency_ms < 0:
            raise ValueError("latency_ms must not be negative")
        for k in nemesis:
            if k not in ALL_KINDS:
                raise ValueError("unknown nemesis %r" % (k,))
        if "wipe" in nemesis and mode != "paxos":
            raise ValueError("the wipe nemesis applies to --mode paxos only (nothing rebuilds "
                             "a primary/backup server or view service whose flash was erased)")
        self.replicas = replicas
        self.clients = clients
        self.ops = ops
        self.seed = seed
        self.nemesis = tuple(nemesis)
        self.mode = mode
        self.latency_ms = latency_ms
        self.progress = progress
        self.keys = keys
        self.think_ms = think_ms
        self.paxos_config = paxos_config
        self.pb_config = pb_config
        self.kv_config = kv_config or KvConfig()
        self.client_config = client_config or KvClientConfig(op_timeout_ms=3000)
        self.do_check = check
        self.members = ["n%d" % (i + 1) for i in range(replicas)]
        self.client_ids = ["c%d" % (i + 1) for i in range(clients)]
        self.history: list[dict] = []
        self.heal_ms: int | None = None
        self.budget = _Budget(ops, clients)
        self.leaders: list[tuple[int, str]] = []
        self.verdict: bool | None = None
        self.check_result: Any = None
        self.liveness_ok = True
        self.stalled: list[str] = []
        self.wall_s = 0.0
        self.end_ms = 0
        self.sim: Simulator | None = None
        self.nem: Nemesis | None = None

    # ---- building -------------------------------------------------------------------

    def _build(self) -> Simulator:
        sim = Simulator(self.seed, net=NetConfig(latency_ms=self.latency_ms, jitter_ms=1))
        self.sim = sim
        sim.observe(self._observe)
        if self.mode == "paxos":
            factory = make_replica_factory(
                self.members, config=self.kv_config, paxos_config=self.paxos_config
            )
            for n in self.members:
                sim.add_node(n, factory)
        else:
            vs_f, srv_f = make_pb_factories(
                self.members, VS_ID, config=self.pb_config, kv_config=self.kv_config
            )
            sim.add_node(VS_ID, vs_f)
            for n in self.members:
                sim.add_node(n, srv_f)
        for c in self.client_ids:
            sim.add_node(c, self._client_factory)
        return sim

    def _client_factory(self, node_id, channel, storage, rng, now_ms):
        return _Worker(self, node_id, channel, rng, now_ms)

    def _observe(self, now_ms: int, node_id: str, eff: tuple) -> None:
        if eff[0] == EVENT and eff[1] == "kv.leader":
            who = eff[2]
            if not self.leaders or self.leaders[-1][1] != who:
                self.leaders.append((now_ms, who))

    def current_leader(self) -> str | None:
        sim = self.sim
        assert sim is not None
        for n in self.members:
            h = sim.host(n)
            if h is not None and h.is_leader():
                return n
        return self.leaders[-1][1] if self.leaders else None

    # ---- faults ---------------------------------------------------------------------

    def _install_faults(self, sim: Simulator, safety_ms: int) -> None:
        generic = tuple(k for k in self.nemesis if k not in SCRIPTED)
        end = START_MS + safety_ms
        targets = list(self.members) + ([VS_ID] if self.mode != "paxos" else [])
        self.nem = Nemesis(sim, generic, targets, sim.rng.fork("nemesis"), START_MS, end)
        if generic:
            self.nem.install()
        else:
            sim.at(end, self.nem.heal_all)
        sim.at(end, self._start_liveness)
        if "kill-vs" in self.nemesis:
            if self.mode == "paxos":
                sim.at(1500, lambda s: self._kill(s, self.current_leader()))
            else:
                sim.at(1000, lambda s: self._kill(s, VS_ID))
                sim.at(1500, lambda s: self._kill(s, self._pb_primary(s)))
        if "split-vs" in self.nemesis:
            sim.at(1000, self._split)

    def _kill(self, sim: Simulator, node: str | None) -> None:
        if node is not None and sim.alive(node):
            sim.crash(node)
            if self.nem is not None:
                self.nem.down.add(node)

    def _pb_primary(self, sim: Simulator) -> str | None:
        vs = sim.host(VS_ID)
        if vs is not None:
            return vs.view[1]
        for n in self.members:
            h = sim.host(n)
            if h is not None and h.is_primary():
                return n
        return None

    def _split(self, sim: Simulator) -> None:
        """Cut the primary (leader) off from the view service (the other replicas), and put
        client c1 on its side: c1 reaches only the primary; everyone else reaches all."""
        if self.mode == "paxos":
            leader = self.current_leader()
            others = [n for n in self.members if n != leader]
        else:
            leader = self._pb_primary(sim)
            others = [VS_ID]
        if leader is None:
            return
        cut = [(leader, o) for o in others]
        c1 = self.client_ids[0]
        w = sim.host(c1)
        if w is not None:
            w.read_only = True  # c1 is a dashboard on the primary's side, reading
        cut += [(c1, n) for n in self.members + [VS_ID] if n != leader and n in sim.nodes()]
        for a, b in cut:
            sim.set_link(a, b, loss=1.0)
            sim.set_link(b, a, loss=1.0)

    def _start_liveness(self, sim: Simulator) -> None:
        sim._links = {}  # scripted link cuts end with the heal
        self.heal_ms = sim.now_ms
        self.budget.liveness = True

    # ---- running --------------------------------------------------------------------

    def _workers(self) -> list[_Worker]:
        sim = self.sim
        assert sim is not None
        return [sim.host(c) for c in self.client_ids]

    def _finished(self) -> bool:
        if self.budget.issued < self.budget.total:
            return False
        ws = self._workers()
        if any(w.client.busy() for w in ws):
            return False
        if self.heal_ms is not None:
            return all(w.done_after_heal for w in ws)
        return True

    def run(self) -> KvRun:
        t0 = time.monotonic()
        sim = self._build()
        faulty = bool(self.nemesis)
        if faulty:
            safety_ms = 2000 + 15 * self.ops
            # pace the clients so their operations span the faults instead of finishing
            # before the first one strikes
            self.think_ms = max(self.think_ms, 2 * safety_ms * self.clients // self.ops)
            self._install_faults(sim, safety_ms)
            cap = START_MS + safety_ms + LIVENESS_MS
        else:
            self.budget.reserve = 0
            cap = 60_000 + 50 * self.ops
        while sim.now_ms < cap:
            sim.run_for(100)
            if (self.heal_ms is not None or not faulty) and self._finished():
                break
        self.end_ms = sim.now_ms
        if faulty:
            self.stalled = [w.node_id for w in self._workers() if not w.done_after_heal]
            self.liveness_ok = not self.stalled and self.heal_ms is not None
        else:
            self.liveness_ok = self._finished()
            if not self.liveness_ok:
                self.stalled = [w.node_id for w in self._workers() if w.client.busy()]
        if self.do_check:
            self.verdict = self.check()
        self.wall_s = time.monotonic() - t0
        return self

    def check(self) -> bool | None:
        from roost.emulator.linearize import check, parse_op

        ops = [parse_op(rec, i + 1) for i, rec in enumerate(self.sorted_history())]
        self.check_result = check(ops, timeout_s=CHECK_TIMEOUT_S)
        return self.check_result.verdict

    def sorted_history(self) -> list[dict]:
        return sorted(self.history, key=lambda r: (r["call"], r["client"]))

    def write_history(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for rec in self.sorted_history():
                f.write(json.dumps(rec, sort_keys=True) + "\n")

    def longest_outage_ms(self) -> int:
        """Longest stretch of the run in which no operation completed successfully."""
        times = sorted(r["return"] * 1000 for r in self.history if r["ok"] is True)
        edges = [0.0] + times + [float(self.end_ms)]
        return int(max(b - a for a, b in zip(edges, edges[1:])))

    def summary(self) -> dict:
        h = self.history
        ok = [r for r in h if r["ok"] is True]
        lat = sorted((r["return"] - r["call"]) * 1000 for r in ok)
        if h:
            first = min(r["call"] for r in h)
            last = max(r["return"] for r in ok) if ok else first
            span = last - first
        else:
            span = 0.0
        return {
            "ops": len(h),
            "ok": len(ok),
            "failed": sum(1 for r in h if r["ok"] is False),
            "unknown": sum(1 for r in h if r["ok"] is None),
            "throughput_ops_per_virtual_s": round(len(ok) / span, 1) if span > 0 else 0.0,
            "latency_ms": {"median": _pct(lat, 50), "p99": _pct(lat, 99)},
            "leader_changes": max(0, len(self.leaders) - 1),
            "linearizable": self.verdict,
            "seed": self.seed,
            "wall_s": round(self.wall_s, 3),
        }


def _pct(sorted_vals: list[float], p: int) -> float | None:
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, max(0, -(-p * len(sorted_vals) // 100) - 1))
    return round(sorted_vals[i], 3)


def run_kv(
    replicas: int = 3,
    clients: int = 4,
    ops: int = 200,
    seed: int = 1,
    nemesis: tuple[str, ...] | list[str] = (),
    mode: str = "paxos",
    history_path: str | None = None,
    latency_ms: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Run the scenario and return its summary (see the module docstring)."""
    run = KvRun(replicas, clients, ops, seed, nemesis, mode, latency_ms, progress).run()
    if history_path:
        run.write_history(history_path)
    return run.summary()


# ---- command line ------------------------------------------------------------------


def add_kv_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "kv",
        help="replicated key-value store under faults, checked for linearizability",
        description="Run the key-value store (Paxos or primary/backup) with clients and a "
        "seeded nemesis in the deterministic simulator, then check the history.",
    )
    p.add_argument("--replicas", type=int, default=3,
                   help="replicas (default 3; 3 survive one failure, 5 two)")
    p.add_argument("--clients", type=int, default=4, help="concurrent clients")
    p.add_argument("--ops", type=int, default=200,
                   help="operations in total (one per client kept for after the heal; a "
                   "client still without one then gets it beyond the total)")
    p.add_argument("--seed", type=int, default=None, help="seed of the whole run (default 1)")
    p.add_argument(
        "--seeds",
        default=None,
        help="A-B: run seeds A to B one after another instead of --seed; print only the "
        "failing ones with their replay command, then a summary",
    )
    p.add_argument(
        "--nemesis", default="", help="comma-separated faults: " + ",".join(ALL_KINDS)
    )
    p.add_argument("--mode", default="paxos", help="paxos or primary-backup")
    p.add_argument(
        "--unsafe-local-reads",
        action="store_true",
        help="primary-backup only, for teaching: the primary answers reads without its backup",
    )
    p.add_argument("--latency-ms", type=int, default=2, help="one-way link latency")
    p.add_argument(
        "--prefer",
        default="",
        help="paxos only: comma-separated replicas that should lead when up and caught up "
        "(as a plan's Pis beside its boards), e.g. n1",
    )
    p.add_argument("--history", default=None, help="write the client history (JSON Lines)")
    p.add_argument("--json", action="store_true", help="print one JSON summary")
    p.set_defaults(func=run_kv_cli)
    return p


def _replay(args, kinds: tuple[str, ...]) -> str:
    cmd = "roost sim kv --replicas %d --clients %d --ops %d" % (
        args.replicas, args.clients, args.ops
    )
    if kinds:
        cmd += " --nemesis " + ",".join(kinds)
    if args.mode != "paxos":
        cmd += " --mode " + args.mode
    if getattr(args, "unsafe_local_reads", False):
        cmd += " --unsafe-local-reads"
    if getattr(args, "latency_ms", 2) != 2:
        cmd += " --latency-ms %d" % args.latency_ms
    if getattr(args, "prefer", ""):
        cmd += " --prefer " + args.prefer
    return cmd + " --seed %d" % args.seed


def parse_prefer(text: str, replicas: int) -> tuple[str, ...]:
    """'n1,n2' -> ('n1', 'n2'), each one of the run's replicas n1..nR; ValueError else."""
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    members = ["n%d" % (i + 1) for i in range(replicas)]
    for n in names:
        if n not in members:
            raise ValueError("--prefer names replicas of this run (%s), not %r"
                             % (", ".join(members), n))
    return names


MAX_SWEEP = 100_000  # seeds one --seeds sweep may run


def parse_seeds(text: str) -> range:
    """'1-500' -> range(1, 501); ValueError with a sentence for anything else."""
    lo, sep, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi)
    except ValueError:
        raise ValueError("--seeds takes a range A-B of whole numbers, like 1-500") from None
    if not sep or a < 0 or b < a:
        raise ValueError("--seeds takes a range A-B with 0 <= A <= B, like 1-500")
    if b > SEED_MAX:
        raise ValueError(seed_problem(b, "--seeds' last seed"))
    if b - a + 1 > MAX_SWEEP:
        raise ValueError("--seeds runs at most %d seeds at once" % MAX_SWEEP)
    return range(a, b + 1)


def _run_args(args, kinds: tuple[str, ...], pb_config: PbConfig | None) -> KvRun:
    """The run the command line's arguments describe (its seed: args.seed), done."""
    prefer = getattr(args, "prefer", "")
    paxos_config = PaxosConfig(prefer=parse_prefer(prefer, args.replicas)) if prefer else None
    return KvRun(
        args.replicas, args.clients, args.ops, args.seed, kinds, args.mode,
        getattr(args, "latency_ms", 2), pb_config=pb_config, paxos_config=paxos_config,
    ).run()


def _sweep(args, kinds: tuple[str, ...], seeds: range, pb_config: PbConfig | None) -> int:
    """Run every seed; print the failing ones (their replay command) and a summary."""
    failed: list[int] = []
    t0 = time.perf_counter()
    for seed in seeds:
        args.seed = seed
        run = _run_args(args, kinds, pb_config)
        if run.verdict is not True or not run.liveness_ok:
            failed.append(seed)
            if run.verdict is False:
                why = "not linearizable"
            elif run.verdict is not True:
                why = "undecided (the checker ran out of time)"
            else:
                why = "clients %s stalled" % ",".join(run.stalled)
            if not args.json:
                print("seed %d: %s; replay: %s" % (seed, why, _replay(args, kinds)), flush=True)
    wall = round(time.perf_counter() - t0, 2)
    if args.json:
        print(json.dumps({"seeds": len(seeds), "first": seeds[0], "last": seeds[-1],
                          "failed": failed, "wall_s": wall}, sort_keys=True))
    elif failed:
        print("%d of %d seeds (%d-%d) failed, nemesis %s, %.1f s" % (
            len(failed), len(seeds), seeds[0], seeds[-1], ",".join(kinds) or "none", wall))
    else:
        print("%d seeds (%d-%d): every history linearizable, every client live after the "
              "heal; nemesis %s, %.1f s" % (len(seeds), seeds[0], seeds[-1],
                                           ",".join(kinds) or "none", wall))
    return 1 if failed else 0


def run_kv_cli(args) -> int:
    err = None
    kinds: tuple[str, ...] = ()
    seeds = None
    if args.replicas < 1 or args.replicas > 9:
        err = "--replicas must be between 1 and 9 (3 or 5 are usual)."
    elif args.clients < 1 or args.clients > 64:
        err = "--clients must be between 1 and 64."
    elif args.ops < 1 or args.ops > 1_000_000:
        err = "--ops must be between 1 and 1000000."
    elif args.mode not in MODES:
        err = "--mode must be paxos or primary-backup, not %r." % args.mode
    elif getattr(args, "unsafe_local_reads", False) and args.mode != "primary-backup":
        err = "--unsafe-local-reads only applies to --mode primary-backup."
    elif not 0 <= getattr(args, "latency_ms", 2) <= 60000:
        err = "--latency-ms must be 0 to 60000 (a minute)."
    elif getattr(args, "seeds", None) and args.history:
        err = "--history writes one run's history: give --seed, not --seeds."
    elif getattr(args, "seeds", None) and args.seed is not None:
        err = "give --seed (one run) or --seeds (a sweep), not both."
    elif args.seed is not None and seed_problem(args.seed):
        err = seed_problem(args.seed) + "."
    elif getattr(args, "prefer", "") and args.mode != "paxos":
        err = "--prefer applies to --mode paxos only."
    else:
        try:
            kinds = parse_nemesis(args.nemesis)
            parse_prefer(getattr(args, "prefer", ""), args.replicas)
            if getattr(args, "seeds", None):
                seeds = parse_seeds(args.seeds)
        except ValueError as e:
            err = str(e) + "."
    if err:
        print("roost sim kv: " + err, file=sys.stderr)
        return 2
    if args.seed is None:
        args.seed = 1
    pb_config = None
    if getattr(args, "unsafe_local_reads", False):
        pb_config = PbConfig(unsafe_local_reads=True)
    if seeds is not None:
        return _sweep(args, kinds, seeds, pb_config)
    run = _run_args(args, kinds, pb_config)
    if args.history:
        try:
            run.write_history(args.history)
        except OSError as e:
            print("roost sim kv: cannot write the history to %s (%s)." % (args.history,
                  e.strerror), file=sys.stderr)
            return 2
    s = run.summary()
    if args.json:
        print(json.dumps(s, sort_keys=True))
    else:
        print("kv %s: %d replicas, %d clients, seed %d, nemesis %s" % (
            args.mode, args.replicas, args.clients, args.seed, ",".join(kinds) or "none"))
        print("  ops %d: ok %d, failed %d, unknown %d" % (s["ops"], s["ok"], s["failed"],
                                                          s["unknown"]))
        lat = s["latency_ms"]
        print("  throughput %.1f ops per virtual s, latency median %s ms, p99 %s ms" % (
            s["throughput_ops_per_virtual_s"], lat["median"], lat["p99"]))
        print("  leader changes %d, longest time without a completed op %d ms" % (
            s["leader_changes"], run.longest_outage_ms()))
        if run.check_result is not None:
            for line in run.check_result.explain():
                print("  " + line)
        if not run.liveness_ok:
            print("  liveness: clients %s completed nothing after the heal" % (
                ",".join(run.stalled) or "?"))
        print("  wall %.2f s" % s["wall_s"])
    if s["linearizable"] is False or not run.liveness_ok:
        print("replay: " + _replay(args, kinds), file=sys.stderr if args.json else sys.stdout)
        return 1
    return 0
