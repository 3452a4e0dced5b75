"""The real fleet: 5 node processes (2 on MicroPython), a real broker, clients over UDP.

CPython only; 127.0.0.1 only; every wait is bounded; only processes this fleet started are
signalled (by the pids recorded in its directory). One fleet serves the tests in file order:
leader kill under load, restart and catch-up, broker outage, security injection, shutdown.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from roost.common.channel import Channel
from roost.emulator import chaos, fleet
from roost.emulator.linearize import check, load_history
from roost.gateway import client
from roost.node.kv import KV_REQUEST, OP_PUT

ROOT = Path(__file__).resolve().parents[2]
IN_CI = bool(os.environ.get("CI"))


def _need(ok: bool, why: str) -> None:
    if not ok:
        if IN_CI:
            pytest.fail(why + " (required in CI)")
        pytest.skip(why)


def _brokers_available() -> bool:
    from roost.gateway.broker import amqtt_available, mosquitto_path

    return mosquitto_path() is not None or amqtt_available()


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    yield from fleet_for_test(tmp_path_factory.mktemp("fleet"), 5, 2)


@pytest.fixture(scope="module")
def roomy(tmp_path_factory):
    """A second, small fleet for tests that must create keys: the loads on emu's store fill
    it to its max_keys (128), and a new key is then refused as full."""
    yield from fleet_for_test(tmp_path_factory.mktemp("roomy"), 3, 0)


def fleet_for_test(d: Path, nodes: int, micropython: int):
    """A fixture's body: a healthy fleet of one 3-replica group in d, then down with no
    stray process left."""
    _need(shutil.which("micropython") is not None, "micropython is not installed")
    _need(_brokers_available(), "no MQTT broker (mosquitto or amqtt) is installed")
    try:
        snap = fleet.up(d, nodes, micropython=micropython, groups=1, replicas=3, timeout_s=40)
        assert snap["health"]["healthy"], "fleet did not come up: %s" % snap["health"]
        yield d
    finally:
        fleet.down(d)
        assert not _our_processes(d), "stray processes after down: %s" % _our_processes(d)


def _our_processes(d: Path) -> list[int]:
    out = []
    marker = str(Path(d).resolve()).encode()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes()
            stat = (p / "stat").read_text()
        except OSError:
            continue
        if marker in cmd and stat.rsplit(")", 1)[1].split()[0] != "Z":
            out.append(int(p.name))
    return out


def _status(d: Path) -> dict:
    """What `roost status --json` prints (run as the command, as a user would)."""
    r = subprocess.run([sys.executable, "-m", "roost.gateway.cli", "status", "--dir", str(d),
                        "--json"], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _wait(pred, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout_s, what))


def _leader(d: Path) -> str | None:
    snap = fleet.snapshot(fleet.load_state(d))
    ls = snap["health"]["leaders"].get("g0") or []
    return ls[0] if len(ls) == 1 else None


def _healthy(d: Path) -> bool:
    return fleet.snapshot(fleet.load_state(d))["health"]["healthy"]


# ---------------------------------------------------------------- leader kill under load


def test_sigkill_leader_under_load_writes_resume_and_history_is_linearizable(emu):
    d = emu
    leader = _leader(d)
    assert leader is not None
    state = fleet.load_state(d)
    group = state["groups"][0][1]
    assert any(state["nodes"][n]["interp"] == "micropython" for n in group)
    hist = d / "history.jsonl"
    result: dict = {}

    def load():
        result["s"] = client.run_load(d, clients=4, duration_s=9, history=str(hist), keys=120,
                                      mix="append:1,get:4", seed=5, key_prefix="a")

    th = threading.Thread(target=load)
    t0 = time.monotonic()
    th.start()
    time.sleep(3)
    t_kill = time.monotonic() - t0
    assert chaos.kill(d, leader)
    th.join(60)
    assert not th.is_alive()
    s = result["s"]
    ops = [json.loads(line) for line in hist.read_text().splitlines()]
    # writes resumed: acknowledged appends that were called well after the kill
    after = [o for o in ops if o["ok"] and o["op"] == "append" and o["call"] > t_kill + 1.5]
    assert len(after) >= 20, "writes did not resume after killing %s: %s" % (leader, s)
    new_leader = _wait(lambda: _leader(d), 10, "a new leader")
    assert new_leader != leader
    _nothing_acknowledged_lost(d, ops)
    (d / "killed").write_text(leader)


def _nothing_acknowledged_lost(d: Path, ops: list) -> None:
    """Read every key once more after the load: every acknowledged append is in its final
    value, and the history with those reads is linearizable."""
    final = {}
    base = max(o["return"] or o["call"] for o in ops) + 10.0  # after the load, on its clock
    for k in sorted({o["key"] for o in ops}):
        rec = client.kv_once(d, "get", k)
        assert rec["ok"] is True, rec
        final[k] = rec.get("output") or ""
        rec["call"] += base
        rec["return"] += base
        ops.append(rec)
    for o in ops:
        if o["op"] == "append" and o["ok"] is True:
            assert o["value"] in final[o["key"]], "acknowledged append %s lost" % o
    res = check(load_history([json.dumps(o) for o in ops]), timeout_s=60)
    assert res.verdict is True, "history is not linearizable: %s" % "\n".join(res.explain())


def test_restarted_node_catches_up_from_its_own_directory_and_rejoins(emu):
    d = emu
    killed = (d / "killed").read_text()
    # the gateway saw the pulled plug through the broker: the killed node's Last Will
    _wait(lambda: killed in ((_status(d)["gateway"] or {}).get("offline") or []), 25,
          "the gateway to see %s offline" % killed)
    st0 = fleet.read_status(fleet.load_state(d), _leader(d))
    commit_before = st0["host"]["group"]["commit"]
    first = _boots(d, killed)[-1][0]  # the boot number of the run that was killed
    chaos.restart(d, killed)

    def caught_up():
        st = _status(d)
        v = st["nodes"][killed]
        g = v.get("group") or {}
        top = max(st["groups"][0]["commit"].values())
        return ((v.get("incarnation") or 0) > first and g.get("commit", -1) >= commit_before
                and g.get("commit") == top and len(v.get("sees_alive", [])) == 5
                and all(killed in (st["nodes"][n].get("sees_alive") or [])
                        for n in st["nodes"]))

    _wait(caught_up, 30, "%s to rejoin and catch up" % killed)
    boot, keys = _boots(d, killed)[-1]  # recovered from its own directory
    assert boot > first and keys > 2, _boots(d, killed)
    _wait(lambda: _healthy(d), 20, "the fleet to be healthy again")
    gw = _wait(lambda: (lambda g: g if g and len(g.get("online") or []) == 5 else None)(
        _status(d)["gateway"]), 15, "the gateway to see every node online again")
    assert gw["process"] == "running" and gw["view"]["broker_connected"]
    assert all(v["readings"] > 0 for v in gw["view"]["nodes"].values()), gw


def _boots(d: Path, node: str) -> list[tuple[int, int]]:
    """(boot number, flash records recovered) of each start in the node's log."""
    log = (Path(fleet.load_state(d)["nodes"][node]["dir"]) / "node.log").read_text()
    out = []
    for x in log.splitlines():
        if " boot " in x and ": recovered " in x:
            words = x.split(" boot ", 1)[1].split()
            out.append((int(words[0].rstrip(":")), int(words[2])))
    return out


