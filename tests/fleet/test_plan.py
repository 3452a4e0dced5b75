"""A real fleet from a plan (``roost plan``), as a classroom sets one up: Pi nodes run
``roost node`` with the config the plan gives them, a board is flashed with ``--join-dir``
of the plan, and nothing knows anyone's address: node traffic, the clients and ``roost
status`` go through the broker. On 127.0.0.1 only; every process started here is stopped
here, by pid, with bounded waits."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.firmware.test_board_fleet import roost, start_board, stop_proc, wait_for
from tests.runtime.brokers import need

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def planned(tmp_path):
    """A plan of three Pi nodes and a board, its broker with the plan's users (one per node,
    as `roost broker --plan` starts it on a gateway), the three Pi nodes running."""
    from roost.gateway.broker import free_port, mosquitto_path, start_broker

    need("mosquitto" if mosquitto_path() else "amqtt")
    procs = {}
    b = None
    try:
        plan = tmp_path / "plan"
        port = free_port()
        r = roost("plan", "--dir", str(plan), "--fleet", "lab", "--broker",
                  "mqtt://127.0.0.1:%d" % port,
                  "--nodes", "n01:pi-4,n02:pi-4,n03:pi-4,n04:esp32-wrover")
        assert r.returncode == 0, r.stderr
        assert "n04   esp32-wrover  gossip member" in r.stdout
        assert (plan / "mqtt.json").stat().st_mode & 0o077 == 0
        users = json.loads((plan / "mqtt.json").read_text())
        b = start_broker(tmp_path / "broker", port, node_credentials=users["nodes"],
                         admin_password=users["admin"], fleet="lab",
                         embedded=mosquitto_path() is None)
        for n in ("n01", "n02", "n03"):
            r = roost("plan", "--dir", str(plan), "--node-config", n,
                      "--key-file", str(plan / "fleet.key"))
            assert r.returncode == 0, r.stderr
            cfg = json.loads(r.stdout)
            assert "peers" not in cfg and cfg["members"] == ["n01", "n02", "n03", "n04"]
            assert cfg["mqtt_password_file"] == str(plan / "mqtt.password")
            # what install.sh writes beside the key; here one file per Pi on one machine
            r = roost("plan", "--dir", str(plan), "--mqtt-password", n)
            assert r.returncode == 0 and r.stdout.strip() == users["nodes"][n], r.stderr
            (tmp_path / (n + ".mqtt.password")).write_text(r.stdout)
            # three Pis on one machine: each its own port and flash; no sensors attached
            cfg.update(udp=["127.0.0.1", 0], storage=str(tmp_path / n), sensors="simulated",
                       status_file=str(tmp_path / (n + ".status.json")),
                       mqtt_password_file=str(tmp_path / (n + ".mqtt.password")))
            (tmp_path / (n + ".json")).write_text(json.dumps(cfg))
            procs[n] = subprocess.Popen(
                [sys.executable, "-m", "roost.gateway.cli", "node", "--config",
                 str(tmp_path / (n + ".json"))], cwd=ROOT, stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT, env={k: v for k, v in os.environ.items()
                                               if k != "ROOST_FLEET_KEY"})
        yield plan, procs, tmp_path, b
    finally:
        for p in procs.values():
            stop_proc(p)
        if b is not None:
            b.stop()


def status(plan):
    r = roost("status", "--dir", str(plan), "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_planned_fleet_runs_through_its_broker_and_a_flashed_board_joins(planned):
    plan, procs, tmp_path, b = planned
    if shutil.which("micropython") is None or shutil.which("mpy-cross") is None:
        if os.environ.get("CI"):
            pytest.fail("micropython and mpy-cross are required in CI")
        pytest.skip("micropython / mpy-cross are not installed")
    flash = tmp_path / "flash"
    flash.mkdir()
    url = start_board(procs, flash, "--board", "esp32-wrover")

    # the board: its board, members and group come from the plan (no --board, no --broker)
    r = roost("flash", "--port", url, "--node-id", "n04", "--join-dir", str(plan), "--json",
              "--timeout", "60", timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "roost: joined fleet lab as n04" in json.loads(r.stdout)["line"]
    cfg = json.loads((flash / "config.json").read_text())
    assert cfg["board"] == "esp32-wrover" and cfg["runtime"]["groups"] == [
        ["g0", ["n01", "n02", "n03"]]]
    # its own MQTT user: the broker takes no one else under n04's name or topics
    users = json.loads((plan / "mqtt.json").read_text())
    assert json.loads((flash / "secrets.json").read_text())["mqtt_password"] == users[
        "nodes"]["n04"]
    assert users["nodes"]["n04"] not in (flash / "config.json").read_text()

    # roost status through the broker: everyone running and alive in every view, a leader
    def healthy():
        st = status(plan)
        ok = all(st["nodes"][n]["process"] == "running" for n in st["nodes"])
        ok = ok and all(m["state"] == "alive" and m["views"].get("alive") == 4
                        for m in st["members"].values())
        return st if ok and st["groups"][0]["leader"] else None

    st = wait_for(healthy, 60, "the planned fleet healthy through its broker")
    assert st["nodes"]["n04"]["interp"] == "board"

    # a second board flashed under n04's id while n04 is online: refused, nothing written
    twin = {}
    flash2 = tmp_path / "flash2"
    flash2.mkdir()
    url2 = start_board(twin, flash2, "--board", "esp32-wrover")
    procs["twin"] = twin["board"]  # stopped by the fixture if this fails
    r = roost("flash", "--port", url2, "--node-id", "n04", "--join-dir", str(plan),
              timeout=120)
    assert r.returncode == 2 and "n04 is online on another board" in r.stderr, r.stderr
    assert not (flash2 / "config.json").exists()
    stop_proc(procs.pop("twin"))
    # the board that is n04, flashed again while online: it is n04 itself, so it goes on
    r = roost("flash", "--port", url, "--node-id", "n04", "--join-dir", str(plan), "--json",
              "--timeout", "60", timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(healthy, 60, "the planned fleet healthy again")

    # the store through the broker
    r = roost("kv", "put", "t/room1", "21.5", "--dir", str(plan))
    assert r.returncode == 0, r.stdout + r.stderr
    r = roost("kv", "get", "t/room1", "--dir", str(plan), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["output"] == "21.5", r.stdout + r.stderr
    def view(n):  # what a Pi node reports in its status file
        return json.loads((tmp_path / (n + ".status.json")).read_text())

    # a load: the clients learn the replicas' announced addresses and talk to them directly
    leader = st["groups"][0]["leader"]
    before = view(leader)["stats"]["mqtt_rx"]
    hist = tmp_path / "h.jsonl"
    r = roost("load", "--dir", str(plan), "--clients", "2", "--duration", "3", "--history",
              str(hist), "--json")
    assert r.returncode == 0, r.stderr
    ops = json.loads(r.stdout)["ok"]
    assert ops > 20
    time.sleep(1.5)  # the leader's next status file
    assert view(leader)["stats"]["mqtt_rx"] - before < ops / 10, (before, view(leader)["stats"])
    r = roost("check", str(hist))
    assert r.returncode == 0 and "linearizable" in r.stdout, r.stdout

    # the nodes announced their UDP addresses through the broker and learned each other's
    # (the board, whose unix port cannot tell its address, from its datagrams): with the
    # broker's plug pulled, gossip goes on peer to peer and nobody is suspected
    for n in ("n01", "n02", "n03"):
        assert view(n)["stats"]["addr_learned"] >= 2, view(n)["stats"]
    b.kill()
    time.sleep(8)  # several gossip rounds and suspicion timeouts of the wifi timers
    for n in ("n01", "n02", "n03"):  # each sees the board too
        st = view(n)
        members = {m[0]: m[1] for m in st["host"]["members"]}
        assert members == {m: "alive" for m in ("n01", "n02", "n03", "n04")}, (n, members)
        assert st["stats"]["udp_rx"] > 0, (n, st["stats"])
    # a plug pulled while the broker is away: no Last Will reaches the broker, whose
    # retained "online" outlives the node; roost status believes the fleet's views instead
    procs["n02"].send_signal(signal.SIGKILL)
    procs["n02"].wait(timeout=10)
    b.restart()
    wait_for(lambda: all(view(n)["mqtt"]["connected"] for n in ("n01", "n03")), 60,
             "the Pi nodes back on the broker")
    wait_for(lambda: status(plan)["nodes"]["n02"]["process"] == "down", 60, "n02 down")
    # the store answers with two replicas of three
    r = roost("kv", "append", "t/room1", ";22", "--dir", str(plan), timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr

    # a pulled plug with the broker up: its Last Will says offline at once
    procs["n04"] = procs.pop("board")
    procs["n04"].send_signal(signal.SIGKILL)
    procs["n04"].wait(timeout=10)
    wait_for(lambda: status(plan)["nodes"]["n04"]["process"] == "down", 30, "n04 down")

    # an update for the board: the plan says which board kind the bundle is for
    r = roost("ota", "publish", "--dir", str(plan), "--target", "n04", "--serial", "1",
              "--version", "v2", "--json", timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["board"] == "esp32-wrover"
    # plugged back in, it takes the update its broker session kept, and roost status says so
    start_board(procs, flash, "--board", "esp32-wrover")

    def updated():
        b = (status(plan)["nodes"]["n04"].get("board") or {})
        return b if b.get("version") == "v2" and b.get("slot") == "b" else None

    wait_for(updated, 120, "n04 running the update, seen in roost status")
    r = roost("status", "--dir", str(plan), timeout=60)
    assert "board n04: slot b, version v2 (serial 1)" in r.stdout, r.stdout

    # a spare put in n04's place (--replace) while the old board still runs: the old one,
    # whose boot is earlier, hears the new one's announcement, says so and stands down (the
    # two took the MQTT client id from each other and roost status showed each in turn)
    spare = {}
    flash3 = tmp_path / "flash3"
    flash3.mkdir()
    url3 = start_board(spare, flash3, "--board", "esp32-wrover")
    procs["spare"] = spare["board"]
    r = roost("flash", "--port", url3, "--node-id", "n04", "--join-dir", str(plan), "--replace",
              "--json", "--timeout", "60", timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr

    def console(f):
        p = f.with_name(f.name + ".console.log")
        return p.read_text(errors="replace") if p.exists() else ""

    wait_for(lambda: "this one stops taking part" in console(flash)
             and "another node also calls itself n04" in console(flash3), 60,
             "the old board to stand down and the new one to name it")
    wait_for(lambda: "n04: another board also called itself n04" in roost(
        "status", "--dir", str(plan), timeout=60).stdout, 30, "roost status naming the twin")
    wait_for(lambda: (lambda st: st["nodes"]["n04"]["process"] == "running"
                      and (st["nodes"]["n04"].get("incarnation") or 0) > 0
                      and st["groups"][0]["leader"])(status(plan)), 30,
             "the fleet healthy with the spare as n04")
