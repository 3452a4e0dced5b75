"""``roost broker --host``: a gateway's broker listens where the boards can reach it. On
loopback: bound to 127.0.0.1 it refuses 127.0.0.2; bound to every interface it takes it."""

from __future__ import annotations

import socket

import pytest

from roost.gateway.broker import add_broker_parser
from tests.runtime.brokers import KINDS, broker


def _connects(addr: str, port: int) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("kind", KINDS)
def test_every_interface_takes_another_address(kind, tmp_path):
    h = broker(kind, tmp_path, host="0.0.0.0")
    try:
        assert h.describe()["host"] == "0.0.0.0"
        assert _connects("127.0.0.2", h.port) and _connects("127.0.0.1", h.port)
    finally:
        h.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_the_default_is_this_machine_only(kind, tmp_path):
    h = broker(kind, tmp_path)
    try:
        assert _connects("127.0.0.1", h.port) and not _connects("127.0.0.2", h.port)
    finally:
        h.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_one_address_only(kind, tmp_path):
    h = broker(kind, tmp_path, host="127.0.0.2")
    try:
        assert h.url == "mqtt://127.0.0.2:%d" % h.port
        assert _connects("127.0.0.2", h.port) and not _connects("127.0.0.1", h.port)
    finally:
        h.stop()


def test_the_command_line_names_the_address():
    import argparse

    ap = argparse.ArgumentParser()
    add_broker_parser(ap.add_subparsers())
    assert ap.parse_args(["broker"]).host == "127.0.0.1"
    assert ap.parse_args(["broker", "--host", "0.0.0.0"]).host == "0.0.0.0"