def test_a_member_whose_flash_was_wiped_is_heard_again(emu):
    """A board flashed again with --firmware (or a Pi whose data directory was deleted)
    starts with an empty flash: its boot number must still pass the one its peers last saw,
    or they drop everything it sends as replays and it never rejoins. A member's lowest boot
    number is the time (seconds since 2020; roost flash writes it into a board's config)."""
    d = emu
    _wait(lambda: _healthy(d), 60, "a healthy fleet")
    state = fleet.load_state(d)
    replicas = {m for _, ms in state["groups"] for m in ms}
    member = [n for n in state["ids"] if n not in replicas][0]
    before = _status(d)["nodes"][member]["incarnation"]
    assert chaos.kill(d, member)
    flash = Path(state["nodes"][member]["dir"]) / "flash"
    shutil.rmtree(flash)
    chaos.restart(d, member)

    def heard():
        st = _status(d)
        v = st["nodes"][member]
        return (v.get("incarnation") or 0) > before and all(
            member in (st["nodes"][n].get("sees_alive") or []) for n in st["nodes"])

    _wait(heard, 40, "%s, wiped, to be seen alive by every node" % member)
    _wait(lambda: _healthy(d), 30, "the fleet to be healthy again")


def test_a_paced_load_keeps_to_its_rate(emu):
    """roost load --rate: a sensor fleet's pace, not as fast as the fleet answers."""
    s = client.run_load(emu, clients=2, duration_s=2, keys=4, mix="put:1,get:1", rate=20)
    ops = s["ok"] + s["failed"] + s["unknown"]
    assert 30 <= ops <= 41 and s["ok"] >= 30, s  # 2 s at 20/s; unpaced: thousands


