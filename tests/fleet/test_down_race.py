"""emulate down against chaos verbs running at the same time, and the fault switch across a
down and an up: real node processes (CPython only)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from roost.emulator import chaos, fleet
from roost.emulator.fleet import FleetError
from tests.fleet.test_fleet import _brokers_available, _need, _our_processes


def test_down_while_chaos_restarts_leaves_no_process_and_the_next_up_starts_whole(tmp_path):
    """A chaos restart loop racing `emulate down` started a node after down had read the
    pids: it ran on with nothing to stop it (3 of 3 tries). And a partition set before a
    down came back with the next up, which then failed its health check unexplained."""
    _need(_brokers_available(), "no MQTT broker (mosquitto or amqtt) is installed")
    d = tmp_path / "f"
    try:
        for attempt in range(2):
            snap = fleet.up(d, 3, groups=1, replicas=3, timeout_s=40)
            assert snap["health"]["healthy"], snap["health"]
            stop = threading.Event()
            errors: list[str] = []

            def restarts() -> None:
                i = 0
                while not stop.is_set() and i < 60:
                    try:
                        chaos.restart(d, "n0%d" % (i % 3 + 1))
                    except FleetError as e:  # refused once the fleet is down: expected
                        errors.append(str(e))
                    i += 1

            t = threading.Thread(target=restarts)
            t.start()
            time.sleep(0.8)
            fleet.down(d)
            time.sleep(0.5)  # a restart in flight at down has had its chance to start one
            stop.set()
            t.join(60)
            assert not t.is_alive()
            assert not _our_processes(d), "processes left after down (attempt %d): %s" % (
                attempt, _our_processes(d))
            assert all("was stopped" in e for e in errors), errors
            # a partition and a loss written while the fleet is down (as chaos left them)
            sw = chaos.FaultSwitch(d)
            sw.partition([["n01"], ["n02", "n03"]])
            sw.loss("n02", 0.5)
            assert json.loads((Path(sw._control("n01"))).read_text())["blocked"]
    finally:
        fleet.down(d)
        assert not _our_processes(d), _our_processes(d)
