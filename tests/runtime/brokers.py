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