# ---------------------------------------------------------------- broker outage


def _subscriber(url: str, topic: str, got: list):
    import paho.mqtt.client as mqtt

    host, port = url.split("://")[1].rsplit(":", 1)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-sub", clean_session=False)
    c.reconnect_delay_set(0.2, 1)

    def on_connect(cl, userdata, flags, rc, props=None):
        cl.subscribe(topic, 1)

    c.on_connect = on_connect
    c.on_message = lambda cl, u, m: got.append((m.topic, m.payload))
    c.connect(host, int(port), keepalive=5)
    c.loop_start()
    return c


def test_broker_outage_gossip_and_kv_continue_and_buffered_readings_arrive(emu):
    d = emu
    state = fleet.load_state(d)
    url = state["broker"]["url"]
    got: list = []
    sub = _subscriber(url, "roost/%s/node/+/data" % state["fleet"], got)
    try:
        _wait(lambda: len(got) >= 5, 15, "readings through the broker")
        time.sleep(1.5)  # the broker saves the subscription (autosave every second)
        assert chaos.broker_kill(d)
        t_kill = time.time()
        time.sleep(1)
        # the store and gossip keep working over UDP
        assert client.kv_once(d, "put", "outage", "during")["ok"] is True
        assert client.kv_once(d, "get", "outage")["output"] == "during"
        time.sleep(4)
        assert _healthy(d), fleet.snapshot(fleet.load_state(d))["health"]
        st = _status(d)
        waiting = {n: (v.get("mqtt") or {}).get("outbox", 0) for n, v in st["nodes"].items()}
        assert sum(1 for n in waiting if waiting[n] > 0) >= 3, waiting
        t_back = time.time()
        chaos.broker_restart(d)

        def outage_readings():
            nodes = set()
            for t, payload in list(got):
                r = json.loads(payload)
                if t_kill + 0.5 < r.get("wall", 0) < t_back - 0.5:
                    nodes.add(t.split("/")[3])
            return nodes if len(nodes) == 5 else None

        # every node reconnects with backoff and then empties its outbox: 60 s leaves room
        # for a machine busy with the rest of the suite (30 s ran out once in 10 runs)
        nodes = _wait(outage_readings, 60, "readings taken during the outage")
        mpy = {n for n in state["ids"] if state["nodes"][n]["interp"] == "micropython"}
        assert len(mpy) == 2 and mpy <= nodes  # the MicroPython nodes buffered theirs too
    finally:
        sub.loop_stop()
        sub.disconnect()
    _wait(lambda: _healthy(d), 20, "the fleet to be healthy after the outage")
    for n in state["ids"]:  # each node said so once, not at each retry
        def log(n=n):
            return (d / "nodes" / n / "node.log").read_text()

        # the control loop looks at the connection every 250 ms: its line may follow the
        # readings the reconnection delivered
        _wait(lambda n=n: "roost: %s is back on the broker" % n in log(), 5, n + "'s line")
        assert log().count("roost: %s lost the broker" % n) == 1, log()[-2000:]
        assert log().count("roost: %s is back on the broker" % n) == 1, log()[-2000:]


