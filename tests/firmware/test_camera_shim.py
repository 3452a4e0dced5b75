"""The virtual ESP32-CAM's camera (roost/firmware/shims/camera.py, in the shape of
micropython-camera-API) through the board's own camera path, on the real MicroPython: birds
land and are counted; any other virtual board has no camera module."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIMS = ROOT / "roost" / "firmware" / "shims"
pytestmark = pytest.mark.skipif(shutil.which("micropython") is None and not os.environ.get("CI"),
                                reason="micropython is not installed")

READ = """
from roost.hardware.boards import _board_camera
from roost.hardware.camera import CameraVisitSensor
s = CameraVisitSensor(_board_camera(), 96, 96)
health = {}
visits = 0
for i in range(180):
    r = s.read(i * 1000)
    health[r.health] = health.get(r.health, 0) + 1
    if r.health == "ok":
        visits += r.values["visits"]
print("RESULT", visits, sorted(health.items()))
"""


def _read_camera(board: str) -> str:
    env = dict(os.environ, ROOST_VBOARD_ID=board + ":7777",
               MICROPYPATH="%s:%s:.frozen" % (SHIMS, ROOT))
    out = subprocess.run(["micropython", "-X", "heapsize=512K", "-c", READ], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_a_virtual_esp32_cam_sees_birds_land():
    out = _read_camera("esp32-cam")
    visits, health = out.split("RESULT ", 1)[1].split(" ", 1)
    assert 1 <= int(visits) <= 12, out  # about one a minute, over three minutes of frames
    assert health.strip() == "[('ok', 180)]", out


def test_another_virtual_board_has_no_camera_module_and_says_so_once():
    out = _read_camera("esp32")
    assert out.count("roost: camera: this firmware has no camera module") == 1, out
    assert "RESULT 0 [('error', 180)]" in out, out
