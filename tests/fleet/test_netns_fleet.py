"""Root mode: a fleet in network namespaces; a real link pulled and healed under load.

Needs root, iproute2 and nftables (skips with the reason otherwise, fails when CI is set).
Every node runs in its own namespace on one bridge (``roost emulate up --netns``); the
clients run in the "gw" namespace. ``roost chaos partition LEADER/REST`` pulls the leader's
cable (its bridge port goes down); ``heal`` plugs it back. Checks as in test_fleet.py: writes
resume, the history (with final reads) is linearizable, no acknowledged write is lost, the
pulled node is detected dead and then alive again. Bounded: about 60 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from roost.emulator import chaos, fleet
from roost.emulator.linearize import check, load_history

ROOT = Path(__file__).resolve().parents[2]
IN_CI = bool(os.environ.get("CI"))

# a client in the "gw" namespace (roost's client takes the fabric's node addresses itself)
RUNNER = r'''
import json, sys, time
from roost.gateway import client

d, mode = sys.argv[1], sys.argv[2]
if mode == "load":
    print(json.dumps({"t0_wall": time.time()}), flush=True)
    s = client.run_load(d, clients=2, duration_s=float(sys.argv[3]), history=sys.argv[4],
                        keys=120, mix="append:1,get:2", seed=9, key_prefix="ns")
    print(json.dumps({k: v for k, v in s.items() if k != "history"}), flush=True)
else:
    for k in sys.argv[3:]:
        for _ in range(3):
            rec = client.kv_once(d, "get", k)
            if rec["ok"] is not None:
                break
        print(json.dumps(rec), flush=True)
'''


def _need() -> None:
    from roost.emulator.netns import missing_tools

    missing = missing_tools()
    if missing:
        if IN_CI:
            pytest.fail("network namespaces need %s (required in CI)" % " and ".join(missing))
        pytest.skip("network namespaces need %s" % " and ".join(missing))


def _wait(pred, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.25)
    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout_s, what))


def _views(d: Path, since: float) -> dict:
    snap = fleet.snapshot(fleet.load_state(d))
    out = {}
    for n, v in snap["nodes"].items():
        st = v["status"]
        if v["process"] == "running" and st and st.get("wall", 0) >= since:
            out[n] = {m[0]: m[1] for m in (st.get("host") or {}).get("members", [])}
    return out


def _leader(d: Path) -> str | None:
    ls = fleet.snapshot(fleet.load_state(d), 1.5)["health"]["leaders"].get("g0") or []
    return ls[0] if len(ls) == 1 else None


def test_netns_fleet_link_pulled_and_healed_under_load(tmp_path):
    _need()
    d = tmp_path / "fleet"
    import shutil

    mpy = 1 if shutil.which("micropython") else 0
    try:
        snap = fleet.up(d, 5, micropython=mpy, groups=1, replicas=3, timeout_s=40, netns=True)
        assert snap["health"]["healthy"], snap["health"]
        state = fleet.load_state(d)
        assert state["netns"] and all(state["nodes"][n]["addr"].startswith("10.")
                                      for n in state["ids"])
        # the nodes really live in their namespaces: their own pids, in the namespace's list
        for n in state["ids"]:
            pids = subprocess.run(["ip", "netns", "pids", state["netns"]["ns"][n]],
                                  capture_output=True, text=True, timeout=10).stdout.split()
            assert str(state["nodes"][n]["pid"]) in pids, (n, pids)
        # a client outside the fabric is told, in one sentence, where to run
        from roost.gateway import client

        with pytest.raises(fleet.FleetError, match="ip netns exec %s roost" %
                           state["netns"]["ns"]["gw"]):
            client.kv_once(d, "get", "k")
        leader = _wait(lambda: _leader(d), 10, "one leader")
        hist = d / "history.jsonl"
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        load = subprocess.Popen(fleet.netns_wrap(d, [sys.executable, "-c", RUNNER, str(d),
                                                     "load", "14", str(hist)]),
                                stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        try:
            assert load.stdout is not None
            t0_wall = json.loads(load.stdout.readline())["t0_wall"]
            time.sleep(3)
            # pull the leader's cable: a side of one node is a link pulled down
            chaos.partition(d, "%s/%s" % (leader, ",".join(n for n in state["ids"]
                                                          if n != leader)))
            t_pull = time.time()
            others = [n for n in state["ids"] if n != leader]

            def seen(st: str, since: float):
                v = _views(d, since)
                return all(n in v and v[n].get(leader) == st for n in others)

            _wait(lambda: seen("dead", t_pull), 15, "%s detected dead" % leader)
            t_dead = time.time() - t_pull
            chaos.heal(d)
            t_heal = time.time()
            _wait(lambda: seen("alive", t_heal), 20, "%s seen alive again" % leader)
            out, _ = load.communicate(timeout=60)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait(10)
        assert load.returncode == 0, out
        ops = [json.loads(line) for line in hist.read_text().splitlines()]
        rel_pull = t_pull - t0_wall
        # writes resumed while the old leader was cut off
        during = [o for o in ops if o["ok"] is True and o["op"] == "append"
                  and rel_pull + 1.0 < o["call"] < t_heal - t0_wall]
        window = [(o["op"], o["ok"], o.get("error")) for o in ops
                  if rel_pull + 1.0 < o["call"] < t_heal - t0_wall]
        assert len(during) >= 10, "writes did not resume after pulling %s's link: %s" % (
            leader, {k: window.count(k) for k in sorted(set(window), key=str)})
        keys = sorted({o["key"] for o in ops})
        r = subprocess.run(fleet.netns_wrap(d, [sys.executable, "-c", RUNNER, str(d), "get"]
                                            + keys),
                           capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert r.returncode == 0, r.stderr
        base = max(o["return"] or o["call"] for o in ops) + 10.0
        final = {}
        for line in r.stdout.splitlines():
            rec = json.loads(line)
            assert rec["ok"] is True, rec
            final[rec["key"]] = set((rec.get("output") or "").split(";"))
            rec["call"] += base
            rec["return"] += base
            ops.append(rec)
        for o in ops:
            if o["op"] == "append" and o["ok"] is True:
                assert o["value"].rstrip(";") in final[o["key"]], "acknowledged %s lost" % o
        res = check(load_history([json.dumps(o) for o in ops]), timeout_s=60)
        assert res.verdict is True, "\n".join(res.explain())
        assert t_dead < 15
        _wait(lambda: fleet.snapshot(fleet.load_state(d))["health"]["healthy"], 20,
              "the fleet to be healthy after the heal")
    finally:
        if (d / fleet.STATE).exists():
            run = (fleet.load_state(d).get("netns") or {}).get("run_id")
            fleet.down(d)
            if run:
                from roost.emulator.netns import list_namespaces

                assert not [ns for ns in list_namespaces() if run in ns]