# ---------------------------------------------------------------- security injection


def test_forged_replayed_oversized_malformed_traffic_is_rejected_and_survived(emu):
    d = emu
    state = fleet.load_state(d)
    key = (d / "fleet.key").read_text().strip()
    leader = _leader(d)
    assert leader is not None
    assert client.kv_once(d, "put", "sec", "good")["ok"] is True
    before = _status(d)
    ports = {n: state["nodes"][n]["port"] for n in state["ids"]}
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    try:
        def blast(payload: bytes, nodes=None):
            for n in nodes or sorted(ports):
                s.sendto(payload, ("127.0.0.1", ports[n]))

        # forged: a wrong fleet key, pretending to be a member and a client
        for who in ("n01", "evil"):
            bad = Channel(who, "not-the-fleet-key", incarnation=99)
            blast(bad.seal(KV_REQUEST, "*", [1, OP_PUT, "sec", "forged", None]))
            blast(bad.seal(1, "*", [1, "n01", [], []]))
        # replayed: a genuine request, sent again after a later write
        cli = Channel("replayer", key, incarnation=int(time.time()))
        genuine = cli.seal(KV_REQUEST, leader, [1, OP_PUT, "sec", "first", None])
        blast(genuine, [leader])
        time.sleep(0.5)
        assert client.kv_once(d, "put", "sec", "second")["ok"] is True
        for _ in range(3):
            blast(genuine, [leader])
        # oversized: above the 1,400-byte datagram limit
        blast(b"\x00" * 1500)
        blast(Channel("n01", key, 0, max_bytes=4000).seal(1, "*", ["x" * 2000]))
        # malformed: random bytes, a valid tag over garbage, a valid envelope with a bad body
        blast(os.urandom(200))
        blast(b"")
        from roost.common.auth import Hmac

        junk = b'{"not": "an envelope"'
        blast(Hmac(key).tag(junk) + junk)
        mal = Channel("mallory", key, incarnation=int(time.time()))
        blast(mal.seal(KV_REQUEST, leader, "not a list"), [leader])
        blast(mal.seal(KV_REQUEST, leader, [1, 99, "sec", None, None]), [leader])
        blast(mal.seal(33, leader, {"ballot": "huge"}), [leader])
        # through the broker: an oversized message in every inbox, a reading nested too
        # deep for the gateway (one killed it writing its view)
        import paho.mqtt.client as mqtt

        host, port = state["broker"]["url"].split("://")[1].rsplit(":", 1)
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-junk")
        pub.connect(host, int(port))
        pub.loop_start()
        try:
            infos = [pub.publish("roost/%s/node/%s/inbox" % (state["fleet"], n),
                                 os.urandom(20000), 1) for n in sorted(ports)]
            infos.append(pub.publish("roost/%s/node/n01/data" % state["fleet"],
                                     b'{"a":' * 980 + b"1" + b"}" * 980, 1))
            for info in infos:
                info.wait_for_publish(10)
        finally:
            pub.loop_stop()
            pub.disconnect()
    finally:
        s.close()
    time.sleep(2.5)  # status files are rewritten every second
    after = _status(d)
    # nothing applied: the value is the last genuine write
    assert client.kv_once(d, "get", "sec")["output"] == "second"
    # every node is still up
    for n in state["ids"]:
        assert after["nodes"][n]["process"] == "running", after["nodes"][n]
        assert after["nodes"][n]["incarnation"] == before["nodes"][n]["incarnation"]
        rej_b = before["nodes"][n]["rejected"]
        rej_a = after["nodes"][n]["rejected"]
        assert rej_a.get("auth", 0) > rej_b.get("auth", 0), (n, rej_a)
        assert rej_a.get("malformed", 0) > rej_b.get("malformed", 0), (n, rej_a)
        c_b = before["nodes"][n]["counters"]
        c_a = after["nodes"][n]["counters"]
        assert c_a["udp_rx_oversize"] >= c_b["udp_rx_oversize"] + 2, (n, c_a)
        assert after["nodes"][n]["counters"]["host_errors"] == 0
        assert rej_a.get("mqtt_oversize", 0) > rej_b.get("mqtt_oversize", 0), (n, rej_a)
    assert fleet.gateway_running(state), "the gateway died of a reading"
    rl = after["nodes"][leader]["rejected"]
    assert rl.get("replay", 0) >= before["nodes"][leader]["rejected"].get("replay", 0) + 3, rl
    assert _healthy(d)


