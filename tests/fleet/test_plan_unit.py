"""``roost plan``: what a real fleet's plan holds and gives each node (no process started)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from roost.emulator.fleet import FleetError, lead_preference, load_state
from roost.emulator.fleet import up as fleet_up
from roost.firmware.flash import make_config
from roost.gateway.cli import main
from roost.gateway.plan import PlanError, make, node_config
from roost.node.nodemain import board_config, check_config

KIT = [("n01", "pi-zero-2w"), ("n02", "pi-zero-2w"), ("n03", "esp32-wrover"),
       ("n04", "esp32-wrover"), ("n05", "esp32"), ("n06", "esp32-cam")]


def test_groups_take_the_boards_that_hold_a_replica(tmp_path, monkeypatch):
    monkeypatch.delenv("ROOST_FLEET_KEY", raising=False)
    st = make(tmp_path / "p", "class", "mqtt://192.168.4.1:1883", KIT)
    assert st["groups"] == [["g0", ["n01", "n02", "n03"]]]
    assert st["nodes"]["n05"]["interp"] == "board" and st["nodes"]["n01"]["interp"] == "cpython"
    key = (tmp_path / "p" / "fleet.key")
    assert len(key.read_text().strip()) == 32 and key.stat().st_mode & 0o077 == 0
    with pytest.raises(PlanError, match="need 6 nodes whose boards hold a replica; the plan "
                       "has 4"):
        make(tmp_path / "q", "class", "mqtt://192.168.4.1:1883", KIT, groups=2)
    with pytest.raises(PlanError, match="already holds a fleet"):
        make(tmp_path / "p", "class", "mqtt://192.168.4.1:1883", KIT)


def test_a_pi_node_config_is_one_roost_node_accepts(tmp_path):
    st = make(tmp_path / "p", "class", "mqtt://192.168.4.1:1883", KIT, key="k" * 32,
              addrs={"n02": ["192.168.4.12", 4210]})
    cfg = check_config(node_config(st, "n01", "/etc/roost/fleet.key"))
    assert cfg["brokers"] == ["mqtt://192.168.4.1:1883"] and cfg["board"] == "pi-zero-2w"
    assert cfg["seeds"] == ["n02", "n03", "n04", "n05", "n06"]
    assert cfg["peers"] == {"n02": ["192.168.4.12", 4210]}
    assert "peers" not in node_config(st, "n02", "/k")  # not its own address
    with pytest.raises(PlanError, match="n09 is not in the plan"):
        node_config(st, "n09", "/k")
    with pytest.raises(PlanError, match="n03 is an esp32-wrover board, not a Pi: flash it"):
        node_config(st, "n03", "/k")


def _flash_args(plan, node, board=None):
    return argparse.Namespace(node_id=node, fleet="roost", board=board, broker=None,
                              wifi="class-ap", join_dir=str(plan), safe_pin=None,
                              secrets_file=None, udp_port=None, port="/dev/ttyUSB0")


def test_a_flashed_board_gets_its_share_of_the_plan(tmp_path, monkeypatch):
    monkeypatch.delenv("ROOST_FLEET_KEY", raising=False)
    monkeypatch.setenv("ROOST_WIFI_PASSWORD", "password1")
    plan = tmp_path / "p"
    make(plan, "class", "mqtt://192.168.4.1:1883", KIT, key="k" * 32)
    cfg, sec = make_config(_flash_args(plan, "n03"))
    assert sec["fleet_key"] == "k" * 32
    assert (cfg["board"], cfg["fleet"], cfg["broker"], cfg["udp_port"]) == (
        "esp32-wrover", "class", "mqtt://192.168.4.1:1883", 4210)
    node = check_config(board_config(argparse.Namespace(runtime=cfg["runtime"], **{
        k: cfg[k] for k in ("node_id", "fleet", "board", "broker", "udp_port")})))
    assert node["groups"] == [["g0", ["n01", "n02", "n03"]]] and node["preset"] == "wifi"
    assert node["members"] == [n for n, _ in KIT]
    # the group's Pis lead while one of them is up (the board rebuilds, then hands back)
    assert node["paxos"] == {"prefer": ["n01", "n02"]}
    assert check_config(node_config(load_state(plan), "n01", "/k"))["paxos"] == {
        "prefer": ["n01", "n02"]}
    with pytest.raises(ValueError, match="says n03 is an esp32-wrover, not an esp32"):
        make_config(_flash_args(plan, "n03", "esp32"))
    with pytest.raises(ValueError, match="n09 is not in the plan"):
        make_config(_flash_args(plan, "n09"))


def test_commands_that_start_processes_refuse_a_plan(tmp_path, capsys):
    make(tmp_path / "p", "class", "mqtt://192.168.4.1:1883", KIT, key="k" * 32)
    for argv in (["chaos", "kill", "n01"], ["emulate", "down"], ["emulate", "status"]):
        assert main(argv + ["--dir", str(tmp_path / "p")]) == 2
        err = capsys.readouterr().err
        assert "holds a real fleet's plan" in err and "Traceback" not in err


def test_the_command_line(tmp_path, capsys):
    d = str(tmp_path / "p")
    assert main(["plan", "--dir", d, "--fleet", "class", "--broker", "mqtt://192.168.4.1:1883",
                 "--nodes", "n01:pi-4,n02:pi-4,n03:pi-5,n04:esp32"]) == 0
    out = capsys.readouterr().out
    assert "n04   esp32         gossip member" in out and "install.sh --plan" in out
    assert main(["plan", "--dir", d, "--node-config", "n02"]) == 0
    assert json.loads(capsys.readouterr().out)["key_file"] == "/etc/roost/fleet.key"
    base = ["plan", "--dir", str(tmp_path / "x"), "--fleet", "c"]
    for extra, says in (
            (["--broker", "mqtt://192.168.4.1:1883", "--nodes", "n01"], "ID:BOARD"),
            (["--broker", "mqtt://192.168.4.1:1883", "--nodes", "n01:pi-9"], "unknown board"),
            (["--broker", "http://x", "--nodes", "n01:pi-4"], "mqtt://"),
            (["--broker", "mqtt://192.168.4.1:1883", "--nodes", "n01:pi-4", "--replicas", "2"],
             "odd"),
            (["--broker", "mqtt://GATEWAY-IP:1883", "--nodes", "n01:pi-4"], "does not resolve"),
            (["--broker", "mqtt://192.168.4.1:1883"], "needs --fleet, --broker and --nodes")):
        assert main(base + extra) == 2
        assert says in capsys.readouterr().err


def test_a_copied_plan_is_where_it_was_found(tmp_path):
    import shutil

    from roost.emulator.fleet import load_state
    from roost.gateway.client import Fleet

    make(tmp_path / "p", "class", "mqtt://192.168.4.1:1883", KIT, key="k" * 32)
    shutil.copytree(tmp_path / "p", tmp_path / "copy")
    shutil.rmtree(tmp_path / "p")
    assert load_state(tmp_path / "copy")["dir"] == str((tmp_path / "copy").resolve())
    assert Fleet(tmp_path / "copy").key == "k" * 32


def test_a_short_key_from_the_environment_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("ROOST_FLEET_KEY", "abc")
    with pytest.raises(PlanError, match="the fleet key in ROOST_FLEET_KEY has only 3 of the 16"):
        make(tmp_path / "class", "class", "mqtt://192.168.4.1:1883", KIT)
    assert not (tmp_path / "class").exists()


def test_ota_publish_refuses_a_target_the_plan_does_not_hold(tmp_path, capsys):
    """No board subscribes to roost/<fleet>/ota/n09: said at once, nothing published."""
    make(tmp_path / "p", "class", "mqtt://192.168.4.1:1883", KIT, key="k" * 32)
    code = main(["ota", "publish", "--dir", str(tmp_path / "p"), "--target", "n09",
                 "--serial", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "n09 is neither a node of the plan" in err and "Traceback" not in err
    # other mistakes, each one sentence before anything is built or published
    img = tmp_path / "img"
    img.mkdir()
    (img / "manifest.json").write_text('{"format": 1, "board": "esp32-cam", "files": []}')
    for extra, words in ((["--target", "n03", "--retain"], "--retain needs --single"),
                         (["--target", ""], "--target ''"),
                         (["--target", "n03", "--fleet", "a b"], "--fleet 'a b'"),
                         (["--target", "n03", "--board", "nosuch"], "unknown board 'nosuch'"),
                         (["--target", "n03", "--image", str(img)],
                          "built for an esp32-cam board, not an esp32-wrover one")):
        code = main(["ota", "publish", "--dir", str(tmp_path / "p"), "--serial", "2"] + extra)
        err = capsys.readouterr().err
        assert code == 2 and words in err and "Traceback" not in err, (extra, err)


def test_ota_publish_to_an_emulated_fleet_names_its_boards(tmp_path, capsys):
    """An emulated fleet's node processes take no update (only boards flashed into it do):
    a target that is neither one of its boards nor a board kind is refused at once."""
    from roost.emulator.fleet import save_state

    (tmp_path / "fleet.key").write_text("k" * 32)
    save_state(tmp_path, {"fleet": "emu", "dir": str(tmp_path), "ids": ["n01", "n02"],
                          "groups": [["g0", ["n01"]]], "broker": None,
                          "nodes": {"n01": {"interp": "cpython"},
                                    "n02": {"interp": "board", "board": "esp32-wrover"}}})
    for target in ("n01", "n09"):
        code = main(["ota", "publish", "--dir", str(tmp_path), "--target", target,
                     "--serial", "2"])
        err = capsys.readouterr().err
        assert code == 2 and "neither a board that joined the fleet" in err, err
        assert "(n02)" in err and "Traceback" not in err
    # the board's kind, recorded when it was flashed, is what the update is built for (an
    # esp32 bundle was refused by an esp32-wrover board as wrong_board)
    img = tmp_path / "img"
    img.mkdir()
    (img / "manifest.json").write_text('{"format": 1, "board": "esp32", "files": []}')
    code = main(["ota", "publish", "--dir", str(tmp_path), "--target", "n02", "--serial", "2",
                 "--broker", "mqtt://127.0.0.1:1", "--image", str(img)])
    err = capsys.readouterr().err
    assert code == 2 and "built for an esp32 board, not an esp32-wrover one" in err, err


def _report(inc, views, group=None, twin=None, stats=None):
    host = {"members": [[m, s, b, [None, None]] for m, s, b in views]}
    if group is not None:
        host["group"] = group
    st = {"incarnation": inc, "uptime_ms": 9000, "joined": True, "stats": stats or {},
          "host": host}
    if twin is not None:
        st["twin"] = twin
    return st


def test_a_replaced_board_is_not_down_while_the_views_still_hold_its_old_boot(
        tmp_path, monkeypatch, capsys):
    """Right after roost flash --replace, the reports of the other nodes (every 5 s) still
    mark the old board's boot dead: that says nothing of the new one, which leads already.
    The old board switched on again beside it is named; the lag is the leader's."""
    from roost.gateway import client

    plan = tmp_path / "p"
    make(plan, "class", "mqtt://192.168.4.1:1883", KIT[:3], key="k" * 32)
    g = {"name": "g0", "members": ["n01", "n02", "n03"], "commit": 40, "is_leader": False}
    old_view = [("n01", "alive", 3), ("n02", "alive", 3), ("n03", "dead", 4)]
    new_view = [("n01", "alive", 3), ("n02", "alive", 3), ("n03", "alive", 1)]  # wiped
    reports = {
        "n01": ("online", _report(3, old_view, dict(g), stats={"rx_rejected_stale": 130,
                                                                "rx_rejected_auth": 2})),
        "n02": ("online", _report(3, old_view, dict(g))),
        "n03": ("online", _report(1_700_000, new_view, dict(g, is_leader=True, commit=90,
                                                            follower_commits={"n01": 88,
                                                                              "n02": 90}),
                                  twin={"at": "192.168.4.30:4210", "ago_s": 4})),
    }
    monkeypatch.setattr(client, "reports_through_broker", lambda state: reports)
    st = client.fleet_status(plan)
    assert st["nodes"]["n03"]["process"] == "running"
    assert st["members"]["n03"]["state"] == "rejoining"
    assert st["groups"][0]["leader"] == "n03"
    # the lag as the leader's one report has it, not its commit against older reports' 40
    assert st["groups"][0]["lag"] == {"n01": 2, "n02": 0, "n03": 0}
    assert main(["status", "--dir", str(plan)]) == 0
    out = capsys.readouterr().out
    assert "group g0: leader n03 at commit 90, lag n01 2, n02 0, n03 0 (slots behind" in out
    assert "n03 (rejoining)" in out
    assert ("rejected, all nodes since they started: stale 130 (sent by an earlier boot of a "
            "node") in out and "; auth 2 (not signed with this fleet's key" in out
    assert ("n03: another board also called itself n03 (at 192.168.4.30:4210, 4s before this "
            "report): the one flashed earlier stops taking part") in out
    # the same old views, but n03's report is of a life that began long ago: the views'
    # dead mark stands (a node that died while the broker was away left that report retained)
    old_report = reports["n03"][1]
    reports["n03"] = ("online", dict(old_report, uptime_ms=3_600_000))
    st = client.fleet_status(plan)
    assert st["nodes"]["n03"]["process"] == "down" and st["groups"][0]["leader"] is None
    reports["n03"] = ("online", old_report)
    # the same views about the boot it reports: down, as before
    reports["n01"] = ("online", _report(3, [("n03", "dead", 1)], dict(g)))
    reports["n02"] = ("online", _report(3, [("n03", "dead", 1)], dict(g)))
    st = client.fleet_status(plan)
    assert st["nodes"]["n03"]["process"] == "down" and st["groups"][0]["leader"] is None


