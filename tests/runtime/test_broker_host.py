"""``roost broker --host``: a gateway's broker listens where the boards can reach it. On
loopback: bound to 127.0.0.1 it refuses 127.0.0.2; bound to every interface it takes it."""

from __future__ import annotations

import socket

import pytest

from roost.gateway.broker import add_broker_parser
from tests.runtime.brokers import KINDS, broker, need


def _connects(addr: str, port: int) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("kind", KINDS)
def test_every_interface_takes_another_address(kind, tmp_path):
    h = broker(kind, tmp_path, host="0.0.0.0")
    try:
        assert h.describe()["host"] == "0.0.0.0"
        assert _connects("127.0.0.2", h.port) and _connects("127.0.0.1", h.port)
    finally:
        h.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_the_default_is_this_machine_only(kind, tmp_path):
    h = broker(kind, tmp_path)
    try:
        assert _connects("127.0.0.1", h.port) and not _connects("127.0.0.2", h.port)
    finally:
        h.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_one_address_only(kind, tmp_path):
    h = broker(kind, tmp_path, host="127.0.0.2")
    try:
        assert h.url == "mqtt://127.0.0.2:%d" % h.port
        assert _connects("127.0.0.2", h.port) and not _connects("127.0.0.1", h.port)
    finally:
        h.stop()


def test_the_command_line_names_the_address():
    import argparse

    ap = argparse.ArgumentParser()
    add_broker_parser(ap.add_subparsers())
    assert ap.parse_args(["broker"]).host == "127.0.0.1"
    assert ap.parse_args(["broker", "--host", "0.0.0.0"]).host == "0.0.0.0"


@pytest.mark.parametrize("kind", KINDS)
def test_stopping_the_command_stops_its_broker(kind, tmp_path):
    """`roost broker &` then `kill PID` (SIGTERM), as a gateway's shell script does: the
    broker goes too, instead of holding the port for the next start."""
    import os
    import select
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "roost.gateway.cli", "broker", "--port", "0", "--dir",
           str(tmp_path / "b")] + (["--embedded"] if kind == "amqtt" else [])
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    broker_pid = None
    try:
        ready, _, _ = select.select([p.stdout], [], [], 30)
        line = p.stdout.readline() if ready else ""
        assert "(pid " in line, line
        broker_pid = int(line.split("(pid ", 1)[1].split(",", 1)[0])
        # a second one from the same directory is refused, before it rewrote the running
        # broker's config and pid file and then failed to listen
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "already runs from" in second.stderr, second
        assert (tmp_path / "b" / "broker.pid").read_text() == str(broker_pid)
        os.kill(p.pid, signal.SIGTERM)
        assert p.wait(timeout=20) == 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(broker_pid, 0)
            except ProcessLookupError:
                broker_pid = None
                break
            time.sleep(0.1)
        assert broker_pid is None, "the %s broker outlived roost broker" % kind
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
        if broker_pid is not None:  # a failed run leaves no broker behind either
            try:
                os.kill(broker_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _pids_running(marker: str) -> list[int]:
    """Processes whose command line holds marker (this test's own directory)."""
    import os

    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    if marker.encode() in f.read():
                        out.append(int(d))
            except OSError:
                pass
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_stopping_the_command_while_its_broker_starts_stops_it_too(kind, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    need(kind)
    d = str(tmp_path / "starting")
    cmd = [sys.executable, "-m", "roost.gateway.cli", "broker", "--port", "0", "--dir", d] + (
        ["--embedded"] if kind == "amqtt" else [])
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20  # the broker's process exists, not yet listening
        while time.monotonic() < deadline and not [q for q in _pids_running(d) if q != p.pid]:
            time.sleep(0.01)
        os.kill(p.pid, signal.SIGTERM)
        assert p.wait(timeout=20) == 0
        deadline = time.monotonic() + 10
        left = [q for q in _pids_running(d) if q != p.pid]
        while left and time.monotonic() < deadline:  # the broker's own stop takes a moment
            time.sleep(0.1)
            left = [q for q in _pids_running(d) if q != p.pid]
        for q in left:
            os.kill(q, signal.SIGKILL)
        assert not left, "the %s broker outlived roost broker stopped while starting" % kind
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


@pytest.mark.parametrize("kind", KINDS)
def test_with_credentials_the_admin_password_is_kept_for_the_gateway(kind, tmp_path):
    """roost broker --credentials generates the admin password that the gateway, roost kv
    and roost ota publish log in with: it is written where only this user reads it (it was
    generated and never shown), and it works; the embedded broker's hashes are private."""
    import asyncio
    import json
    import os
    import signal
    import subprocess
    import sys

    from roost.node.mqtt import MQTTClient, MQTTConfig

    need(kind)
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"n1": "pw-n1-long-enough"}))
    d = tmp_path / "b"
    cmd = [sys.executable, "-m", "roost.gateway.cli", "broker", "--port", "0", "--dir", str(d),
           "--credentials", str(creds), "--json"] + (["--embedded"] if kind == "amqtt" else [])
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        info = json.loads(p.stdout.readline())
        pw_file = info["admin_password_file"]
        assert os.stat(pw_file).st_mode & 0o077 == 0
        if kind == "amqtt":
            assert os.stat(d / "amqtt.json").st_mode & 0o077 == 0
        pw = open(pw_file).read().strip()

        async def login(password):
            c = MQTTClient("gw", ["mqtt://admin:%s@127.0.0.1:%d" % (password, info["port"])],
                           config=MQTTConfig(backoff_min_ms=50, backoff_max_ms=200))
            c.start()
            for _ in range(100):
                if c.connected or c.stats["connect_failures"] >= 2:
                    break
                await asyncio.sleep(0.05)
            ok = c.connected
            await c.stop(100)
            return ok

        assert asyncio.run(login(pw)) and not asyncio.run(login(pw + "x"))
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=20)


