"""``roost demo`` (live, the default): a real fleet, a load, plugs pulled, the outcome narrated.

CPython only; 127.0.0.1 only; bounded (the command runs under a 150 s timeout and takes
about 35 s); the demo stops everything it started, which the test checks by looking for any
process whose command line names the demo's directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IN_CI = bool(os.environ.get("CI"))


def _need_broker() -> None:
    from roost.gateway.broker import amqtt_available, mosquitto_path

    if mosquitto_path() is None and not amqtt_available():
        if IN_CI:
            pytest.fail("no MQTT broker (required in CI)")
        pytest.skip("no MQTT broker (mosquitto or amqtt) is installed")


def _procs_naming(marker: str) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            cmd = (p / "cmdline").read_bytes()
            stat = (p / "stat").read_text()
        except OSError:
            continue
        if marker.encode() in cmd and stat.rsplit(")", 1)[1].split()[0] != "Z":
            out.append(int(p.name))
    return out


def _run_demo(extra: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    """Run the live demo; past timeout_s it gets SIGTERM (it cleans up), never a bare SIGKILL."""
    argv = [sys.executable, "-m", "roost.gateway.cli", "demo"] + extra
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=ROOT, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        p.terminate()
        try:
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        raise AssertionError("roost demo took over %.0f s: %s"
                             % (timeout_s, err[-2000:])) from None
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


def test_live_demo_pulls_plugs_and_loses_no_acknowledged_write():
    _need_broker()
    r = _run_demo(["--json", "--duration", "15"], 150)
    assert r.stdout.strip(), r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    d = res["dir"]
    assert r.returncode == 0, (res, r.stderr[-2000:])
    assert res["ok"] is True
    assert res["acked_writes_lost"] == 0 and res["writes_acked"] >= 100, res
    assert res["linearizable"] is True
    assert res["failover_s"] is not None and res["failover_s"] < 10, res
    assert res["leader_killed"] != res["new_leader"] and res["new_leader"] is not None
    assert res["follower_killed"] not in (res["leader_killed"], None)
    for det in res["detection"]:
        assert det["all_marked_dead_s"] is not None and 0 < det["all_marked_dead_s"] < 10, det
    assert res["rejoin_s"] is not None
    assert res["readings"]["delivered"] > 0
    assert len(res["readings"]["by_node"]) == res["nodes"]
    if res["micropython"]:
        assert "micropython" in res["interpreters"].values()
    # everything stopped and removed
    assert not Path(d).exists()
    assert _procs_naming(d) == []


def test_live_demo_cleans_up_on_ctrl_c():
    _need_broker()
    # Ctrl-C as at a terminal: a shell without job control starts background jobs with
    # SIGINT ignored, and Python keeps an inherited SIG_IGN (then no KeyboardInterrupt)
    p = subprocess.Popen([sys.executable, "-m", "roost.gateway.cli", "demo"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                         start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    d = None
    lines = []
    try:
        deadline = time.monotonic() + 90
        assert p.stdout is not None
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Working in "):
                d = line.split("Working in ", 1)[1].split(";")[0]
            if "PLUG PULLED" in line:  # the fleet and the load are running
                break
        assert d is not None and any("PLUG PULLED" in x for x in lines), "".join(lines)
        assert _procs_naming(d), "the demo's fleet is not running"
        os.kill(p.pid, signal.SIGINT)  # Ctrl-C reaches the demo (its own session: only it)
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:  # the demo cleans up on SIGTERM; SIGKILL only if it cannot
            p.terminate()
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
    assert p.returncode == 130, "".join(lines) + (out or "")
    assert "interrupted" in out
    assert _procs_naming(d) == []
    assert not Path(d).exists()


@pytest.mark.parametrize("extra, says", [
    (["--sim", "--duration", "20"], "--duration is for the live demo"),
    (["--sim", "--live"], "exclude each other"),
    (["--nodes", "2"], "at least 3"),
    (["--duration", "5"], "at least 12 s"),
])
def test_demo_mistakes_are_one_sentence_and_start_nothing(extra, says, tmp_path):
    r = subprocess.run([sys.executable, "-m", "roost.gateway.cli", "demo"] + extra,
                       capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no fleet directory made
