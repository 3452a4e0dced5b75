"""``roost chaos ...``: pull plugs on a running emulated fleet. CPython-only.

    roost chaos kill|restart|pause|resume NODE --dir DIR   SIGKILL / start again / SIGSTOP / SIGCONT
    roost chaos wipe NODE --dir DIR                         SIGKILL, erase its flash, start again
    roost chaos partition A,B/C,D --dir DIR                 nodes in different sides stop hearing
    roost chaos heal --dir DIR                              every partition and loss removed
    roost chaos loss NODE RATE --dir DIR                    NODE loses RATE (0..1) of its datagrams
    roost chaos broker kill|restart --dir DIR
    roost chaos run --duration S --seed N --dir DIR         a seeded nemesis mixing them

Without root, partitions and loss go through the fault switch of each node (its
``control.json``: peers it neither sends to nor hears from, and a loss rate; the node reads
it every 250 ms). A network-namespace backend (veth links pulled down, ``tc netem``) can
take over the same verbs: ``BACKENDS`` maps a name to a class with ``partition(sides)``,
``heal()`` and ``loss(node, rate)``; ``roost.emulator.netns`` registers itself there.
Nodes not named in a partition keep talking to everyone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from roost.common.prng import Prng, seed_problem
from roost.emulator.fleet import (
    FleetError,
    broker_kill,
    broker_marker,
    broker_restart,
    emulated_state,
    kill_pid,
    load_state,
    node_marker,
    node_pid,
    pid_alive,
    pid_paused,
    refuse_if_stopped,
    save_state,
    signal_pid,
    snapshot,
    start_node,
    state_lock,
)
from roost.emulator.lifeline import raise_keyboard_interrupt


class FaultSwitch:
    """Partitions and loss through the nodes' control files (no root needed)."""

    def __init__(self, d: str | Path) -> None:
        self.dir = Path(d).resolve()
        self.state = load_state(self.dir)

    def _control(self, node: str) -> Path:
        return Path(self.state["nodes"][node]["dir"]) / "control.json"

    def read(self, node: str) -> dict[str, Any]:
        try:
            obj = json.loads(self._control(node).read_text())
            return obj if isinstance(obj, dict) else {}
        except (OSError, ValueError):
            return {}

    def write(self, node: str, blocked: list[str], loss: float) -> None:
        p = self._control(node)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps({"blocked": sorted(set(blocked)), "loss": loss}))
        tmp.replace(p)

    def partition(self, sides: list[list[str]]) -> None:
        side_of = {}
        for i, side in enumerate(sides):
            for n in side:
                side_of[n] = i
        for n in self.state["ids"]:
            cur = self.read(n)
            if n in side_of:
                blocked = [m for m in side_of if side_of[m] != side_of[n]]
            else:
                blocked = []
            self.write(n, blocked, cur.get("loss", 0))

    def heal(self) -> None:
        for n in self.state["ids"]:
            self.write(n, [], 0)

    def loss(self, node: str, rate: float) -> None:
        cur = self.read(node)
        self.write(node, cur.get("blocked", []), rate)

    def sides(self) -> list[list[str]] | None:
        """The partition in force (each side with the nodes no one cuts), None without one."""
        ids = self.state["ids"]
        blocked = {n: set(self.read(n).get("blocked") or []) for n in ids}
        out: list[list[str]] = []
        for n in ids:
            side = [m for m in ids if m not in blocked[n]]
            if blocked[n] and side not in out:
                out.append(side)
        return out or None

    def losses(self) -> dict[str, float]:
        rates = {n: float(self.read(n).get("loss") or 0) for n in self.state["ids"]}
        return {n: r for n, r in rates.items() if r}