def test_a_request_replayed_after_the_store_forgot_its_client_is_refused(emu):
    """A captured put sent again, unchanged, once 300 clients had come since (the store
    keeps 128 sessions, a replay window 256 senders), was applied again and rolled the
    value back. (A restart, which empties the replay windows, did it with fewer.)"""
    d = emu
    state = fleet.load_state(d)
    key = (d / "fleet.key").read_text().strip()
    leader = _leader(d)
    assert leader is not None
    cli = Channel("capture", key, incarnation=int(time.time()))
    genuine = cli.seal(KV_REQUEST, leader, [cli.incarnation * 10**9 + 1, OP_PUT, "rp", "old",
                                            None])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    try:
        s.sendto(genuine, ("127.0.0.1", state["nodes"][leader]["port"]))
        time.sleep(0.5)
        assert client.kv_once(d, "get", "rp")["output"] == "old"
        assert client.kv_once(d, "put", "rp", "new")["ok"] is True
        # 300 clients: past the 128 sessions and the replay windows' 256 senders
        load = client.run_load(d, clients=300, duration_s=3, keys=4, mix="get:1")
        assert load["ok"] >= 300, load
        assert _leader(d) == leader, "the leader changed: the replay would be misdirected"
        s.sendto(genuine, ("127.0.0.1", state["nodes"][leader]["port"]))
        time.sleep(1)
    finally:
        s.close()
    assert client.kv_once(d, "get", "rp")["output"] == "new"
    # (a node's status may lag a moment behind a 300-client load: waited for, not asserted)
    _wait(lambda: _healthy(d), 60, "healthy after the load and the replay")


# ---------------------------------------------------------------- shutdown


def _all_undone(d: Path) -> bool:
    """Every node running and not paused, no partition or loss in force, the broker up."""
    state = fleet.load_state(d)
    snap = fleet.snapshot(state)
    switch = chaos.FaultSwitch(d)
    return (all(v["process"] == "running" for v in snap["nodes"].values())
            and all(not switch.read(n).get("blocked") and not switch.read(n).get("loss")
                    for n in state["ids"])
            and fleet.pid_alive(state["broker"]["pid"], fleet.broker_marker(state)))


