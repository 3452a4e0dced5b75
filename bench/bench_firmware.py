"""Benchmark: the ESP32 image and the flashing path.

Prints one figure per line:
  image size as source and as .mpy (roost build --board esp32)
  smallest heap that imports the node's boot set from source and from .mpy (RAM saved)
  free heap after boot (boot.py + main.py up to "roost: started") under the esp32 profile's
  heap, on the real micropython unix port (64-bit: objects are bigger than on an ESP32)
  smallest heap in which a whole node (gossip member, simulated sensors, MQTT) starts and
  serves for 5 s from the .mpy image, on the same port
  seconds from `roost flash` to the started line on a virtual board (roost board serve),
  also with --firmware (esptool erasing the chip and writing a firmware through the virtual
  board's ROM loader)
  seconds from `roost flash --join-dir` to "joined" on a virtual board joining a running
  emulated fleet (roost emulate up --nodes 3), the board at --join-heap KB
Run from the repository root: python bench/bench_firmware.py
"""

import argparse
import contextlib
import json
import random
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from roost.emulator import fleet  # noqa: E402
from roost.firmware import build, flash  # noqa: E402

_BOOT = """
import gc
g = {'__name__': '__main__'}
exec(open('boot.py').read(), g)
from roost.firmware import boardlib
r = boardlib.main(idle_rounds=0, runtime=object())  # boot only: the node is not started
gc.collect()
print('FREE', gc.mem_free(), r)
"""