class NetnsFaults:
    """Root mode (``roost emulate up --netns``): real links and real loss on the fabric.

    A side of one node is isolated by pulling its cable (its bridge port goes down, the
    node sees NO-CARRIER); other cuts are frames dropped between bridge ports (nftables);
    loss is ``tc netem`` on both ends of the node's veth, or the fabric's nftables fallback
    when the kernel has no netem."""

    def __init__(self, d: str | Path) -> None:
        from roost.emulator.netns import Fabric, NetnsError

        self.dir = Path(d).resolve()
        self.state = load_state(self.dir)
        ns = self.state.get("netns")
        if not ns:
            raise FleetError("the fleet in %s does not run in network namespaces "
                             "(start it with 'roost emulate up --netns')" % self.dir)
        try:
            self.fab = Fabric.attach(ns["state_file"])
        except NetnsError as e:
            raise FleetError(str(e)) from None

    def partition(self, sides: list[list[str]]) -> None:
        singles = [s[0] for s in sides if len(s) == 1]
        rest = [s for s in sides if len(s) > 1]
        # the clients' host ("gw") stays on every side: a cut between nodes, not between the
        # store and its clients (a single cut-off node has its cable pulled, below)
        self.fab.partition(rest if len(rest) > 1 else [], everywhere=("gw",))
        for n in sorted(self.fab.down - set(singles)):
            self.fab.link_up(n)
        for n in singles:
            self.fab.link_down(n)

    def heal(self) -> None:
        self.fab.heal()

    def loss(self, node: str, rate: float) -> None:
        self.fab.loss(node, rate)

    def sides(self) -> list[list[str]] | None:
        """The partition in force (a node whose cable is out alone), None without one."""
        ids = self.state["ids"]
        groups = [[n for n in g if n in ids] for g in self.fab.groups] or [ids]
        out = [[n for n in g if n not in self.fab.down] for g in groups]
        out = [g for g in out if g] + [[n] for n in sorted(self.fab.down) if n in ids]
        return out if len(out) > 1 else None

    def losses(self) -> dict[str, float]:
        return {n: r for n, r in self.fab.loss_rate.items() if n in self.state["ids"] and r}


BACKENDS: dict[str, type] = {"switch": FaultSwitch, "netns": NetnsFaults}


def _backend(d: str | Path, name: str | None = None) -> Any:
    if name is None:  # the fleet's own kind: namespaces when it runs in them
        name = "netns" if load_state(d).get("netns") else "switch"
    if name not in BACKENDS:
        raise FleetError("unknown fault backend %r (known: %s)" % (name, ", ".join(BACKENDS)))
    return BACKENDS[name](d)


def _node(state: dict[str, Any], node: str) -> str:
    if node not in state["nodes"]:
        raise FleetError("no node %r in this fleet (nodes: %s)" % (node, ", ".join(state["ids"])))
    return node


# ---------------------------------------------------------------- verbs


def kill(d: str | Path, node: str) -> bool:
    d = Path(d).resolve()
    _node(load_state(d), node)
    with state_lock(d):
        state = load_state(d)
        info = state["nodes"][node]
        ok = kill_pid(node_pid(state, node), node_marker(state, node))
        info["pid"] = None
        save_state(d, state)
    return ok


def restart(d: str | Path, node: str) -> int:
    """Start a node again from its own directory (kills it first if it still runs)."""
    d = Path(d).resolve()
    _node(load_state(d), node)
    with state_lock(d):
        state = load_state(d)
        info = state["nodes"][node]
        if info.get("interp") == "board":  # before the kill: it was pulled, then refused
            raise FleetError("%s is a flashed board: power it up again (roost board serve), "
                             "the fleet does not start boards" % node)
        if pid_alive(info.get("pid"), node_marker(state, node)):
            kill_pid(info["pid"], node_marker(state, node))
        return start_node(d, state, node)


def wipe(d: str | Path, node: str) -> int:
    """Pull a node's plug, erase its flash (the directory it keeps its state in) and start
    it again: a board replaced by a spare under the same id, or a Pi whose data directory
    was deleted. A Paxos replica then rebuilds before it votes (docs/paxos.md). -> its pid."""
    d = Path(d).resolve()
    state = load_state(d)
    _node(state, node)
    if state["nodes"][node].get("interp") == "board":
        raise FleetError("%s is a flashed board, not a process of this fleet: roost flash "
                         "--firmware erases a board" % node)
    with state_lock(d):
        refuse_if_stopped(d, load_state(d))
        kill(d, node)
        shutil.rmtree(Path(state["nodes"][node]["dir"]) / "flash", ignore_errors=True)
        return start_node(d, load_state(d), node)


