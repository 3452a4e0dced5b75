"""emulate down against chaos verbs running at the same time, and the fault switch across a
down and an up: real node processes (CPython only)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from roost.emulator import chaos, fleet
from roost.emulator.fleet import FleetError
from tests.fleet.test_fleet import _brokers_available, _need, _our_processes


def _restarts(d: Path, stop: threading.Event, errors: list[str]) -> None:
    """chaos restart of n01, n02, n03 in turn until stop (at most 60)."""
    i = 0
    while not stop.is_set() and i < 60:
        try:
            chaos.restart(d, "n0%d" % (i % 3 + 1))
        except FleetError as e:  # refused once the fleet is down: expected
            errors.append(str(e))
        i += 1


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
            t = threading.Thread(target=_restarts, args=(d, stop, errors))
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


def _chaos(d: Path, *argv: str) -> str:
    """`roost chaos ARGV --dir d` as a user runs it: its stdout (exit 0 asserted)."""
    r = subprocess.run([sys.executable, "-m", "roost.gateway.cli", "chaos", *argv, "--dir",
                        str(d)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


@contextlib.contextmanager
def _running(d: Path, nodes: int, replicas: int):
    """A fleet in d for the block, then down with no process of it left."""
    _need(_brokers_available(), "no MQTT broker (mosquitto or amqtt) is installed")
    try:
        fleet.up(d, nodes, groups=1, replicas=replicas, timeout_s=40)
        yield d
    finally:
        fleet.down(d)
        assert not _our_processes(d), _our_processes(d)


def test_chaos_verbs_that_change_nothing_say_so(tmp_path):
    """pause twice, resume a node never paused, kill or pause a dead one: each said
    paused=True / resumed=True (or a bare False) as if it had acted."""
    with _running(tmp_path / "f", 1, 1) as d:
        assert "resumed=False" in _chaos(d, "resume", "n01") and "n01 was not paused" in \
            _chaos(d, "resume", "n01")
        assert chaos.pause(d, "n01") and not chaos.pause(d, "n01")
        assert "n01 was paused already" in _chaos(d, "pause", "n01")
        assert chaos.resume(d, "n01") and not chaos.resume(d, "n01")
        assert "killed=True" in _chaos(d, "kill", "n01")
        out = _chaos(d, "kill", "n01")
        assert "killed=False" in out and "n01 was not running" in out
        assert "n01 is not running: nothing to pause" in _chaos(d, "pause", "n01")


def test_a_second_partition_says_it_lifted_the_first(tmp_path):
    """`chaos partition` replaces the partition in force: it said nothing of the one it
    lifted."""
    with _running(tmp_path / "f", 3, 3) as d:
        assert "lifted" not in _chaos(d, "partition", "n01/n02,n03")
        out = _chaos(d, "partition", "n01,n02/n03")
        assert "the earlier partition (n01 | n02,n03) was lifted first" in out, out
        assert "lifted" not in _chaos(d, "heal") + _chaos(d, "partition", "n03/n01,n02")


def test_broker_verbs_say_what_they_found(tmp_path):
    """`chaos broker restart` on a running broker stopped it and started another without a
    word; `broker kill` on a dead one said only killed=False."""
    with _running(tmp_path / "f", 1, 1) as d:
        assert "was running: it was stopped and started again" in _chaos(d, "broker",
                                                                          "restart")
        assert "killed=True" in _chaos(d, "broker", "kill")
        assert "the broker was not running" in _chaos(d, "broker", "kill")
        assert "was running" not in _chaos(d, "broker", "restart")