def test_chaos_run_under_load_undoes_everything_and_the_history_is_linearizable(emu):
    """`roost chaos run`: a seeded mix of kills, pauses, partitions, loss and broker kills
    while clients write; at the end every fault is undone, and the history holds."""
    d = emu
    _wait(lambda: _healthy(d), 60, "a healthy fleet")
    hist = d / "chaos-history.jsonl"
    load: dict = {}
    t = threading.Thread(target=lambda: load.update(client.run_load(
        d, clients=2, duration_s=12, history=str(hist), keys=20, mix="put:1,get:1,append:1",
        key_prefix="chaos")))
    t.start()
    r = subprocess.run([sys.executable, "-m", "roost.gateway.cli", "chaos", "run", "--dir",
                        str(d), "--duration", "9", "--seed", "5", "--interval", "0.8",
                        "--json"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    t.join(60)
    assert r.returncode == 0, r.stderr
    events = json.loads(r.stdout)["events"]
    assert len({e["fault"] for e in events}) >= 3 and events[-1]["fault"] == "healed_all"
    assert "failed" not in events[-1], events[-1]
    assert _all_undone(d)
    assert load.get("ok", 0) > 50, load
    res = check(load_history(str(hist)))
    assert res.verdict is True, res.explain()
    _wait(lambda: _healthy(d), 60, "healthy after the chaos")


def test_chaos_run_stopped_by_sigterm_undoes_its_faults(emu):
    """A CI step's timeout sends SIGTERM: the run stops as on Ctrl-C, undoing what it did
    (a node it paused stayed paused)."""
    d = emu
    _wait(lambda: _healthy(d), 60, "a healthy fleet")
    p = subprocess.Popen([sys.executable, "-m", "roost.gateway.cli", "chaos", "run", "--dir",
                          str(d), "--duration", "60", "--seed", "13", "--interval", "0.4"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                         start_new_session=True)
    try:
        time.sleep(4)
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    assert p.returncode == 130, out
    assert "healed_all" in out, out
    assert "replay the same schedule: roost chaos run --duration 60 --seed 13" in out, out
    assert _all_undone(d)
    _wait(lambda: _healthy(d), 60, "healthy after the stopped chaos run")


def _roost(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "roost.gateway.cli", *argv],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_a_pipelines_health_gate_and_exit_codes(emu):
    """What a CI script leans on: `roost emulate status` exits 0 only when healthy, 1 with
    a node down (and its --json says which)."""
    d = emu
    _wait(lambda: _healthy(d), 60, "a healthy fleet")
    assert _roost("emulate", "status", "--dir", str(d)).returncode == 0
    victim = [n for n in fleet.load_state(d)["ids"] if n != _leader(d)][-1]
    assert chaos.kill(d, victim)
    r = _roost("emulate", "status", "--dir", str(d), "--json")
    assert r.returncode == 1, r.stdout
    assert "%s is down" % victim in json.loads(r.stdout)["health"]["problems"]
    assert chaos.restart(d, victim)
    _wait(lambda: _healthy(d), 60, "healthy again")


def test_a_paused_leaders_old_report_is_marked_in_the_status_table(emu):
    """A hung board (SIGSTOP) keeps its last report, which says it leads; once another
    replica leads, `roost status` must not show two plain LEADER rows."""
    d = emu
    _wait(lambda: _healthy(d), 60, "a healthy fleet")
    old = _leader(d)
    assert chaos.pause(d, old)
    try:
        def table():
            r = _roost("status", "--dir", str(d))
            assert r.returncode == 0, r.stderr
            rows = [ln.split() for ln in r.stdout.splitlines() if "LEADER" in ln]
            lead = [row[0] for row in rows if "LEADER" in row]
            marked = any(row[0] == old and "LEADER?" in row for row in rows)
            return r.stdout if len(lead) == 1 and lead[0] != old and marked else None

        out = _wait(table, 30, "a new leader, and the paused one's row marked")
        assert "it reports no more: %s (stalled)" % old in out, out
    finally:
        assert chaos.resume(d, old)
    _wait(lambda: _healthy(d), 60, "healthy again")


def test_a_load_with_a_history_refuses_keys_an_earlier_load_filled(roomy):
    """A second `roost load --history` on the same keys would be judged from empty keys and
    look not linearizable (a teacher rehearsal saw NOT linearizable on a correct store): it
    says so and stops, and a new --key-prefix gives a history that checks."""
    d = roomy
    _wait(lambda: _healthy(d), 60, "a healthy fleet")
    rec = client.kv_once(d, "put", "k0", "left by an earlier load")
    assert rec["ok"] is True, rec
    h = d / "second.jsonl"
    r = _roost("load", "--dir", str(d), "--clients", "1", "--duration", "1", "--history", str(h))
    assert r.returncode == 2 and "key k0 already holds a value" in r.stderr, r.stderr
    assert not h.exists()
    r = _roost("load", "--dir", str(d), "--clients", "1", "--duration", "1", "--history", str(h),
               "--key-prefix", "fresh-")
    assert r.returncode == 0, r.stderr
    assert _roost("check", str(h)).returncode == 0


def test_a_load_stopped_by_ctrl_c_or_a_kill_still_writes_its_history(emu):
    """A teacher's Ctrl-C (or a CI step's timeout) lost the whole recorded history: it was
    written only at the end. Now the history so far is written, the operations in flight
    as unknown, and it checks."""
    d = emu
    _wait(lambda: _healthy(d), 60, "a healthy fleet")
    for n, sig in enumerate((signal.SIGINT, signal.SIGTERM)):
        h = d / ("stopped-%d.jsonl" % n)
        p = subprocess.Popen([sys.executable, "-m", "roost.gateway.cli", "load", "--dir", str(d),
                              "--clients", "2", "--duration", "60", "--history", str(h),
                              "--key-prefix", "stopped%d-" % n, "--mix", "append:1,get:1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        time.sleep(3)
        p.send_signal(sig)
        out, err = p.communicate(timeout=30)
        assert p.returncode != 0 and "the history so far" in err, (p.returncode, err)
        ops = [json.loads(line) for line in h.read_text().splitlines()]
        assert len(ops) > 10 and all(o["ok"] is not None or o["return"] is None for o in ops)
        assert _roost("check", str(h)).returncode == 0


def test_kv_exit_codes_tell_a_script_absent_and_not_swapped(roomy):
    """0 done, 4 answered but absent (get) or not swapped (cas): an absent key printed
    "(absent)" with 0, the same as a key holding that text, and a cas that did not swap
    exited 0 too."""
    d = str(roomy)
    _wait(lambda: _healthy(roomy), 60, "a healthy fleet")
    assert _roost("kv", "put", "x/held", "(absent)", "--dir", d).returncode == 0
    r = _roost("kv", "get", "x/held", "--dir", d)
    assert (r.returncode, r.stdout) == (0, "(absent)\n"), r.stderr
    r = _roost("kv", "get", "x/never-written", "--dir", d)
    assert (r.returncode, r.stdout) == (4, "") and "absent" in r.stderr, r.stdout + r.stderr
    r = _roost("kv", "cas", "x/held", "other", "new", "--dir", d)
    assert r.returncode == 4 and "not swapped (the key did not hold 'other')" in r.stdout
    r = _roost("kv", "cas", "x/held", "--absent", "new", "--dir", d)
    assert r.returncode == 4 and "not swapped (the key holds a value)" in r.stdout
    r = _roost("kv", "cas", "x/held", "(absent)", "new", "--dir", d)
    assert (r.returncode, r.stdout) == (0, "swapped\n"), r.stdout + r.stderr
    r = _roost("kv", "cas", "--absent", "x/held", "old", "new", "--dir", d)
    assert r.returncode == 2 and "cas --absent takes NEW only" in r.stderr


def test_clean_shutdown_leaves_no_stray_processes(emu):
    d = emu
    assert len(_our_processes(d)) >= 6  # 5 nodes + the broker
    res = fleet.down(d)
    assert sorted(res["stopped"]) == fleet.load_state(d)["ids"]
    assert res["broker_stopped"]
    assert _our_processes(d) == []
    # a late step of a pipeline, after the teardown: nothing is started again
    for argv in (["restart", "n01"], ["power-cut"], ["broker", "restart"],
                 ["run", "--duration", "2"]):
        r = _roost("chaos", *argv, "--dir", str(d))
        assert r.returncode == 2 and "was stopped" in r.stderr, (argv, r.stderr)
    for argv in (["load", "--clients", "1", "--duration", "1"], ["kv", "get", "k"]):
        r = _roost(*argv, "--dir", str(d))  # at once, not after waiting for an answer
        assert r.returncode == 2 and "was stopped" in r.stderr, (argv, r.stderr)
    assert _our_processes(d) == []
    assert _roost("emulate", "down", "--dir", str(d)).returncode == 0  # twice is fine
    r = _roost("emulate", "down", "--dir", str(d / "never"))
    assert r.returncode == 0 and "nothing to stop" in r.stdout