def test_roost_status_takes_reports_it_cannot_read(tmp_path, monkeypatch, capsys):
    """The retained reports are JSON anyone on the broker may publish: fields of the wrong
    type are left out, not a traceback."""
    from roost.gateway import client

    plan = tmp_path / "p"
    make(plan, "class", "mqtt://192.168.4.1:1883", KIT[:3], key="k" * 32)
    bad = {"incarnation": 2, "uptime_ms": 1000, "stats": ["x"], "twin": "n03",
           "board": "esp32", "host": {"members": [["n01"], "junk", ["n02", "alive", "x"]],
                                      "group": {"name": "g0", "is_leader": True,
                                                "commit": 5, "follower_commits": [1, 2]}}}
    worse = {"incarnation": 2, "twin": {"at": "x", "ago_s": None}, "host": {"group": "g0"},
             "stats": {"rx_rejected_stale": "many"}}
    reports = {"n01": ("online", bad), "n02": ("online", worse), "n03": ("online", None)}
    monkeypatch.setattr(client, "reports_through_broker", lambda state: reports)
    assert main(["status", "--dir", str(plan)]) == 0
    out = capsys.readouterr().out
    assert "group g0: leader n01, commit n01 5, lag n01 0" in out


def test_only_a_flashed_board_stands_down(tmp_path, monkeypatch):
    """A flashed board's boot floor was written when it was flashed, so a later boot under
    its id is a later flash; a Pi's floor is its clock at each start, so an old Pi switched
    on after its replacement boots later: Pis only say so, neither stands down."""
    from roost.node.nodemain import Node

    monkeypatch.delenv("ROOST_FLEET_KEY", raising=False)
    monkeypatch.setenv("ROOST_WIFI_PASSWORD", "password1")
    plan = tmp_path / "p"
    st = make(plan, "class", "mqtt://127.0.0.1:1883", KIT, key="k" * 32)
    pi = node_config(st, "n01", str(plan / "fleet.key"))  # as install.sh has it
    fcfg, _sec = make_config(_flash_args(plan, "n03"))  # as roost flash writes config.json
    board = board_config(argparse.Namespace(runtime=fcfg["runtime"], **{
        k: fcfg[k] for k in ("node_id", "fleet", "board", "broker", "udp_port")}))
    for cfg, stands in ((pi, False), (board, True)):
        cfg = dict(cfg, storage=str(tmp_path / cfg["node_id"]), udp=["127.0.0.1", 0],
                   sensors="none")
        cfg.pop("mqtt_password_file", None)  # (on the Pi, beside its key)
        node = Node(cfg, key="k" * 32, log=lambda m: None)
        assert (node.addrs.on_newer is not None) == stands, cfg["node_id"]
        # at each connection to the broker its status goes out at once: what the broker
        # kept may be the other board's, or this one's from before a pause
        assert not node.runtime._status_soon
        node.mqtt.on_connect(node.mqtt)
        assert node.runtime._status_soon