MAX_OFF_S = 600.0


def power_cut(d: str | Path, off_s: float = 1.0) -> dict[str, Any]:
    """The power strip's master switch: every node the fleet started loses power at once
    (SIGKILL to all, then each reaped), and after off_s seconds all start again from their
    own directories. The broker and the gateway stay on (the kit's gateway Pi has its own
    supply); a flashed board is not on the fleet's switch. -> what was cut and restarted."""
    if not 0 <= off_s <= MAX_OFF_S:
        raise FleetError("--off must be between 0 and %d seconds" % MAX_OFF_S)
    d = Path(d).resolve()
    with state_lock(d):
        state = load_state(d)
        ids = [n for n in state["ids"] if state["nodes"][n].get("interp") != "board"]
        cut = []
        for n in ids:  # every plug within a moment...
            if signal_pid(state["nodes"][n].get("pid"), signal.SIGKILL, node_marker(state, n)):
                cut.append(n)
        for n in cut:  # ...then wait until each process is gone
            kill_pid(state["nodes"][n]["pid"], node_marker(state, n))
        for n in ids:
            state["nodes"][n]["pid"] = None
        save_state(d, state)
    time.sleep(off_s)
    with state_lock(d):
        state = load_state(d)  # stopped while the power was off: start_node refuses
        pids = {n: start_node(d, state, n) for n in ids}
    return {"cut": cut, "restarted": pids, "off_s": off_s,
            "boards": [n for n in state["ids"] if n not in ids]}


def _wait_paused(pid: int, paused: bool) -> None:
    """A signal takes a moment to stop or wake a process: wait (at most 1 s) until /proc
    says so, so that the verb that follows sees the state this one made."""
    deadline = time.monotonic() + 1.0
    while pid_paused(pid) != paused and time.monotonic() < deadline:
        time.sleep(0.01)


def pause(d: str | Path, node: str) -> bool:
    """SIGSTOP the node: True if it ran and is now paused (False: not running, or paused
    already)."""
    state = load_state(d)
    _node(state, node)
    pid = state["nodes"][node].get("pid")
    if pid_paused(pid):
        return False
    if not signal_pid(pid, signal.SIGSTOP, node_marker(state, node)):
        return False
    _wait_paused(pid, True)
    return True


def resume(d: str | Path, node: str) -> bool:
    """SIGCONT the node: True if it was paused and now runs (False: not running, or not
    paused)."""
    state = load_state(d)
    _node(state, node)
    pid = state["nodes"][node].get("pid")
    if not pid_paused(pid):
        return False
    if not signal_pid(pid, signal.SIGCONT, node_marker(state, node)):
        return False
    _wait_paused(pid, False)
    return True


def _why_not(d: str | Path, verb: str, node: str) -> str:
    """What a chaos verb that changed nothing says (its result was False)."""
    state = load_state(d)
    info = state["nodes"][node]
    if not pid_alive(info.get("pid"), node_marker(state, node)):
        return "%s is not running: nothing to %s" % (node, verb)
    return "%s was %s" % (node, "paused already" if verb == "pause" else "not paused")


def parse_sides(text: str, ids: list[str]) -> list[list[str]]:
    sides = [[n.strip() for n in side.split(",") if n.strip()] for side in text.split("/")]
    if len(sides) < 2 or any(not s for s in sides):
        raise FleetError("a partition is sides separated by '/', like n01,n02/n03,n04,n05")
    seen: set[str] = set()
    for side in sides:
        for n in side:
            if n not in ids:
                raise FleetError("no node %r in this fleet (nodes: %s)" % (n, ", ".join(ids)))
            if n in seen:
                raise FleetError("node %s is on two sides of the partition" % n)
            seen.add(n)
    return sides


def partition(d: str | Path, text: str, backend: str | None = None) -> list[list[str]]:
    b = _backend(d, backend)
    sides = parse_sides(text, b.state["ids"])
    b.partition(sides)
    return sides


