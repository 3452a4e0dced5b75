"""`roost emulate up` as a CI step runs it: its processes outlive it in their own sessions
(a signal to the step's process group does not pull the broker alone), and an `up` stopped
while it starts (SIGTERM from a step's timeout) leaves nothing behind.

CPython nodes only; 127.0.0.1 only; bounded waits; only this test's processes signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from roost.emulator import fleet
from tests.fleet.test_fleet import _brokers_available, _need, _our_processes

ROOT = Path(__file__).resolve().parents[2]


def _session(pid: int) -> int:
    return int(Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()[3])


def _up(d: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "roost.gateway.cli", "emulate", "up",
                             "--nodes", "3", "--dir", str(d), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT, start_new_session=True)


def test_every_process_of_the_fleet_has_its_own_session(tmp_path):
    _need(_brokers_available(), "no MQTT broker (mosquitto or amqtt) is installed")
    d = tmp_path / "f"
    p = _up(d)
    try:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0, out
        state = fleet.load_state(d)
        pids = [state["broker"]["pid"], state["gateway"]["pid"]]
        pids += [state["nodes"][n]["pid"] for n in state["ids"]]
        for pid in pids:  # none in the session of `up` (its pid): ^C there is not a pulled plug
            assert _session(pid) == pid, (pid, _session(pid), p.pid)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
        fleet.down(d)
    assert _our_processes(d) == []


def test_an_up_stopped_while_starting_leaves_nothing_running(tmp_path):
    _need(_brokers_available(), "no MQTT broker (mosquitto or amqtt) is installed")
    d = tmp_path / "f"
    p = _up(d, "--timeout", "60")
    lines = []
    try:
        assert p.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            lines.append(line)
            if not line or line.startswith("started 3 nodes"):
                break
        assert lines[-1].startswith("started 3 nodes"), "".join(lines)
        os.kill(p.pid, signal.SIGTERM)  # the step's timeout, while up waits for health
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    assert p.returncode == 130, "".join(lines) + out
    assert "interrupted; stopped 3 node(s)" in out, out
    assert _our_processes(d) == []
