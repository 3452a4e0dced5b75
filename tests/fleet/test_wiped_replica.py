"""A replica board replaced by a spare, or a Pi's data directory deleted, on a real fleet:
the replica comes back with an empty flash under load. Its own fleet (3 nodes, one on
MicroPython, which is the one wiped), so the history starts from an empty store. Real
processes on 127.0.0.1, every one stopped here by pid."""

import json
import threading
import time

import pytest

from roost.emulator import chaos, fleet
from roost.gateway import client
from tests.fleet.test_fleet import (
    _boots,
    _healthy,
    _leader,
    _nothing_acknowledged_lost,
    _roost,
    _status,
    _wait,
    fleet_for_test,
)


@pytest.fixture
def small(tmp_path):
    yield from fleet_for_test(tmp_path / "fleet", 3, 1)


def test_a_wiped_replica_rebuilds_under_load_and_votes_again(small):
    """It is heard at once, does not vote until it has rebuilt from the others (status:
    unsure), loses no acknowledged write, and then counts in the majority: with another
    replica down, writes still go through."""
    d = small
    state = fleet.load_state(d)
    group = state["groups"][0][1]
    wiped = [n for n in group if state["nodes"][n]["interp"] == "micropython"][0]
    hist = d / "history.jsonl"
    result: dict = {}

    def load():
        result["s"] = client.run_load(d, clients=3, duration_s=10, history=str(hist), keys=40,
                                      mix="append:1,get:3", seed=9, rate=400)

    th = threading.Thread(target=load)
    th.start()
    time.sleep(2)
    before = _status(d)["nodes"][wiped]["incarnation"]
    chaos.wipe(d, wiped)  # roost chaos wipe: SIGKILL, its flash directory erased, started

    def voting():
        v = _status(d)["nodes"][wiped]
        g = v.get("group") or {}
        return ((v.get("incarnation") or 0) > before and g.get("unsure") is False
                and g.get("commit", 0) > 0)

    _wait(voting, 30, "%s, wiped, to rebuild and vote" % wiped)
    th.join(60)
    assert not th.is_alive()
    assert _boots(d, wiped)[-1][1] == 0  # it did come back with nothing
    ops = [json.loads(line) for line in hist.read_text().splitlines()]
    acked = [o for o in ops if o["op"] == "append" and o["ok"] is True]
    assert len(acked) > 200, result["s"]
    _nothing_acknowledged_lost(d, ops)
    _wait(lambda: _healthy(d), 30, "the fleet to be healthy again")
    # it votes: with another replica down, the rebuilt one makes the majority
    other = [n for n in group if n not in (wiped, _leader(d))][0]
    assert chaos.kill(d, other)
    recs = [client.kv_once(d, "put", "after-%d" % i, "v") for i in range(5)]
    assert all(r["ok"] is True for r in recs), recs
    chaos.restart(d, other)
    _wait(lambda: _healthy(d), 40, "the fleet to be healthy again")


def test_a_wiped_replica_short_of_voters_says_why_and_rebuilds_when_they_return(small):
    """A board swapped while another replica's plug is out: the wiped one reaches one voter
    of the two it needs. Its console, the fleet's health and roost status say so; once the
    other replica is back it rebuilds."""
    d = small
    state = fleet.load_state(d)
    group = state["groups"][0][1]
    wiped = [n for n in group if state["nodes"][n]["interp"] == "micropython"][0]
    off = [n for n in group if n != wiped][0]
    assert chaos.kill(d, off)
    chaos.wipe(d, wiped)
    why = "1 of the other 2 replicas answer it as voters; it needs 2"

    def said():
        problems = fleet.snapshot(fleet.load_state(d))["health"]["problems"]
        return [p for p in problems if p.startswith(wiped + " is rebuilding") and why in p]

    _wait(said, 30, "the fleet's health to say why %s has not rebuilt" % wiped)
    # and, first in the list, that writes wait
    problems = fleet.snapshot(fleet.load_state(d))["health"]["problems"]
    stop = "group g0: 1 of its 3 replicas vote ("
    assert problems[0].startswith(stop) and "writes wait" in problems[0], problems
    r = _roost("status", "--dir", str(d))
    assert "%s rebuilding: %s" % (wiped, why) in r.stdout, r.stdout
    assert stop in r.stdout and "%s down" % off in r.stdout, r.stdout
    r = _roost("emulate", "status", "--dir", str(d))
    assert stop in r.stdout and "%s rebuilding" % wiped in r.stdout, r.stdout
    log = (d / "nodes" / wiped / "node.log").read_text()
    assert "%s still rebuilding before it votes: 1 of the other replicas" % wiped in log, log
    assert chaos.restart(d, off)
    _wait(lambda: _healthy(d), 40, "%s rebuilt and the fleet healthy again" % wiped)
