"""Board config validation: every mistake is one sentence, never an exception.

MicroPython-safe: runs under pytest and tests/mpy_runner.py.
"""

import json

from roost.firmware import nodeconfig
from tests.firmware._tmp import TmpDir, write

GOOD = {"node_id": "n03", "fleet": "lab", "broker": "mqtt://192.168.4.1:1883",
        "wifi_ssid": "roost-lab"}
SECRETS = {"wifi_password": "correct horse", "fleet_key": "k" * 32}


def _with(**kw):
    d = dict(GOOD)
    for k in kw:
        if kw[k] is None:
            del d[k]
        else:
            d[k] = kw[k]
    return d


def test_good_config_gives_defaults_and_values():
    cfg, why = nodeconfig.validate(GOOD)
    assert why is None
    assert cfg.node_id == "n03" and cfg.fleet == "lab" and cfg.safe_pin == 0
    assert cfg.watchdog_ms == nodeconfig.FirmwareConfig.watchdog_ms


def test_each_mistake_is_one_sentence():
    bad = [
        ([1, 2], "JSON object"),
        (_with(node_id=None), "no node_id"),
        (_with(node_id="bad id!"), "node_id"),
        (_with(broker=None), "no broker"),
        (_with(broker="http://x"), "mqtt://"),
        (_with(broker="mqtt://host:99999"), "bad port"),
        (_with(broker="mqtt://:1883"), "bad host"),
        (_with(safe_pin="0"), "safe_pin"),
        (_with(safe_pin=True), "safe_pin"),
        (_with(safe_pin=99), "safe_pin"),
        (_with(wifi_ssid=5), "wifi_ssid"),
        (_with(wifi_ssid="x" * 33), "wifi_ssid"),
        (_with(colour="red"), "unknown option 'colour'"),
        (_with(wifi_retry_ms=5000, wifi_retry_max_ms=100), "wifi_retry_max_ms"),
        (_with(runtime=[1]), "runtime"),
        (_with(fleet="a b"), "fleet"),
    ]
    for obj, needle in bad:
        cfg, why = nodeconfig.validate(obj)
        assert cfg is None, obj
        assert needle in why, (needle, why)
        line = nodeconfig.safe_mode_sentence(why)
        assert "\n" not in line and line.startswith("roost: safe mode: ") and line.endswith(".")


def test_broker_forms():
    assert nodeconfig.check_broker("mqtt://h") is None
    assert nodeconfig.check_broker("mqtts://broker.lan:8883") is None
    assert nodeconfig.check_broker("mqtt://a/b") is not None
    assert nodeconfig.check_broker(None) is not None


def test_load_from_files_and_every_file_problem():
    with TmpDir() as d:
        cfg, sec, why = nodeconfig.load(d)
        assert cfg is None and "no config.json" in why
        write(d + "/config.json", "{not json")
        cfg, sec, why = nodeconfig.load(d)
        assert "config.json is not valid JSON" == why
        write(d + "/config.json", json.dumps(GOOD))
        cfg, sec, why = nodeconfig.load(d)
        assert "no secrets.json" in why
        write(d + "/secrets.json", json.dumps({"fleet_key": "k", "wifi_password": "short"}))
        cfg, sec, why = nodeconfig.load(d)
        assert "wifi_password" in why and "short" not in why
        write(d + "/secrets.json", json.dumps(SECRETS))
        cfg, sec, why = nodeconfig.load(d + "/")
        assert why is None and cfg.node_id == "n03" and sec["fleet_key"] == "k" * 32
        write(d + "/config.json", "x" * 5000)
        cfg, sec, why = nodeconfig.load(d)
        assert "larger than" in why


def test_secrets_never_quoted_in_reasons():
    cfg, _ = nodeconfig.validate(GOOD)
    for obj in ({"fleet_key": 5}, {"fleet_key": "sekrit", "pin": "sekrit"},
                {"fleet_key": "sekrit", "wifi_password": "sek"}, {"wifi_password": "sekrit99"}):
        out, why = nodeconfig.validate_secrets(obj, cfg)
        assert out is None and "sekrit" not in why and "sek" not in why.replace("secrets", "")
    out, why = nodeconfig.validate_secrets({"fleet_key": "k"}, nodeconfig.FirmwareConfig())
    assert why is None  # no Wi-Fi network, no password needed