def faults_now(d: str | Path, losses: bool = True, backend: str | None = None) -> str:
    """The partition (and losses) in force, in words ("" for none): 'n01,n02 | n03,n04,n05'."""
    b = _backend(d, backend)
    parts = []
    sides = b.sides()
    if sides:
        common = set(sides[0]).intersection(*sides[1:])
        text = " | ".join(",".join(n for n in s if n not in common) for s in sides)
        parts.append(text + (" (%s hear every side)" % ",".join(sorted(common)) if common else ""))
    if losses:
        parts += ["%s loses %d%% of its datagrams" % (n, round(r * 100))
                  for n, r in sorted(b.losses().items())]
    return "; ".join(parts)


def heal(d: str | Path, backend: str | None = None) -> None:
    _backend(d, backend).heal()


def loss(d: str | Path, node: str, rate: float, backend: str | None = None) -> None:
    b = _backend(d, backend)
    _node(b.state, node)
    if not 0 <= rate <= 1:
        raise FleetError("a loss rate is between 0 and 1 (0.2 = one datagram in five)")
    b.loss(node, rate)


# ---------------------------------------------------------------- the nemesis


_CATCH_UP_S = 5.0  # a node restarted or resumed by the nemesis counts as out this long


def groups_keep_majority(groups: list, out: set[str],
                         sides: list[list[str]] | None = None) -> bool:
    """True when every replica group still has a majority of its members up (not in out)
    and able to reach each other: on one side of the partition, if there is one."""
    for _name, members in groups:
        need = len(members) // 2 + 1
        for side in sides or [members]:
            if sum(1 for m in members if m in side and m not in out) >= need:
                break
        else:
            return False
    return True


