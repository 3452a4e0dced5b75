"""The power strip's master switch on a real fleet: `roost chaos power-cut` under load.

Its own fleet (3 nodes, one on MicroPython; the broker stays on), so the history starts
from an empty store. Real processes on 127.0.0.1, every one stopped here by pid."""

import json
import threading
import time

import pytest

from roost.emulator import chaos, fleet
from roost.gateway import client
from tests.fleet.test_fleet import (
    _boots,
    _healthy,
    _nothing_acknowledged_lost,
    _wait,
    fleet_for_test,
)


@pytest.fixture
def small(tmp_path):
    yield from fleet_for_test(tmp_path / "fleet", 3, 1)


def test_a_power_cut_of_the_whole_fleet_loses_no_acknowledged_write(small):
    """Every node, the MicroPython replica included, SIGKILLed at once under load and back
    1 s later from its own directory: writes resume, every acknowledged append is in the
    final values, the history is linearizable."""
    d = small
    hist = d / "history.jsonl"
    result: dict = {}

    def load():
        # paced: unpaced, a CPython leader fills every value to its limit in ~2 s (40 keys,
        # ~800 appends/s), and every append after the cut was refused as too large
        result["s"] = client.run_load(d, clients=4, duration_s=12, history=str(hist), keys=40,
                                      mix="append:1,get:4", seed=7, rate=500)

    th = threading.Thread(target=load)
    t0 = time.monotonic()
    th.start()
    time.sleep(3)
    t_cut = time.monotonic() - t0
    cut = chaos.power_cut(d, 1.0)
    assert cut["cut"] == fleet.load_state(d)["ids"] and cut["boards"] == []
    th.join(60)
    assert not th.is_alive()
    ops = [json.loads(line) for line in hist.read_text().splitlines()]
    acked = [o for o in ops if o["ok"] is True and o["op"] == "append"]
    assert [o for o in acked if o["return"] < t_cut], "nothing acknowledged before the cut"
    after = [o for o in acked if o["call"] > t_cut + 1.5]
    assert len(after) >= 20, "writes did not resume after the power cut: %s" % result["s"]
    _nothing_acknowledged_lost(d, ops)
    state = fleet.load_state(d)
    for n in state["ids"]:  # each came back from its own flash, its second boot
        boots = _boots(d, n)
        assert len(boots) == 2 and boots[1][0] > boots[0][0] and boots[1][1] > 2, (n, boots)
    _wait(lambda: _healthy(d), 30, "the fleet to be healthy again after the power cut")