def test_only_a_group_of_pis_and_boards_prefers_its_pis():
    state = {"groups": [["g0", ["n01", "n02", "n03"]], ["g1", ["n04", "n05", "n06"]]],
             "nodes": {"n01": {"interp": "cpython"}, "n02": {"interp": "micropython"},
                       "n03": {"interp": "cpython"}, "n04": {"interp": "cpython"},
                       "n05": {"interp": "cpython"}, "n06": {"interp": "cpython"},
                       "n07": {"interp": "board"}}}
    assert lead_preference(state, "n02") == ["n01", "n03"]
    assert lead_preference(state, "n05") == []  # all alike: any of them leads
    assert lead_preference(state, "n07") == []  # no replica


def test_a_dir_that_is_no_fleet_is_one_sentence_everywhere(tmp_path):
    """A file given as --dir, or a fleet.json of the wrong shape: every command that reads a
    fleet's state says so in one sentence (exit 2), no traceback."""
    afile = tmp_path / "afile"
    afile.write_text("mine")
    for i, shape in enumerate(("[]", "{}", '{"ids": "n01", "nodes": {}}')):
        d = tmp_path / ("bad%d" % i)
        d.mkdir()
        (d / "fleet.json").write_text(shape)
        with pytest.raises(FleetError, match="is damaged \\(not a fleet's state"):
            load_state(d)
    with pytest.raises(FleetError, match="is a file, not a fleet's directory"):
        load_state(afile)
    for argv in (["status"], ["kv", "get", "k"], ["chaos", "kill", "n01"], ["emulate", "status"],
                 ["load", "--duration", "1"]):
        r = subprocess.run([sys.executable, "-m", "roost.gateway.cli", *argv, "--dir",
                            str(afile)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "is a file" in r.stderr and "Traceback" not in r.stderr, \
            (argv, r.stderr)
    make(tmp_path / "p", "class", "mqtt://192.168.4.1:1883", KIT, key="k" * 32)
    with pytest.raises(FleetError, match="holds a real fleet's plan"):
        fleet_up(tmp_path / "p", 1)


def test_a_stopped_fleet_says_so_at_once(tmp_path, capsys):
    """After roost emulate down: kv and load refuse at once (they waited 5 s for a leader,
    then said "unknown"), and roost status says the fleet was stopped."""
    from roost.emulator.fleet import save_state

    save_state(tmp_path, {"fleet": "emu", "dir": str(tmp_path), "ids": ["n01"],
                          "groups": [["g0", ["n01"]]], "broker": None, "stopped_at": 1.0e9,
                          "nodes": {"n01": {"interp": "cpython", "port": 9, "pid": None,
                                            "config": str(tmp_path / "c.json")}}})
    (tmp_path / "fleet.key").write_text("k" * 32)
    for argv in (["kv", "get", "k"], ["load", "--duration", "1"]):
        assert main(argv + ["--dir", str(tmp_path)]) == 2
        assert "was stopped (roost emulate down)" in capsys.readouterr().err
    assert main(["status", "--dir", str(tmp_path)]) == 0
    assert "stopped by roost emulate down at " in capsys.readouterr().out


def test_emulate_status_marks_the_role_of_a_paused_node():
    """As roost status does: a paused leader's row says leader? (its last report), so the
    paused one and the one elected after it are not two leaders."""
    from roost.emulator.fleet import _describe

    def node(process, leader, stale=False):
        st = {"host": {"members": [], "group": {"name": "g0", "is_leader": leader,
                                                 "commit": 7}}}
        return {"process": process, "pid": 1, "interp": "cpython", "port": 9, "status": st,
                "stale": stale}

    snap = {"nodes": {"n01": node("paused", True), "n02": node("running", True),
                      "n03": node("running", False, stale=True)},
            "health": {"healthy": False, "problems": ["n01 is paused"]}}
    rows = _describe({"ids": ["n01", "n02", "n03"]}, snap).splitlines()
    assert rows[0].endswith("g0 leader? commit 7") and rows[1].endswith("g0 leader commit 7")
    assert rows[2].endswith("g0 replica? commit 7")


def test_a_new_group_is_not_said_to_vote_again():
    """Right after emulate up every replica is still finding out that its group is new:
    'writes wait until a majority votes again' read like a failure."""
    from roost.emulator.fleet import no_majority_text

    new = no_majority_text("g0", ["n01", "n02", "n03"],
                           ["n01 rebuilding", "n02 rebuilding", "n03 rebuilding"])
    assert new.startswith("group g0: none of its 3 replicas votes yet (all booted with an "
                          "empty flash: a new group") and "again" not in new
    assert no_majority_text("g0", ["n01", "n02", "n03"], ["n01 rebuilding", "n02 down"]) == (
        "group g0: 1 of its 3 replicas vote (n01 rebuilding, n02 down): writes wait until a "
        "majority votes again")
    assert no_majority_text("g0", ["n01", "n02", "n03"], ["n01 down"]) is None


def test_status_says_which_faults_are_in_force():
    """A partition's majority side kept committing while roost status showed its nodes only
    as 'dead' in the other side's views: the fault switch's cuts and losses are said."""
    from roost.gateway.client import faults_text

    run = "running"
    nodes = {"n01": {"process": run, "blocked": ["n03", "n04", "n05"]},
             "n02": {"process": run, "blocked": ["n03", "n04", "n05"], "loss_ppm": 500000},
             "n03": {"process": run, "blocked": ["n01", "n02"]},
             "n04": {"process": run, "blocked": ["n01", "n02"]},
             "n05": {"process": run, "blocked": ["n01", "n02"]}}
    assert faults_text(nodes) == "n01,n02 | n03,n04,n05; n02 loses 50% of its datagrams"
    assert faults_text({"n01": {"process": run, "blocked": ["n03"]},
                        "n03": {"process": run}}) == "n01 cut from n03"
    assert faults_text({"n01": {"process": "down", "blocked": ["n03"]}}) == ""


def test_a_boards_boot_follows_its_flash_not_its_clock(tmp_path, monkeypatch):
    """An old board switched on after its --replace spare booted later than the spare
    whenever its clock was set (NTP, a virtual board): the spare stood down for it. A
    flashed board's lowest boot is the floor its flashing wrote, and it announces its
    address (to find a twin) even where every member's address is known."""
    from roost.node.nodemain import Node, wall_floor

    monkeypatch.delenv("ROOST_FLEET_KEY", raising=False)
    monkeypatch.setenv("ROOST_WIFI_PASSWORD", "password1")
    plan = tmp_path / "p"
    st = make(plan, "class", "mqtt://127.0.0.1:1883", KIT, key="k" * 32)
    fcfg, _sec = make_config(_flash_args(plan, "n03"))
    floor = wall_floor() - 3600  # flashed an hour ago
    board = board_config(argparse.Namespace(runtime=dict(fcfg["runtime"], boot_floor=floor), **{
        k: fcfg[k] for k in ("node_id", "fleet", "board", "broker", "udp_port")}))
    cfg = dict(board, storage=str(tmp_path / "b"), udp=["127.0.0.1", 0], sensors="none",
               peers={m: ["127.0.0.1", 9] for m in st["ids"] if m != "n03"})
    node = Node(cfg, key="k" * 32, log=lambda m: None)
    node.runtime.boot()
    assert node.runtime.incarnation == floor and node.addrs is not None
    pi = dict(node_config(st, "n01", str(plan / "fleet.key")), storage=str(tmp_path / "pi"),
              udp=["127.0.0.1", 0], sensors="none")
    pi.pop("mqtt_password_file", None)
    node = Node(pi, key="k" * 32, log=lambda m: None)
    node.runtime.boot()
    assert node.runtime.incarnation >= wall_floor() - 5  # a Pi: its clock