def nemesis(d: str | Path, duration_s: float, seed: int, interval_s: float = 2.0,
            say=None, backend: str | None = None) -> list[dict[str, Any]]:
    """A seeded mix of faults for duration_s seconds; every fault is undone at the end.

    At most a minority of each replica group is down or cut off at any time, so the
    store stays available (the point is to show it does)."""
    say = say or (lambda m: None)
    d = Path(d).resolve()
    state = load_state(d)
    # the nodes the fleet started: a joined board is on no switch of this machine
    ids = [n for n in state["ids"] if state["nodes"][n].get("interp") != "board"]
    rng = Prng(seed)
    log: list[dict[str, Any]] = []
    down: set[str] = set()  # what this run pulled, and undoes at the end
    paused: set[str] = set()
    snap = snapshot(state)  # faults already in place count against the budget too
    already = {n for n in state["ids"] if snap["nodes"][n]["process"] != "running"}
    t0 = time.monotonic()
    t_end = t0 + duration_s

    def record(what: str, **kw: Any) -> None:
        ev = {"t": round(time.monotonic() - t0, 3), "fault": what}
        ev.update(kw)
        log.append(ev)
        say("%7.2fs %s %s" % (ev["t"], what, " ".join("%s=%s" % kv for kv in sorted(kw.items()))))

    # the partition in force (None: healed); one set before the run counts against the budget
    sides: list[list[str]] | None = _backend(d, backend).sides()
    back_at: dict[str, float] = {}  # node -> when it was restarted or resumed

    def out_now() -> set[str]:
        """Down, paused, or back for less than _CATCH_UP_S: a node just restarted still
        boots and catches up, and its group is one short until it has."""
        now = time.monotonic()
        fresh = {n for n, t in back_at.items() if now - t < _CATCH_UP_S}
        return down | paused | already | fresh

    def group_budget_ok(extra: str) -> bool:
        out = out_now() | {extra}
        return groups_keep_majority(state["groups"], out, sides) and len(out) < len(ids)

    broker_up = True
    managed = bool((state.get("broker") or {}).get("managed"))
    try:
        while time.monotonic() < t_end:
            choice = rng.randbelow(7)
            if choice in (0, 2):  # kill or pause a node whose group keeps its majority
                take, into, name = (kill, down, "kill") if choice == 0 else (pause, paused, "pause")
                cands = [n for n in ids if n not in down | paused | already
                         and group_budget_ok(n)]
                if cands:
                    n = cands[rng.randbelow(len(cands))]
                    into.add(n)  # before the signal: a Ctrl-C in between still undoes it
                    take(d, n)
                    record(name, node=n)
            elif choice in (1, 3) and (down if choice == 1 else paused):
                back, out_of, name = ((restart, down, "restart") if choice == 1
                                      else (resume, paused, "resume"))
                n = sorted(out_of)[rng.randbelow(len(out_of))]
                back(d, n)
                out_of.discard(n)
                back_at[n] = time.monotonic()
                record(name, node=n)
            elif choice == 4:
                shuffled = list(ids)
                rng.shuffle(shuffled)
                k = 1 + rng.randbelow(max(1, (len(ids) - 1) // 2))
                cut = [sorted(shuffled[:k]), sorted(shuffled[k:])]
                if groups_keep_majority(state["groups"], out_now(), cut):
                    _backend(d, backend).partition(cut)
                    sides = cut
                    record("partition", sides="/".join(",".join(s) for s in cut))
            elif choice == 5:
                if rng.chance(1, 2):
                    _backend(d, backend).heal()
                    sides = None
                    record("heal")
                else:
                    n = ids[rng.randbelow(len(ids))]
                    rate = (1 + rng.randbelow(3)) / 10
                    loss(d, n, rate, backend)
                    record("loss", node=n, rate=rate)
            elif choice == 6 and managed:
                broker_up = not broker_up  # first: a Ctrl-C in between still undoes it
                if not broker_up:
                    broker_kill(d)
                    record("broker_kill")
                else:
                    broker_restart(d)
                    record("broker_restart")
            left = t_end - time.monotonic()
            time.sleep(max(0.0, min(interval_s * (0.5 + rng.random()), left)))
    finally:  # every step tried, whatever another one raised (a fleet stopped meanwhile)
        undo = [(lambda n=n: resume(d, n)) for n in sorted(paused)]
        undo += [(lambda n=n: restart(d, n)) for n in sorted(down)]
        undo.append(lambda: _backend(d, backend).heal())
        if not broker_up:
            undo.append(lambda: broker_restart(d))
        failed = []
        for step in undo:
            try:
                step()
            except (OSError, ValueError, RuntimeError) as e:  # FleetError, NetnsError: go on
                failed.append(str(e))
        record("healed_all", **({"failed": "; ".join(failed)} if failed else {}))
    return log


# ---------------------------------------------------------------- command line


def _chaos_cmd(args: argparse.Namespace) -> int:
    verb = args.chaos_command
    d = args.dir
    emulated_state(d, running=True)
    if verb == "run" and not (args.duration > 0 and args.interval > 0):
        raise ValueError("--duration and --interval must be positive seconds")
    if verb == "run" and seed_problem(args.seed):
        raise ValueError(seed_problem(args.seed))
    out: dict[str, Any] = {"action": verb}
    if verb == "kill":
        out["killed"] = kill(d, args.node)
        out["node"] = args.node
        if not out["killed"]:
            out["note"] = "%s was not running" % args.node
    elif verb == "restart":
        out["pid"] = restart(d, args.node)
        out["node"] = args.node
    elif verb == "wipe":
        out["pid"] = wipe(d, args.node)
        out["node"] = args.node
    elif verb == "pause":
        out["paused"] = pause(d, args.node)
        out["node"] = args.node
        if not out["paused"]:
            out["note"] = _why_not(d, "pause", args.node)
    elif verb == "resume":
        out["resumed"] = resume(d, args.node)
        out["node"] = args.node
        if not out["resumed"]:
            out["note"] = _why_not(d, "resume", args.node)
    elif verb == "power-cut":
        out.update(power_cut(d, args.off))
    elif verb == "partition":
        before = faults_now(d, losses=False)
        out["sides"] = partition(d, args.sides)
        if before:  # a partition replaces the one before (losses stay): say so
            out["note"] = "the earlier partition (%s) was lifted first" % before
    elif verb == "heal":
        heal(d)
    elif verb == "loss":
        loss(d, args.node, args.rate)
        out.update({"node": args.node, "rate": args.rate})
    elif verb == "broker":
        st = load_state(d)
        b = st.get("broker") or {}
        was_up = pid_alive(b.get("pid"), broker_marker(st))
        if args.what == "kill":
            out["killed"] = broker_kill(d)
            if not out["killed"]:
                out["note"] = "the broker was not running"
        else:
            out["pid"] = broker_restart(d)
            if was_up:  # it did not say it stopped a running broker to start another
                out["note"] = "the broker was running: it was stopped and started again"
        out["action"] = "broker " + args.what
    elif verb == "run":
        say = (lambda m: None) if args.json else (lambda m: print(m, flush=True))
        old = signal.signal(signal.SIGTERM, raise_keyboard_interrupt)  # undone, as on Ctrl-C
        replay = ("replay the same schedule: roost chaos run --duration %g --seed %d "
                  "--interval %g --dir %s" % (args.duration, args.seed, args.interval, d))
        for problem in snapshot(load_state(d))["health"]["problems"]:
            if problem.startswith("group ") and "writes wait" in problem:
                # the run keeps each group's majority, which it cannot when one is lost
                say("note, before the run: " + problem)
        before = faults_now(d)
        if before:  # the run's heals lift them, as its end does: say so now, not after
            say("note, before the run: %s; the run's heals lift this, and its end does"
                % before)
        try:
            out["events"] = nemesis(d, args.duration, args.seed, args.interval, say)
        except KeyboardInterrupt:  # stopped early (its faults undone): the replay still helps
            say(replay)
            raise
        finally:
            signal.signal(signal.SIGTERM, old)
        out["seed"] = args.seed
        if not args.json:
            print(replay)
            return 0
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        note = out.pop("note", None)
        print(" ".join("%s=%s" % kv for kv in sorted(out.items())))
        if note:  # it changed nothing: say why in words
            print("roost chaos: " + note)
    return 0


def add_chaos_parser(sub: Any) -> argparse.ArgumentParser:
    """``roost chaos kill|restart|wipe|pause|resume|power-cut|partition|heal|loss|broker|run``."""
    p = sub.add_parser("chaos", help="pull plugs on an emulated fleet (roost emulate)")
    cs = p.add_subparsers(dest="chaos_command", metavar="FAULT")
    cs.required = True

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dir", required=True, help="the fleet's directory")
        q.add_argument("--json", action="store_true")
        q.set_defaults(handler=_chaos_cmd)

    for verb, text in (("kill", "SIGKILL a node (a pulled plug)"),
                       ("restart", "start a node again from its directory (a running "
                        "one is killed first: a plug pulled and put back)"),
                       ("wipe", "SIGKILL a node, erase its flash and start it again (a "
                        "board replaced by a spare)"),
                       ("pause", "SIGSTOP a node (a hung board)"),
                       ("resume", "SIGCONT a paused node")):
        q = cs.add_parser(verb, help=text)
        q.add_argument("node")
        common(q)
    q = cs.add_parser("power-cut", help="every node's plug at once, all back on after --off s "
                      "(the power strip's master switch; the broker stays on)")
    q.add_argument("--off", type=float, default=1.0, help="seconds without power (default 1)")
    common(q)
    q = cs.add_parser("partition", help="cut the fleet: A,B/C,D")
    q.add_argument("sides")
    common(q)
    q = cs.add_parser("heal", help="remove every partition and loss")
    common(q)
    q = cs.add_parser("loss", help="NODE loses RATE (0..1) of its datagrams, both ways")
    q.add_argument("node")
    q.add_argument("rate", type=float)
    common(q)
    q = cs.add_parser("broker", help="kill or restart the fleet's broker")
    q.add_argument("what", choices=("kill", "restart"))
    common(q)
    q = cs.add_parser("run", help="a seeded nemesis mixing every fault")
    q.add_argument("--duration", type=float, required=True, help="seconds")
    q.add_argument("--seed", type=int, default=1, help="the schedule's seed (default 1)")
    q.add_argument("--interval", type=float, default=2.0, help="mean seconds between faults")
    common(q)
    return p
