"""The config that `roost flash` writes: the board profile's safe-mode pin unless --safe-pin
says otherwise (CPython-only: the flashing side)."""

import argparse

import pytest

from roost.firmware.flash import make_config


def _args(board, safe_pin=None):
    return argparse.Namespace(node_id="n09", fleet="lab", board=board,
                              broker="mqtt://10.0.0.2:1883", wifi="classroom", join_dir=None,
                              safe_pin=safe_pin, secrets_file=None, udp_port=None)


@pytest.fixture(autouse=True)
def _secrets(monkeypatch):
    monkeypatch.setenv("ROOST_FLEET_KEY", "k" * 32)
    monkeypatch.setenv("ROOST_WIFI_PASSWORD", "password1")


def test_the_profiles_safe_mode_pin_reaches_the_board():
    cfg, _ = make_config(_args("esp32-cam"))  # GPIO0 is the camera clock there
    assert cfg["safe_pin"] == 12
    cfg, _ = make_config(_args("esp32"))  # GPIO0, the BOOT button: the firmware's default
    assert "safe_pin" not in cfg


def test_safe_pin_option_wins():
    cfg, _ = make_config(_args("esp32-cam", safe_pin=4))
    assert cfg["safe_pin"] == 4
    cfg, _ = make_config(_args("esp32", safe_pin=13))
    assert cfg["safe_pin"] == 13
