"""The virtual board end to end: `roost board serve` as a subprocess, the REAL mpremote
against it, `roost flash` to the started line, a bad config giving one sentence and safe
mode, secrets never shown, and pulling the plug. Every process started here is stopped
here, by pid, with bounded waits."""

import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from roost.firmware import build, flash

ROOT = Path(__file__).resolve().parents[2]
FLEET_KEY = "fleet-key-Zq8#never-printed"
WIFI_PASSWORD = "wifi-pw-Kx2!never-printed"

pytestmark = pytest.mark.skipif(shutil.which("micropython") is None and not os.environ.get("CI"),
                                reason="micropython is not installed")


class Served:
    """A `roost board serve` subprocess on a free loopback port."""

    def __init__(self, flash: Path, pins: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "roost.gateway.cli", "board", "serve", "--port", "0",
             "--dir", str(flash), "--pins", str(pins), *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if ready else ""
        if "socket://" not in line:
            self.stop()
            raise AssertionError("virtual board did not start: %r" % line)
        self.url = line.split(" on ", 1)[1].split(",", 1)[0]
        self.banner = line

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.stdout.read() if self.proc.stdout else ""


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("img") / "esp32"
    build.build("esp32", out)
    return out


def _served(tmp_path: Path, *extra: str) -> Served:
    """A board on an empty flash directory in tmp_path, its pins file beside it."""
    flash = tmp_path / "flash"
    flash.mkdir()
    pins = tmp_path / "pins.json"
    pins.write_text("{}")
    b = Served(flash, pins, *extra)
    b.flash, b.pins = flash, pins
    return b


@pytest.fixture()
def board(tmp_path: Path):
    b = _served(tmp_path)
    yield b
    b.stop()


def _mpremote(url: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mpremote", "connect", url, *args],
                          capture_output=True, text=True, timeout=timeout)


def _flash(url: str, image: Path, *extra: str, env_extra=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, ROOST_FLEET_KEY=FLEET_KEY, ROOST_WIFI_PASSWORD=WIFI_PASSWORD)
    env.update(env_extra or {})
    code = ("import sys, argparse\nfrom roost.firmware import flash\n"
            "ap = argparse.ArgumentParser(); flash.add_flash_parser(ap.add_subparsers())\n"
            "a = ap.parse_args(sys.argv[1:])\n"
            "try:\n    sys.exit(a.handler(a))\n"
            "except ValueError as e:\n    print('roost: %s' % e); sys.exit(2)\n")
    return subprocess.run(
        [sys.executable, "-c", code, "flash", "--port", url, "--board", "esp32",
         "--node-id", "n07", "--fleet", "lab", "--wifi", "roost-lab",
         "--broker", "mqtt://127.0.0.1:1883", "--image", str(image), "--timeout", "30", *extra],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)


class Console:
    """The board's serial console through a plain TCP socket."""

    def __init__(self, url: str) -> None:
        host, port = url[len("socket://"):].split(":")
        self.s = socket.create_connection((host, int(port)), timeout=5)

    def send(self, data: bytes) -> None:
        self.s.sendall(data)

    def read_for(self, seconds: float, until: bytes | None = None) -> bytes:
        out = b""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.s.settimeout(max(0.01, end - time.monotonic()))
            try:
                d = self.s.recv(65536)
            except TimeoutError:
                break
            if not d:
                break
            out += d
            if until is not None and until in out:
                break
        return out

    def soft_reset(self) -> None:
        """Ctrl-C twice, friendly REPL, then Ctrl-D: boot.py and main.py run again."""
        self.send(b"\r\x03\x03\x02")
        self.read_for(0.5)
        self.send(b"\x04")

    def close(self) -> None:
        self.s.close()


def test_real_mpremote_fs_cp_ls_exec(board, tmp_path: Path):
    src = tmp_path / "hello.py"
    src.write_text("GREETING = 'hi from flash'\n" + "PAD = %r\n" % ("x" * 3000))
    out = _mpremote(board.url, "fs", "cp", str(src), ":hello.py", "+", "fs", "mkdir", ":lib",
                    "+", "fs", "ls", "+", "exec", "import hello; print(hello.GREETING)")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "hello.py" in out.stdout and "lib/" in out.stdout and "hi from flash" in out.stdout
    assert (board.flash / "hello.py").read_text() == src.read_text()
    out = _mpremote(board.url, "exec", "1/0")
    assert out.returncode != 0 and "ZeroDivisionError" in out.stdout + out.stderr
    out = _mpremote(board.url, "fs", "cat", "hello.py")
    assert out.returncode == 0 and "GREETING" in out.stdout


def test_raw_repl_without_paste_and_friendly_repl(board):
    c = Console(board.url)
    try:
        c.send(b"\r\x03")
        c.read_for(0.5)
        c.send(b"\r\x01")
        assert c.read_for(5, b"raw REPL; CTRL-B to exit\r\n>").endswith(b"CTRL-B to exit\r\n>")
        c.send(b"print(6*7)\x04")
        got = c.read_for(5, b"\x04>")
        assert got == b"OK42\r\n\x04\x04>", got
        c.send(b"\x05A\x01")
        head = c.read_for(5, b"\x01")
        assert head[:2] == b"R\x01" and int.from_bytes(head[2:4], "little") > 0
        c.send(b"import sys\nprint(sys.implementation.name)\x04")
        got = c.read_for(5, b"\x04>")
        assert got.startswith(b"\x04") and b"micropython\r\n\x04\x04>" in got, got
        c.send(b"\x02")
        assert b">>> " in c.read_for(5, b">>> ")
        c.send(b"x = 5\r")
        c.read_for(2, b">>> ")
        c.send(b"x * 2\r")
        assert b"10\r\n>>> " in c.read_for(5, b">>> ")
    finally:
        c.close()


def test_flash_writes_image_and_config_then_the_node_starts(roomy_board, image: Path):
    # a board the node fits (on the esp32 profile's 100 KB it idles, "does not fit", which
    # flash now waits long enough to see: it waits for the node's own started line)
    board = roomy_board
    out = _flash(board.url, image)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "verified" in text and "board: roost: started n07" in text
    # the console file holds the board's own lines too, not only what its programs print
    console = board.flash.with_name(board.flash.name + ".console.log").read_text()
    assert "MPY: soft reboot\n" in console and "roost: started n07" in console, console
    assert FLEET_KEY not in text and WIFI_PASSWORD not in text
    cfg = json.loads((board.flash / "config.json").read_text())
    assert cfg["node_id"] == "n07" and "fleet_key" not in cfg
    sec = json.loads((board.flash / "secrets.json").read_text())
    assert sec == {"fleet_key": FLEET_KEY, "wifi_password": WIFI_PASSWORD}
    m = json.loads((image / "manifest.json").read_text())
    for rel, _size, digest in m["files"]:
        assert build.sha256_file(board.flash / rel) == digest, rel
    # the board keeps running the node; mpremote still gets in (Ctrl-C) and finds the files
    ls = _mpremote(board.url, "fs", "ls", "slots/a/roost/firmware")
    assert ls.returncode == 0 and "ota.mpy" in ls.stdout, ls.stdout + ls.stderr
    served = board.stop()
    assert FLEET_KEY not in served and WIFI_PASSWORD not in served


def test_flash_with_firmware_erases_the_chip_and_writes_it_through_the_real_esptool(
        roomy_board, image: Path, tmp_path: Path):
    """--firmware: the real esptool finds an ESP32 in download mode, erases it (the board's
    old files go, as a real chip's filesystem does), writes the firmware and checks its
    hash; then the node image goes on and the node starts."""
    board = roomy_board
    (board.flash / "old.txt").write_text("from an earlier flash")
    fw_bytes = b"\xe9\x03\x02\x20" + random.Random(5).randbytes(200_000)
    fw = tmp_path / "ESP32_GENERIC-20260101-v1.29.0.bin"
    fw.write_bytes(fw_bytes)
    out = _flash(board.url, image, "--firmware", str(fw))
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "verified by esptool" in text and "board: roost: started n07" in text, text
    assert not (board.flash / "old.txt").exists()
    assert (board.flash / "config.json").exists()
    chip = (tmp_path / "flash.flash.bin").read_bytes()
    end = 0x1000 + len(fw_bytes)
    assert chip[0x1000:end] == fw_bytes
    assert chip[:0x1000] == chip[end:end + 4096] == b"\xff" * 4096  # erased, not written


def _esp_image(chip: str) -> bytes:
    """A small but valid firmware image for chip ("esp32" or "esp32s3"), made by esptool."""
    from esptool.bin_image import ESP32FirmwareImage, ESP32S3FirmwareImage, ImageSegment

    img = (ESP32S3FirmwareImage if chip == "esp32s3" else ESP32FirmwareImage)()
    seg = ImageSegment(0x3FFB0000, bytes(range(256)) * 16)
    seg.name = ".dram0.data"
    img.segments.append(seg)
    img.entrypoint = 0x40080000
    with tempfile.TemporaryDirectory() as d:
        img.save(d + "/fw.bin")
        return Path(d, "fw.bin").read_bytes()


def test_an_erased_board_answers_nothing_until_a_firmware_is_written(board, image: Path):
    """esptool erase-flash leaves a chip with no MicroPython: roost flash without --firmware
    then says so in one sentence, as it would with a real board."""
    (board.flash / "keep.txt").write_text("x")
    r = subprocess.run([sys.executable, "-m", "esptool", "--port", board.url, "erase-flash"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (board.flash / "keep.txt").exists()
    out = _flash(board.url, image)
    text = out.stdout + out.stderr
    assert out.returncode == 2 and "Traceback" not in text and "b''" not in text, text
    assert "roost: no MicroPython answers on %s" % board.url in text
    assert "needs MicroPython first (roost flash --firmware FILE)" in text


def test_firmware_for_the_wrong_chip_is_refused_by_esptool_in_one_sentence(tmp_path: Path):
    """--board esp32 against an ESP32-S3: esptool (given --chip) refuses before erasing, so
    a classroom's mixed bag of boards cannot end with one that no longer boots."""
    from roost.firmware import flash

    (tmp_path / "s3").mkdir()
    (tmp_path / "s3" / "boot.py").write_text("# the board's own")  # a board's flash
    (tmp_path / "s3" / "keep.txt").write_text("still here")
    b = Served(tmp_path / "s3", tmp_path / "pins.json", "--board", "esp32-s3")
    try:
        fw = tmp_path / "ESP32_GENERIC.bin"
        fw.write_bytes(b"\xe9" + bytes(4095))
        with pytest.raises(ValueError, match="^esptool could not write the firmware: the board "
                           "on socket://.* is an ESP32-S3, not the chip of --board esp32: give "
                           "--board esp32-s3"):
            flash.write_firmware(b.url, "esp32", str(fw), lambda line: None)
        assert (tmp_path / "s3" / "keep.txt").exists()
        # the right --board, a firmware built for an ESP32: esptool reads the image's chip
        # before it erases anything
        s3_fw = tmp_path / "ESP32_GENERIC-v1.29.0.bin"
        s3_fw.write_bytes(_esp_image("esp32"))
        with pytest.raises(ValueError, match="is not an ESP32-S3 image: it is a firmware for "
                           "another chip, so nothing was erased; --board esp32-s3 takes "
                           "ESP32_GENERIC_S3"):
            flash.write_firmware(b.url, "esp32-s3", str(s3_fw), lambda line: None)
        assert (tmp_path / "s3" / "keep.txt").exists()
    finally:
        b.stop()


def _romfs_board(tmp_path: Path) -> tuple[Path, Served]:
    """A virtual board with a 192 KB ROMFS partition and 208 KB of heap beside it: a node
    with its code in the heap needs 256 KB (docs/hardware/firmware.md); from ROMFS it joins
    in 192 KB, and 16 KB more keep an update's trial boot off the edge (at 192 KB it ran
    out of memory in about one run in four once the stand-in machine module grew 1 KB)."""
    b = _served(tmp_path, "--romfs", "192", "--heap", "208")
    return b.flash, b


def test_a_romfs_board_takes_the_code_in_its_partition_and_runs_it_in_place(tmp_path, image):
    """--romfs on both sides: the real mpremote sees the partition, roost flash writes the
    code there (not on the filesystem) and the node starts with its code in place."""
    flash, b = _romfs_board(tmp_path)
    try:
        assert "ROMFS partition 196608 bytes" in b.banner
        q = _mpremote(b.url, "romfs", "query")
        assert "ROMFS0 partition has size 196608 bytes" in q.stdout, q.stdout + q.stderr
        out = _flash(b.url, image, "--romfs")
        text = out.stdout + out.stderr
        assert out.returncode == 0, text
        assert "board: roost: code slot a version" in text and "in place from ROMFS" in text
        assert "board: roost: started n07" in text
        assert not (flash / "slots" / "a" / "roost").exists()
        assert (flash / "boot.py").exists() and (flash / "config.json").exists()
        img = build.romfs_image(image / "slots" / "a")
        assert (tmp_path / "flash.romfs").read_bytes()[:len(img)] == img
        r = _mpremote(b.url, "exec", "import roost.node.paxos as p; print(p.__file__)")
        assert r.stdout.strip().endswith("/rom/roost/node/paxos.mpy"), r.stdout + r.stderr
        q = _mpremote(b.url, "romfs", "query")
        assert "ROMFS image size: " in q.stdout, q.stdout + q.stderr  # what the flash wrote
    finally:
        b.stop()


def test_an_update_on_a_romfs_board_runs_from_the_partition_and_rolls_back_into_it(
        tmp_path, image):
    """A board that fits only with its code in ROMFS (208 KB of heap): an update's files in
    slot b are written into the partition at boot and run in place; when the update does
    not join in time, the flashed code goes back into the partition."""
    flash, b = _romfs_board(tmp_path)
    try:
        out = _flash(b.url, image, "--romfs", "--no-follow")
        assert out.returncode == 0, out.stdout + out.stderr
        assert json.loads((flash / "slots" / "rom.json").read_text()) == "a"
        flashed = (tmp_path / "flash.romfs").read_bytes()
        # an update as OtaStager.finish leaves it: slot b's files, switched, on trial
        v2 = tmp_path / "v2"
        build.build("esp32", v2, 1, "v2")
        shutil.copytree(v2 / "slots" / "a", flash / "slots" / "b")
        (flash / "slots" / "state.json").write_text(json.dumps(["b", "a", 2, 1, "v2"]))
        cfg = json.loads((flash / "config.json").read_text())
        cfg["ota_join_timeout_ms"] = 4000  # no broker here: it never joins
        (flash / "config.json").write_text(json.dumps(cfg))
        c = Console(b.url)
        try:
            c.soft_reset()
            got = c.read_for(90, b"roost: started n07\r\n").decode()
            got += c.read_for(60, b"roost: code slot a").decode()
            got += c.read_for(30, b"roost: started n07\r\n").decode()
        finally:
            c.close()
        lines = [ln.strip() for ln in got.splitlines() if ln.startswith("roost:")]
        want = ["the code of slot b is now in the ROMFS partition",
                "code slot b version v2 (on trial), in place from ROMFS", "started n07",
                "did not join in time; rolling back",
                "the code of slot a is now in the ROMFS partition",
                "code slot a version rollback, in place from ROMFS", "started n07"]
        at = 0
        for w in want:  # in this order
            while at < len(lines) and w not in lines[at]:
                at += 1
            assert at < len(lines), "%r not found in order in:\n%s" % (w, "\n".join(lines))
        assert "Traceback" not in got and "does not fit" not in got, got[-2000:]
        assert json.loads((flash / "slots" / "state.json").read_text()) == [
            "a", "b", -1, 1, "rollback"]
        assert json.loads((flash / "slots" / "rom.json").read_text()) == "a"
        assert (flash / "slots" / "a" / "rom.img").read_bytes() == flashed[:len(
            (flash / "slots" / "a" / "rom.img").read_bytes())]
        assert (tmp_path / "flash.romfs").read_bytes() == flashed  # the flashed code, again
    finally:
        b.stop()


def test_flash_romfs_on_a_board_without_the_partition_is_one_sentence(board, image: Path):
    out = _flash(board.url, image, "--romfs")
    text = out.stdout + out.stderr
    assert out.returncode == 2, text
    assert "has no ROMFS partition" in text and "Traceback" not in text


def test_romfs_mistakes_are_one_sentence(tmp_path: Path, image: Path):
    """A partition too small for the code, and a partition size that is not whole blocks."""
    b = _served(tmp_path, "--romfs", "64")
    try:
        out = _flash(b.url, image, "--romfs")
        text = out.stdout + out.stderr
        assert out.returncode == 2, text
        assert "does not fit the board's 65536-byte partition" in text
        assert "Traceback" not in text
    finally:
        b.stop()
    r = subprocess.run([sys.executable, "-m", "roost.gateway.cli", "board", "serve", "--port",
                        "0", "--dir", str(b.flash), "--romfs", "3"],
                       capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--romfs must be 0 to 16384 KB, a multiple of 4" in r.stdout + r.stderr


@pytest.fixture()
def roomy_board(tmp_path: Path):
    """A board the whole node fits with its code in the heap (it did not at 256 KB: 70 KB
    free when it ran out): on the esp32 profile's 100 KB it prints that it does not fit and
    idles, which roost flash now reports at once."""
    b = _served(tmp_path, "--heap", "512")
    yield b
    b.stop()


def test_bad_config_gives_one_sentence_and_safe_mode_not_a_crash_loop(roomy_board,
                                                                       image: Path):
    board = roomy_board
    assert _flash(board.url, image, "--no-follow").returncode == 0
    (board.flash / "config.json").write_text('{"node_id": "n07", "broker": "tcp://x"}')
    c = Console(board.url)
    try:
        c.soft_reset()  # soft reset: boot.py then main.py
        got = c.read_for(4).decode()
        lines = [ln for ln in got.splitlines() if ln.startswith("roost:")]
        assert lines == ["roost: safe mode: config.json broker 'tcp://x' must start with "
                         "mqtt:// or mqtts://; fix it and reset the board."], got
        assert got.count("soft reboot") == 1 and "rst:" not in got and "Traceback" not in got
        assert got.rstrip().endswith(">>>"), got  # at the REPL, waiting
        c.send(b"1+1\r")
        assert b"2\r\n>>> " in c.read_for(5, b"2\r\n>>> ")
    finally:
        c.close()
    # a flash rewrites the config, the node starts; a line that never comes is one sentence
    out = _flash(board.url, image, "--wait-for", "never-printed", "--timeout", "3")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "board: roost: started n07" in out.stdout
    assert "roost: the board did not print 'never-printed' within 3 s" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr, out.stdout[-1500:]
    assert FLEET_KEY not in out.stdout + out.stderr and WIFI_PASSWORD not in out.stdout


def test_safe_mode_pin_skips_main(board, image: Path):
    assert _flash(board.url, image, "--no-follow").returncode == 0
    board.pins.write_text(json.dumps({"0": 0}))  # hold GPIO0 (BOOT) low
    c = Console(board.url)
    try:
        c.soft_reset()
        got = c.read_for(4, b">>> ").decode()
        assert "roost: safe mode: pin 0 was held at reset, main.py skipped" in got, got
        assert "roost: started" not in got
    finally:
        c.close()
    out = _flash(board.url, image)  # flash reports safe mode as one sentence
    assert out.returncode == 2 and "the board is in safe mode: pin 0" in out.stdout, out.stdout
    board.pins.write_text("{}")


def _console_script(lines: list[tuple[float, str]]) -> str:
    """A main.py that prints the given console lines after the given pauses, then ends
    (the board's REPL takes over, ready for the next reset)."""
    body = "".join("time.sleep(%r)\nprint(%r)\n" % (t, line) for t, line in lines)
    return "import time\n" + body


def _follow(url: str, timeout: float, said: list) -> str:
    """roost flash's console follow on a virtual board: reset it, read until joined."""
    b = flash.Board(url, timeout)
    try:
        return b.reset_and_follow("roost: joined fleet", said.append, lambda x: x)
    finally:
        b.close()


def test_flash_follows_a_rebuilding_replica_until_it_votes(board):
    """A replica flashed with an empty flash says it is rebuilding before it joins; roost
    flash goes on reading its console until it votes (or says that it still rebuilds)."""
    (board.flash / "boot.py").write_text("")
    (board.flash / "main.py").write_text(_console_script([
        (0.1, "roost: started n07"),
        (0.1, "roost: n07 replica flash empty: rebuilding before it votes"),
        (0.2, "roost: joined fleet lab as n07"),
        (1.0, "roost: n07 rebuilt: votes again")]))
    said: list[str] = []
    assert _follow(board.url, 10, said) == "roost: joined fleet lab as n07"
    assert said[-1] == "board: roost: n07 rebuilt: votes again", said
    # one that is still rebuilding when the time is up: said, and the joined line returned
    (board.flash / "main.py").write_text(_console_script([
        (0.1, "roost: n07 replica flash empty: rebuilding before it votes"),
        (0.1, "roost: joined fleet lab as n07"),
        (0.1, "roost: n07 still rebuilding before it votes: 1 of the other replicas answer "
              "it as voters, it needs 2")]))
    said.clear()
    assert _follow(board.url, 8, said) == "roost: joined fleet lab as n07"
    assert "still rebuilding after 8 s" in said[-1], said
    # and why, from what it said, with what to do
    assert "it said 1 of the other replicas answer it as voters, it needs 2: switch its " \
        "group's other replicas on" in said[-1], said
    # a replica of a new group: no rebuilding line, the joined line ends it at once
    (board.flash / "main.py").write_text(_console_script([
        (0.1, "roost: joined fleet lab as n07"), (5.0, "roost: never read")]))
    said.clear()
    assert _follow(board.url, 10, said)
    assert not any("never read" in x for x in said), said


def _children(pid: int) -> list[int]:
    try:
        text = Path("/proc/%d/task/%d/children" % (pid, pid)).read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def test_pulling_the_plug_kills_the_interpreter(board):
    kids = []
    for _ in range(50):
        kids = _children(board.proc.pid)
        if kids:
            break
        time.sleep(0.1)
    assert kids, "no interpreter under the virtual board"
    board.proc.send_signal(signal.SIGKILL)
    board.proc.wait(timeout=10)
    for _ in range(50):
        if not any(Path("/proc/%d" % k).exists() and "zombie" not in _state(k) for k in kids):
            break
        time.sleep(0.1)
    assert not any(Path("/proc/%d" % k).exists() and "zombie" not in _state(k) for k in kids)


def _state(pid: int) -> str:
    try:
        for line in Path("/proc/%d/status" % pid).read_text().splitlines():
            if line.startswith("State:"):
                return line
    except OSError:
        return "gone"
    return ""


def test_flash_mistakes_are_one_sentence(tmp_path: Path):
    import argparse

    from roost.firmware import flash

    ap = argparse.ArgumentParser()
    flash.add_flash_parser(ap.add_subparsers())

    def args(*extra):
        return ap.parse_args(["flash", "--port", "socket://127.0.0.1:9", "--node-id", "n07",
                              "--broker", "mqtt://h:1883", *extra])

    env = dict(os.environ)
    os.environ.pop("ROOST_FLEET_KEY", None)
    os.environ.pop("ROOST_WIFI_PASSWORD", None)
    try:
        with pytest.raises(ValueError, match="no fleet key: set ROOST_FLEET_KEY"):
            flash.flash(args(), say=lambda s: None)
        os.environ["ROOST_FLEET_KEY"] = FLEET_KEY
        with pytest.raises(ValueError, match="no Wi-Fi password"):
            flash.flash(args("--wifi", "lab"), say=lambda s: None)
        with pytest.raises(ValueError, match="must start with mqtt://"):
            flash.flash(ap.parse_args(["flash", "--port", "x", "--node-id", "n1",
                                       "--broker", "http://h"]), say=lambda s: None)
        with pytest.raises(ValueError, match="--node-id"):
            flash.flash(args("--node-id", "bad id"), say=lambda s: None)
        not_fw = tmp_path / "firmware.uf2"
        not_fw.write_bytes(b"UF2\n" + bytes(508))
        with pytest.raises(ValueError, match="is not an ESP32 firmware image"):
            flash.write_firmware("socket://127.0.0.1:9", "esp32", str(not_fw), print)
        fw = tmp_path / "ESP32_GENERIC.bin"
        fw.write_bytes(b"\xe9" + bytes(1023))
        with pytest.raises(ValueError, match="^esptool could not write the firmware: Could not "
                           "open socket://127.0.0.1:9, the port is busy or doesn't exist"):
            flash.write_firmware("socket://127.0.0.1:9", "esp32", str(fw), print)
        why = flash._esptool_error("esptool v5.6.0\nConnecting......\nA fatal error occurred: "
                                   "Failed to connect to ESP32: No serial data received.",
                                   "/dev/ttyUSB0", "esp32")
        assert why.startswith("Failed to connect to ESP32: No serial data received; put the "
                              "board in download mode (hold BOOT, press and release EN")
        sf = tmp_path / "s.json"
        sf.write_text(json.dumps({"fleet_key": "from-file-0123456789",
                                  "wifi_password": "longenough"}))
        os.environ.pop("ROOST_FLEET_KEY")
        assert flash.read_secrets(str(sf), env={}) == {"fleet_key": "from-file-0123456789",
                                                        "wifi_password": "longenough"}
        with pytest.raises(ValueError, match="no readable manifest"):
            flash.flash(args("--secrets-file", str(sf), "--image", str(tmp_path / "none")),
                        say=lambda s: None)
        with pytest.raises(ValueError, match="cannot open socket://127.0.0.1:9 .*: is the board "
                           "plugged in"):
            flash.Board("socket://127.0.0.1:9", 2)
    finally:
        os.environ.clear()
        os.environ.update(env)
    red = flash.Redactor({"fleet_key": "abc123", "wifi_password": "pw"})
    assert red("key abc123 pw") == "key *** ***"


def test_serve_mistakes_are_one_sentence_and_touch_no_user_file(tmp_path: Path):
    """A user's folder given as --dir is refused before anything is written (roost flash
    --firmware would erase it); so are a file, a bad port, pin or board."""
    user = tmp_path / "user"
    user.mkdir()
    (user / "thesis.txt").write_text("mine")
    (tmp_path / "afile").write_text("mine")
    for argv, words in ((["--dir", str(user)], "holds thesis.txt and nothing of a board's"),
                        (["--dir", str(tmp_path / "afile")], "is a file"),
                        (["--dir", str(tmp_path / "n"), "--port", "99999"], "--port must be"),
                        (["--dir", str(tmp_path / "n"), "--hold-pin", "999"], "--hold-pin"),
                        (["--dir", str(tmp_path / "n"), "--board", "pi-4"], "not MicroPython")):
        r = subprocess.run([sys.executable, "-m", "roost.gateway.cli", "board", "serve"] + argv,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "user"]
    assert (user / "thesis.txt").read_text() == "mine"


def test_flash_says_at_once_when_the_node_does_not_fit_the_board(tmp_path: Path, image: Path):
    """The board runs out of memory starting the node: roost flash says so at once, and does
    not wait out its timeout to blame the fleet ("start the Pis first")."""
    b = _served(tmp_path, "--heap", "64")
    try:
        t0 = time.monotonic()
        out = _flash(b.url, image)
        text = out.stdout + out.stderr
        assert out.returncode == 2, text
        # (where it runs out depends on how much the code takes: loading it, or the node)
        assert "roost: the board ran out of memory" in text and "MemoryError" in text \
            and "the node does not fit in it; use a board with PSRAM" in text, text
        assert "start the Pis first" not in text and time.monotonic() - t0 < 60
    finally:
        b.stop()