def free_heap_after_boot(image: Path, heap: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        fl = Path(tmp) / "flash"
        shutil.copytree(image, fl)
        (fl / "config.json").write_text(json.dumps(
            {"node_id": "n01", "fleet": "bench", "broker": "mqtt://127.0.0.1:1883"}))
        (fl / "secrets.json").write_text(json.dumps({"fleet_key": "bench-fleet-key-0123456789"}))
        out = subprocess.run(["micropython", "-X", "heapsize=%d" % heap, "-c", _BOOT],
                             capture_output=True, text=True, timeout=60, cwd=fl)
    for line in out.stdout.splitlines():
        if line.startswith("FREE "):
            return line.split()[1]
    return "failed: " + (out.stdout + out.stderr).strip().splitlines()[-1]


_NODE = """
g = {'__name__': '__main__'}
exec(open('boot.py').read(), g)
from roost.firmware import boardlib
boardlib.main()
"""


def node_serves(image: Path, heap: int, seconds: float = 5.0, romfs: Path | None = None) -> bool:
    """True when boot.py + main.py start a whole node that is still serving after seconds.

    romfs: the code runs in place from this ROMFS image (the slot's code is left off the
    flash), read into one block at the start of the heap, which grows by its size (the
    fleet's emulation of a board's ROMFS partition, roost.emulator.fleet)."""
    code = _NODE
    with tempfile.TemporaryDirectory() as tmp:
        fl = Path(tmp) / "flash"
        shutil.copytree(image, fl)
        if romfs is not None:
            size = romfs.stat().st_size
            shutil.rmtree(fl / "slots" / "a" / "roost")
            code = fleet.romfs_boot(str(romfs), size) + _NODE
            heap += (size + 1023) // 1024 * 1024
        (fl / "config.json").write_text(json.dumps(
            {"node_id": "n01", "fleet": "bench", "broker": "mqtt://127.0.0.1:1",
             "udp_port": 42117, "runtime": {"sensors": "simulated",
                                            "storage": str(Path(tmp) / "store")}}))
        (fl / "secrets.json").write_text(json.dumps({"fleet_key": "bench-fleet-key-0123456789"}))
        try:
            subprocess.run(["micropython", "-X", "heapsize=%d" % heap, "-c", code],
                           capture_output=True, timeout=seconds, cwd=fl)
            return False  # it ended: it did not keep serving
        except subprocess.TimeoutExpired as e:
            text = (e.stdout or b"").decode() + (e.stderr or b"").decode()
    return "started n01 (boot " in text and "Error" not in text and "does not fit" not in text


def node_min_heap(image: Path, lo_k: int = 64, hi_k: int = 1024, step_k: int = 16,
                  romfs: Path | None = None) -> int | None:
    """The smallest heap (KB, to step_k) in which node_serves holds, by bisection."""
    if not node_serves(image, hi_k * 1024, romfs=romfs):
        return None
    while hi_k - lo_k > step_k:
        mid = (lo_k + hi_k) // 2 // step_k * step_k
        if node_serves(image, mid * 1024, romfs=romfs):
            hi_k = mid
        else:
            lo_k = mid
    return hi_k


@contextlib.contextmanager
def _virtual_board(fl: Path, heap_k: int | None = None, romfs_k: int = 0):
    """A `roost board serve` on flash dir fl for the block; yields its socket:// URL."""
    argv = [sys.executable, "-m", "roost.gateway.cli", "board", "serve", "--port", "0",
            "--dir", str(fl)] + (["--heap", str(heap_k)] if heap_k else []) \
        + (["--romfs", str(romfs_k)] if romfs_k else [])
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else ""
        yield line.split(" on ", 1)[1].split(",", 1)[0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _timed_flash(*argv: str) -> float:
    """Seconds `roost flash ARGV` takes (it returns once the board printed its line)."""
    ap = argparse.ArgumentParser()
    flash.add_flash_parser(ap.add_subparsers())
    args = ap.parse_args(["flash", *argv])
    lines: list[str] = []
    t0 = time.monotonic()
    try:
        flash.flash(args, say=lines.append)
    except ValueError as e:  # the board's console says why: show its last lines
        sys.stderr.write("".join("  %s\n" % x for x in lines[-40:]))
        raise SystemExit("roost flash failed: %s" % e) from None
    return time.monotonic() - t0


FIRMWARE_BYTES = 1_600_000  # about an ESP32_GENERIC_SPIRAM MicroPython 1.2x firmware .bin


def flash_seconds(image: Path, romfs: bool = False, firmware: bool = False) -> float:
    """Seconds from `roost flash` to "started" on a fresh virtual board (romfs: a board with
    a 192 KB ROMFS partition and a 192 KB heap, flashed with --romfs; firmware: esptool
    first erases the board's chip and writes a firmware-sized image through its ROM loader)."""
    with tempfile.TemporaryDirectory() as tmp:
        fl = Path(tmp) / "flash"
        fl.mkdir()
        secrets = Path(tmp) / "secrets.json"  # not ROOST_FLEET_KEY: the join step comes later
        secrets.write_text(json.dumps({"fleet_key": "bench-fleet-key-0123456789"}))
        extra = ["--romfs"] if romfs else []
        if firmware:
            fw = Path(tmp) / "firmware.bin"
            fw.write_bytes(b"\xe9" + random.Random(1).randbytes(FIRMWARE_BYTES - 1))
            extra += ["--firmware", str(fw)]
        with _virtual_board(fl, *((192, 192) if romfs else ())) as url:
            # main.py's started line, as in every earlier figure (roost flash now waits for
            # the node's own, which a board without the room for the node never prints)
            return _timed_flash("--port", url, "--node-id", "n01", "--broker",
                                "mqtt://127.0.0.1:1883", "--image", str(image),
                                "--secrets-file", str(secrets), "--wait-for",
                                "roost: started n01", *extra)


def flash_to_joined(image: Path, runs: int, heap_k: int) -> list[float]:
    """Seconds from `roost flash --join-dir` to the board's "joined" line, one fleet for all
    runs (each run a fresh board and a new node id)."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "fleet"
        snap = fleet.up(d, 3)
        try:
            if not snap["health"]["healthy"]:
                raise SystemExit("the fleet did not come up: %s" % snap["health"]["problems"])
            for i in range(runs):
                fl = Path(tmp) / ("flash%d" % i)
                fl.mkdir()
                with _virtual_board(fl, heap_k) as url:
                    out.append(_timed_flash("--port", url, "--node-id", "b%02d" % i,
                                            "--join-dir", str(d), "--image", str(image)))
        finally:
            fleet.down(d)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="esp32")
    ap.add_argument("--flashes", type=int, default=3, help="flash runs (median reported)")
    ap.add_argument("--join-heap", type=int, default=1024, metavar="KB",
                    help="the joining board's heap (the unix port needs more than an ESP32)")
    ap.add_argument("--join-only", action="store_true",
                    help="build, then only the flash-to-joined figure")
    ap.add_argument("--flash-only", action="store_true",
                    help="build, then only the flash-to-started figures")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "image"
        m = build.build(a.board, image)
        heap = m["heap_bytes"]
        if a.join_only:
            return _print_joined(image, a.flashes, a.join_heap)
        if a.flash_only:
            return _print_flashes(image, a.flashes)
        print("image_source_bytes %d" % m["source_bytes"])
        print("image_mpy_bytes %d (%d modules, %d files on flash)"
              % (m["mpy_bytes"], m["modules"], len(m["files"])))
        src = build.min_heap(build.ROOT)
        mpy = build.min_heap(image / "slots" / "a")
        print("boot_set_min_heap_bytes source %d mpy %d saved %d" % (src, mpy, src - mpy))
        print("free_heap_after_boot_bytes %s (heap %d, %s)"
              % (free_heap_after_boot(image, heap), heap, a.board))
        nk = node_min_heap(image)
        print("whole_node_min_heap_kb %s (starts and serves 5 s; esp32 profile heap %d KB)"
              % (nk if nk else "over 1024", heap // 1024))
        rom = Path(tmp) / "code.romfs"
        size = fleet.build_romfs(image / "slots" / "a", rom)
        rk = node_min_heap(image, romfs=rom) if size else None
        print("whole_node_min_heap_kb_romfs %s (the code in place from a %s-byte ROMFS image, "
              "not counted)" % (rk if rk else "over 1024", size))
        _print_flashes(image, a.flashes)
        return _print_joined(image, a.flashes, a.join_heap)


def _print_flashes(image: Path, runs: int) -> int:
    times = sorted(flash_seconds(image) for _ in range(runs))
    print("flash_to_started_s %.2f (median of %d, virtual board)"
          % (times[len(times) // 2], len(times)))
    times = sorted(flash_seconds(image, romfs=True) for _ in range(runs))
    print("flash_to_started_romfs_s %.2f (median of %d, the code to a ROMFS partition)"
          % (times[len(times) // 2], len(times)))
    times = sorted(flash_seconds(image, firmware=True) for _ in range(runs))
    print("flash_with_firmware_to_started_s %.2f (median of %d, esptool erases the chip and "
          "writes a %d-byte firmware first)" % (times[len(times) // 2], len(times),
                                                FIRMWARE_BYTES))
    return 0


def _print_joined(image: Path, runs: int, heap_k: int) -> int:
    j = sorted(flash_to_joined(image, runs, heap_k))
    print("flash_to_joined_s %.2f (median of %d, min %.2f, max %.2f; virtual board, heap "
          "%d KB, joining a 3-node emulated fleet)" % (j[len(j) // 2], len(j), j[0], j[-1], heap_k))
    return 0


if __name__ == "__main__":
    sys.exit(main())