@pytest.mark.parametrize("kind", KINDS)
def test_roost_broker_plan_takes_the_plans_users_port_and_fleet(kind, tmp_path):
    """`roost broker --plan DIR` on a classroom's gateway: the port the plan told the nodes,
    each node's user from the plan, the admin's too; nobody gets in without a password."""
    import asyncio
    import json
    import signal
    import subprocess
    import sys

    from roost.gateway.broker import free_port
    from roost.gateway.plan import make
    from roost.node.mqtt import MQTTClient, MQTTConfig

    need(kind)
    port = free_port()
    make(tmp_path / "class", "class", "mqtt://127.0.0.1:%d" % port,
         [("n01", "pi-4"), ("n02", "esp32")], groups=0, key="k" * 32)
    users = json.loads((tmp_path / "class" / "mqtt.json").read_text())
    cmd = [sys.executable, "-m", "roost.gateway.cli", "broker", "--plan",
           str(tmp_path / "class"), "--dir", str(tmp_path / "b"), "--json"]
    p = subprocess.Popen(cmd + (["--embedded"] if kind == "amqtt" else []),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        info = json.loads(p.stdout.readline())
        assert info["port"] == port

        async def login(user, password, topic):
            auth = "%s:%s@" % (user, password) if user else ""
            got = []
            c = MQTTClient(user or "anon", ["mqtt://%s127.0.0.1:%d" % (auth, port)],
                           config=MQTTConfig(backoff_min_ms=50, backoff_max_ms=200),
                           on_message=lambda t, m, r: got.append(t))
            c.subscribe(topic, 1)
            c.start()
            for _ in range(100):
                if (c.connected and not c._sub_pending) or c.stats["connect_failures"] >= 2:
                    break
                await asyncio.sleep(0.05)
            ok = c.connected
            if ok:  # the ACL follows the plan's fleet name
                c.publish("roost/class/node/%s/data" % (user or "x"), b"{}", 1)
                await c.wait_idle(3000)
                await asyncio.sleep(0.3)
            await c.stop(100)
            return ok, got

        ok, got = asyncio.run(login("n01", users["nodes"]["n01"], "roost/class/node/n01/#"))
        assert ok and got == ["roost/class/node/n01/data"]
        assert asyncio.run(login("admin", users["admin"], "roost/#"))[0]
        assert not asyncio.run(login(None, None, "roost/#"))[0]
        assert not asyncio.run(login("n01", users["nodes"]["n02"], "roost/#"))[0]
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=20)
