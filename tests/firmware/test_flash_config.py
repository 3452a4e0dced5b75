"""The config that `roost flash` writes: the board profile's safe-mode pin unless --safe-pin
says otherwise (CPython-only: the flashing side)."""

import argparse
import json

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


def test_udp_port_reaches_a_board_flashed_without_a_fleet_dir():
    """--udp-port was used with --join-dir only: without it the board kept 4210, which a
    laptop node of the classroom kit held (the board then reset every 10 s)."""
    args = _args("esp32")
    args.udp_port = 4299
    cfg, _ = make_config(args)
    assert cfg["udp_port"] == 4299
    assert "udp_port" not in make_config(_args("esp32"))[0]  # the firmware's 4210


def _fleet_dir(tmp_path, key):
    from roost.emulator.fleet import save_state

    save_state(tmp_path, {"fleet": "lab", "ids": ["n01"],
                          "nodes": {"n01": {"port": 42001, "interp": "cpython"}}})
    (tmp_path / "fleet.key").write_text(key + "\n")
    return str(tmp_path)


def test_join_dir_gives_the_fleets_own_key(tmp_path, monkeypatch):
    monkeypatch.delenv("ROOST_FLEET_KEY")
    a = _args("esp32")
    a.join_dir = _fleet_dir(tmp_path, "f" * 32)
    cfg, sec = make_config(a)
    assert sec["fleet_key"] == "f" * 32
    assert cfg["runtime"]["peers"] == {"n01": ["127.0.0.1", 42001]}


def test_join_dir_refuses_the_id_of_a_node_process(tmp_path):
    """A board under the id of one of the emulated fleet's processes would be a second n01:
    the fleet would follow whichever booted later. Refused before anything is written."""
    a = _args("esp32")
    a.join_dir = _fleet_dir(tmp_path, "k" * 32)
    a.node_id = "n01"
    with pytest.raises(ValueError, match="n01 is a cpython node of the fleet in .*: give the "
                       "board an id of its own"):
        make_config(a)


def test_join_dir_refuses_another_fleets_key(tmp_path):
    """ROOST_FLEET_KEY (set by the fixture) is not this fleet's: the board would boot and
    never join, so flashing stops with one sentence instead."""
    a = _args("esp32")
    a.join_dir = _fleet_dir(tmp_path, "f" * 32)
    with pytest.raises(ValueError, match="ROOST_FLEET_KEY is not the key of the fleet"):
        make_config(a)
    a.join_dir = _fleet_dir(tmp_path, "k" * 32)  # the same key is fine
    assert make_config(a)[1]["fleet_key"] == "k" * 32


def test_a_board_on_a_serial_port_needs_wifi():
    a = _args("esp32-wrover")
    a.wifi, a.port = "", "/dev/ttyUSB0"
    with pytest.raises(ValueError, match="give --wifi SSID"):
        make_config(a)
    a.port = "socket://127.0.0.1:7777"  # a virtual board shares this machine's network
    assert make_config(a)[0]["wifi_ssid"] == ""


def test_a_short_fleet_key_is_refused_in_one_sentence(monkeypatch):
    monkeypatch.setenv("ROOST_FLEET_KEY", "abc")
    with pytest.raises(ValueError, match="the fleet key has only 3 of the 16 characters"):
        make_config(_args("esp32"))


def test_a_key_that_is_not_a_string_is_one_sentence(tmp_path, monkeypatch):
    from roost.firmware.flash import read_secrets

    monkeypatch.delenv("ROOST_FLEET_KEY")
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"fleet_key": 123456789012345678}))
    with pytest.raises(ValueError, match="fleet_key must be a string in quotes"):
        read_secrets(str(f))


def test_esptool_failures_say_what_to_do():
    from roost.firmware.flash import _esptool_error

    assert _esptool_error("A fatal error occurred: This chip is ESP32-C3, not ESP32. Wrong chip "
                          "argument?", "P", "esp32").startswith(
        "the board on P is an ESP32-C3, a chip roost has no board profile for")
    assert "give --board esp32 or esp32-cam or esp32-wrover" in _esptool_error(
        "A fatal error occurred: This chip is ESP32, not ESP32-S3.", "P", "esp32-s3")
    assert _esptool_error("Writing at 0x1000\nA serial exception error occurred: read failed: "
                          "device disconnected\nFor troubleshooting steps visit: https://x",
                          "P", "esp32") == "read failed: device disconnected"


@pytest.mark.parametrize("extra, words", [
    # found when the node boots (its sensors), its UDP port open: on loopback, any port
    ({"board": "esp32-nope", "runtime": {"udp": ["127.0.0.1", 0]}},
     "unknown board 'esp32-nope'"),
    ({"board": "esp32", "runtime": {"preset": "wiif"}}, "preset must be lan or wifi"),
    ({"board": "esp32", "runtime": {"nonsense": 1}}, "unknown option 'nonsense'"),
])
def test_a_config_json_the_node_refuses_raises_its_config_error(extra, words, tmp_path):
    """What a board's main.py gets from the node for a typo only the node checks: the
    runtime's ConfigError (boardlib turns it into safe mode), its sentence without the
    'node config:' prefix."""
    from roost.firmware.nodeconfig import validate
    from roost.node.nodemain import run_board
    from roost.node.runtime import ConfigError

    obj = dict({"node_id": "n07", "broker": "mqtt://127.0.0.1:1883"}, **extra)
    obj["runtime"] = dict(obj.get("runtime", {}), storage=str(tmp_path / "data"))
    fc, why = validate(obj)
    assert why is None
    with pytest.raises(ConfigError) as e:
        run_board(fc, {"fleet_key": "k" * 32}, None)
    assert words in str(e.value) and not str(e.value).startswith("node config")
