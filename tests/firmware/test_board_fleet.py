"""A flashed virtual board joins an emulated fleet; signed OTA over MQTT; a pulled plug.

Real processes on 127.0.0.1 only: `roost emulate up --nodes 3` (broker + 3 nodes), `roost
board serve` (the real MicroPython behind a REPL over TCP), `roost flash --join-dir` through
the real mpremote, `roost status --json`, `roost ota publish` (paho) and the board's own MQTT
client. Every process started here is stopped here, by pid, with bounded waits."""

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from roost.firmware import build, ota_publish

ROOT = Path(__file__).resolve().parents[2]
BOARD = "esp32-wrover"  # the classroom kit's board: a replica needs PSRAM (its profile's heap)

pytestmark = pytest.mark.skipif(
    (shutil.which("micropython") is None or shutil.which("mpy-cross") is None)
    and not os.environ.get("CI"), reason="micropython / mpy-cross are not installed")


def roost(*args, timeout=120, module="roost.gateway.cli"):
    env = dict(os.environ)
    env.pop("ROOST_FLEET_KEY", None)
    return subprocess.run([sys.executable, "-m", module] + list(args), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


class Console:
    """The board's serial console (one TCP client), lines collected by a thread."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.lines = []
        self.buf = b""
        self.done = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.done:
            try:
                r, _, _ = select.select([self.sock], [], [], 0.2)
                if not r:
                    continue
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.buf += data
            while b"\n" in self.buf:
                raw, self.buf = self.buf.split(b"\n", 1)
                self.lines.append(raw.decode("utf-8", "replace").strip())

    def has(self, text):
        return any(text in line for line in list(self.lines))

    def close(self):
        self.done = True
        self.t.join(timeout=2)
        self.sock.close()


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError("timed out after %d s waiting for %s (last: %r)" % (timeout, what, last))


def status(d):
    r = roost("status", "--dir", str(d), "--json", timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def board_status(flash):
    try:
        return json.loads((flash / "status.json").read_text())
    except (OSError, ValueError):
        return None


@pytest.fixture
def setup(tmp_path):
    yield from _fleet_and_board(tmp_path, "--board", BOARD)


@pytest.fixture
def romfs_setup(tmp_path):
    """A board with a ROMFS partition. 256 KB of heap: at 192 KB (where test_vboard.py
    shows an update running in place that would not fit from the filesystem) a node in a
    fleet runs out of memory while it receives the update's frames."""
    yield from _fleet_and_board(tmp_path, "--heap", "256", "--romfs", "192")


def stop_proc(p):
    """SIGTERM a process started here, SIGKILL after 10 s."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def start_board(procs, flash, *board_args):
    """`roost board serve` on a free port, its process in procs["board"]: -> its socket:// URL."""
    procs["board"] = subprocess.Popen(
        [sys.executable, "-m", "roost.gateway.cli", "board", "serve", "--port", "0",
         "--dir", str(flash), *board_args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ready, _, _ = select.select([procs["board"].stdout], [], [], 20)
    line = procs["board"].stdout.readline() if ready else ""
    assert "socket://" in line, line
    return line.split(" on ", 1)[1].split(",", 1)[0]


def _fleet_and_board(tmp_path, *board_args):
    fleet = tmp_path / "fleet"
    flash = tmp_path / "flash"
    flash.mkdir()
    procs = {}
    try:
        r = roost("emulate", "up", "--nodes", "3", "--dir", str(fleet), "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        url = start_board(procs, flash, *board_args)
        yield fleet, flash, url, procs
    finally:
        if procs.get("board") is not None:
            stop_proc(procs["board"])
        if (fleet / "fleet.json").exists():
            roost("emulate", "down", "--dir", str(fleet), timeout=60)


def _update_to_v2(fleet, flash, img, before, timeout, board="esp32"):
    """Build v2 into img, publish it to n04 signed over MQTT, and wait until the board runs
    it, rejoined and confirmed (a new incarnation): -> the board's status then."""
    build.build(board, img, 1, "v2")
    r = roost("ota", "publish", "--dir", str(fleet), "--target", "n04", "--serial", "1",
              "--version", "v2", "--image", str(img), "--board", board, "--json")
    assert r.returncode == 0, r.stdout + r.stderr

    def updated():
        b = board_status(flash)
        if not b or not b.get("joined"):
            return None
        bd = b["board"]
        return b if (bd["slot"] == "b" and bd["version"] == "v2" and bd["trial"] == -1
                     and b["incarnation"] > before["incarnation"]) else None

    return wait_for(updated, timeout, "the update to be switched and confirmed")


def test_flashed_board_joins_updates_over_mqtt_refuses_tampering_and_its_plug_is_pulled(
        setup, tmp_path):
    fleet, flash, url, procs = setup
    # 1. roost flash through mpremote, following the console until the node joined
    t0 = time.monotonic()
    r = roost("flash", "--port", url, "--board", BOARD, "--node-id", "n04", "--join-dir",
              str(fleet), "--json", "--timeout", "60", timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(r.stdout)
    assert "roost: joined fleet emu as n04" in res["line"]
    print("flash to joined: %.1f s" % (time.monotonic() - t0))
    key = (fleet / "fleet.key").read_text().strip()
    assert key not in r.stdout + r.stderr  # the fleet key is never shown
    # the virtual board keeps what it printed beside its flash, whoever held the port
    console = flash.with_name(flash.name + ".console.log").read_text(errors="replace")
    assert "roost: joined fleet emu as n04" in console and key not in console

    # 2. alive in roost status: every view (the fleet's nodes learned its address)
    def n04_alive():
        st = status(fleet)
        m = st["members"].get("n04", {})
        return st if (m.get("state") == "alive" and m["views"].get("alive") == 4
                      and st["nodes"]["n04"]["process"] == "running") else None

    st = wait_for(n04_alive, 30, "n04 alive in every view")
    for n in ("n01", "n02", "n03"):
        assert "n04" in st["nodes"][n]["sees_alive"]
    before = board_status(flash)
    assert before["board"]["slot"] == "a" and before["board"]["serial"] == 0

    con = Console(int(url.rsplit(":", 1)[1]))
    try:
        # 3. a signed update over MQTT: verified, staged, switched, confirmed on rejoin
        img = tmp_path / "img-v2"
        after = _update_to_v2(fleet, flash, img, before, 60, BOARD)
        assert json.loads((flash / "slots" / "state.json").read_text()) == ["b", "a", -1, 1,
                                                                            "v2"]
        wait_for(lambda: con.has("update confirmed in slot b"), 20, "the confirm line")
        assert con.has("verified and switched")
        wait_for(n04_alive, 30, "n04 alive again after the update")

        # 4. tampered updates: refused, counted, logged; the node keeps running v2
        files = ota_publish.image_files(img)
        broker = json.loads((fleet / "fleet.json").read_text())["broker"]["url"]
        m, tag = ota_publish.make_bundle(files, key, 2, "v3-tampered", BOARD)
        frames = ota_publish.frames(m, tag, files)
        bad = bytearray(frames[2])
        bad[-1] ^= 0x01  # one bit of one file
        frames[2] = bytes(bad)
        ota_publish.publish(broker, "roost/emu/ota/n04", frames)
        m2, _ = ota_publish.make_bundle(files, key, 3, "v4-forged", BOARD)
        forged = ota_publish.frames(m2, ota_publish.ota.sign("not-the-fleet-key", m2), files)
        ota_publish.publish(broker, "roost/emu/ota/" + BOARD, forged)  # by board kind

        def refused():
            b = board_status(flash)
            o = (b or {}).get("board", {}).get("ota", {})
            return b if (o.get("rx_rejected_hash_mismatch") == 1
                         and o.get("rx_rejected_bad_signature") == 1) else None

        b = wait_for(refused, 30, "both tampered updates to be refused")
        assert b["incarnation"] == after["incarnation"]  # no reset
        assert b["board"]["slot"] == "b" and b["board"]["version"] == "v2"
        assert json.loads((flash / "slots" / "state.json").read_text())[:4] == ["b", "a", -1, 1]
        assert not (flash / "slots" / "staging").exists()
        wait_for(lambda: con.has("v3-tampered refused (hash_mismatch)")
                 and con.has("v4-forged refused (bad_signature)"), 10, "the refusal lines")
        time.sleep(2)
        assert board_status(flash)["incarnation"] == after["incarnation"]
        n04_alive() or wait_for(n04_alive, 20, "n04 still alive after the refusals")
    finally:
        con.close()

    # 5. pull the plug: kill `roost board serve` (its interpreter dies with it)
    procs["board"].send_signal(signal.SIGKILL)
    procs["board"].wait(timeout=10)

    def n04_dead():
        st = status(fleet)
        m = st["members"].get("n04", {})
        return st if (m.get("state") == "dead" and m["views"].get("dead") == 3
                      and st["nodes"]["n04"]["process"] == "down") else None

    st = wait_for(n04_dead, 60, "the fleet to see n04 dead")
    for n in ("n01", "n02", "n03"):
        assert st["members"][n]["state"] == "alive"

    # 6. power it up again: a new `roost board serve` on its flash dir, a new pid, found by
    # that dir (roost status said a board powered up again was down for good)
    start_board(procs, flash, "--board", BOARD)

    def n04_back():
        st = status(fleet)
        return st if (st["nodes"]["n04"]["process"] == "running"
                      and st["members"].get("n04", {}).get("state") == "alive") else None

    st = wait_for(n04_back, 60, "n04 running and alive again after its power-up")
    assert st["nodes"]["n04"]["pid"] == procs["board"].pid


def test_a_romfs_board_takes_a_signed_update_over_mqtt_into_its_partition(romfs_setup,
                                                                          tmp_path):
    """The update arrives as files in slot b; at the reset into it, its code is written
    into the ROMFS partition and runs in place there, joins, and is confirmed."""
    fleet, flash, url, procs = romfs_setup
    r = roost("flash", "--port", url, "--node-id", "n04", "--join-dir", str(fleet), "--romfs",
              "--json", "--timeout", "60", timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "roost: joined fleet emu as n04" in json.loads(r.stdout)["line"]
    before = wait_for(lambda: board_status(flash), 20, "the board's status")
    con = Console(int(url.rsplit(":", 1)[1]))
    try:
        _update_to_v2(fleet, flash, tmp_path / "img-v2", before, 90)
        wait_for(lambda: con.has("update confirmed in slot b"), 20, "the confirm line")
        assert con.has("the code of slot b is now in the ROMFS partition")
        assert con.has("code slot b version v2 (on trial), in place from ROMFS")
        assert not con.has("does not fit") and not con.has("Traceback")
    except AssertionError:
        print("board console:\n" + "\n".join(con.lines[-80:]))
        raise
    finally:
        con.close()
    assert json.loads((flash / "slots" / "state.json").read_text()) == ["b", "a", -1, 1, "v2"]
    assert json.loads((flash / "slots" / "rom.json").read_text()) == "b"
    assert (flash / "slots" / "a" / "rom.img").exists()  # the flashed code, for a roll-back
    assert (tmp_path / "flash.romfs").read_bytes()[:8] == build.romfs_image(
        flash / "slots" / "b")[:8]


class _FakeClient:
    def __init__(self):
        self.on_message = None
        self.subs = []
        self.published = []

    def subscribe(self, t, qos=1):
        self.subs.append(t)

    def publish(self, t, payload, qos=0, retain=False):
        self.published.append((t, payload))


def test_ota_frames_switch_and_garbage_is_counted_never_raised(tmp_path):
    from roost.firmware import bootsel
    from roost.node.ota_mqtt import OtaMqtt, frame_end

    root = str(tmp_path)
    c = _FakeClient()
    lines = []
    o = OtaMqtt(c, "lab", "n04", "esp32", "k" * 16, root, lines.append)
    assert c.subs == ["roost/lab/ota/n04", "roost/lab/ota/esp32"]
    for junk in (b"", b"ROTA1", b"ROTA1M\xff\xff", b"ROTA1Q" + b"\x00" * 20, b"x" * 300,
                 b"ROTA1F\x00\x00\x00\x01\x00\x00", frame_end(7)):
        c.on_message("roost/lab/ota/n04", junk, False)  # never raises
    assert not o.reset_pending and o.stats["rx_rejected_malformed"] >= 3
    # pieces of a stream whose start it missed (it reset meanwhile): said once, not left
    # "arriving" with every piece ignored
    said = [json.loads(p) for t, p in c.published if t == "roost/lab/node/n04/ota"]
    lost = [x for x in said if x["reason"] == "interrupted"]
    assert lost == [{"serial": 1, "version": "", "result": "refused", "reason": "interrupted"}]
    files = {"roost/a.py": b"print(1)\n" * 600, "roost/b.py": b""}
    m, tag = ota_publish.make_bundle(files, "k" * 16, 1, "v2")
    # a stale retained bundle after its own update is not news; a fresh one switches
    for f in ota_publish.frames(m, tag, files, chunk=1000):
        c.on_message("roost/lab/ota/esp32", f, False)
    assert o.reset_pending and bootsel.read_state(root)[:4] == ["b", "a", 2, 1]
    assert (tmp_path / "slots" / "b" / "roost" / "a.py").read_bytes() == files["roost/a.py"]
    # a second update published at once arrives while the board switches: refused, said
    # on its result topic (its frames were dropped without a word, the broker's copy gone)
    m3, tag3 = ota_publish.make_bundle(files, "k" * 16, 3, "v3")
    for f in ota_publish.frames(m3, tag3, files, chunk=1000):
        c.on_message("roost/lab/ota/n04", f, False)
    said = [json.loads(p) for t, p in c.published if t == "roost/lab/node/n04/ota"]
    assert said[-1] == {"serial": 3, "version": "v3", "result": "refused",
                        "reason": "switching"}, said
    assert bootsel.read_state(root)[:4] == ["b", "a", 2, 1]
    # the switched update's end goes to the result topic too: confirmed when it joined,
    # rolled back when the board came back on the slot before it
    o.report_state("confirmed")
    said = [json.loads(p) for t, p in c.published if t == "roost/lab/node/n04/ota"]
    assert said[-1] == {"serial": 1, "version": "v2", "result": "confirmed", "reason": ""}
    bootsel.write_state(root, ["a", "b", -1, 1, "rollback"])
    o.report_state("rolled_back")
    said = [json.loads(p) for t, p in c.published if t == "roost/lab/node/n04/ota"]
    assert said[-1] == {"serial": 1, "version": "", "result": "rolled_back", "reason": ""}
    # a refused stream's pieces are not "interrupted" (that overwrote the real reason)
    c4 = _FakeClient()
    OtaMqtt(c4, "lab", "n04", "esp32", "k" * 16, str(tmp_path / "fresh"), lines.append)
    for f in ota_publish.frames(m3, ota_publish.ota.sign("x" * 16, m3), files, chunk=1000):
        c4.on_message("roost/lab/ota/n04", f, False)
    said = [json.loads(p)["reason"] for t, p in c4.published if t == "roost/lab/node/n04/ota"]
    assert said == ["bad_signature"], said
    with pytest.raises(ValueError, match="serial must be 1 to 4294967295"):
        ota_publish.make_bundle(files, "k" * 16, 1 << 32, "v9")
    o2 = OtaMqtt(_FakeClient(), "lab", "n04", "esp32", "k" * 16, root, lines.append)
    assert o2.handle(ota_publish.frames(m, tag, files, single=True)[0], retained=True) == "stale"
    assert not any("v2 refused" in ln for ln in lines)
    with pytest.raises(ValueError, match="does not fit one message"):
        ota_publish.frames(m, tag, {"roost/a.py": b"x" * 20000, "roost/b.py": b""}, single=True)


def test_every_ota_frame_fits_the_packet_a_board_from_a_plan_takes():
    """Boards flashed from a plan run the Wi-Fi preset: a frame over its max_packet is
    skipped by the board (acknowledged, counted), so such an update never completes. An
    esp32 image's 52 files made a 5.4 KB manifest and 4 KB pieces; the preset took 4 KB."""
    from roost.node.mqtt import WIFI, MQTTConfig
    from roost.node.ota_mqtt import ota_topic

    limit = MQTTConfig(**WIFI).max_packet
    files = {"roost/node/module_with_a_long_name_%02d.mpy" % i: bytes(range(256)) * 23
             for i in range(60)}
    m, tag = ota_publish.make_bundle(files, "k" * 16, 3, "v3")
    topic = ota_topic("classroom-fleet", "esp32-wrover")
    for f in ota_publish.frames(m, tag, files):
        assert len(f) + len(topic) + 4 <= limit  # topic length, packet id: the remaining length
    many = {"roost/x%03d.mpy" % i: b"1" for i in range(100)}
    m, tag = ota_publish.make_bundle(many, "k" * 16, 4, "v4")
    with pytest.raises(ValueError, match="100 files are too many"):
        ota_publish.frames(m, tag, many)
