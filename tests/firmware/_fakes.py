"""Fake machine/network modules and helpers for the boardlib tests. MicroPython-safe."""

import json

from roost.firmware import boardlib
from tests.firmware._tmp import write

CFG = {"node_id": "n05", "fleet": "lab", "broker": "mqtt://127.0.0.1:1883",
       "wifi_ssid": "lab-ap", "wifi_attempts": 3, "wifi_retry_ms": 100,
       "wifi_retry_max_ms": 150}
SEC = {"fleet_key": "k", "wifi_password": "password123"}


class FakePin:
    IN = 1
    PULL_UP = 2
    held = set()

    def __init__(self, n, mode=None, pull=None):
        self.n = n

    def value(self):
        return 0 if self.n in FakePin.held else 1


class FakeWDT:
    def __init__(self, timeout=0):
        self.timeout = timeout
        self.fed = 0

    def feed(self):
        self.fed += 1


class FakeMachine:
    Pin = FakePin
    WDT = FakeWDT
    resets = 0

    @staticmethod
    def reset():
        FakeMachine.resets += 1


class FakeWLAN:
    connect_after = 0  # isconnected() polls before it succeeds (-1: never)

    def __init__(self, iface):
        self.polls = 0
        self.connects = 0

    def active(self, on=None):
        return True

    def connect(self, ssid, pw):
        self.connects += 1

    def disconnect(self):
        pass

    def isconnected(self):
        self.polls += 1
        return FakeWLAN.connect_after >= 0 and self.polls > FakeWLAN.connect_after


class FakeNetwork:
    STA_IF = 0
    WLAN = FakeWLAN


def _board(d, cfg=CFG, sec=SEC):
    write(d + "/config.json", json.dumps(cfg))
    write(d + "/secrets.json", json.dumps(sec))


def _capture():
    lines = []
    boardlib.log = lines.append
    return lines


def _restore():
    boardlib.log = print
    FakePin.held = set()
    FakeWLAN.connect_after = 0
    for k in ("safe", "cfg", "secrets", "wlan"):
        boardlib.STATE[k] = None
