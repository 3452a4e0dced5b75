"""boot.py/main.py logic with fake machine and network modules: safe-mode pin, bad config,
Wi-Fi back-off and the watchdog. MicroPython-safe (split from test_boardlib_ota.py so each
file compiles in a 100 KB heap)."""

from roost.firmware import boardlib, nodeconfig
from tests.firmware._fakes import (
    CFG,
    FakeMachine,
    FakeNetwork,
    FakePin,
    FakeWDT,
    FakeWLAN,
    _board,
    _capture,
    _restore,
)
from tests.firmware._tmp import TmpDir


def test_backoff_doubles_to_the_cap():
    assert boardlib.backoff_delays(500, 16000, 8) == [500, 1000, 2000, 4000, 8000, 16000, 16000]
    assert boardlib.backoff_delays(100, 150, 1) == []


def test_safe_pin_and_bad_config_enter_safe_mode_with_one_line():
    lines = _capture()
    try:
        with TmpDir() as d:
            _board(d)
            FakePin.held = {0}
            st = boardlib.boot("a", d, FakeMachine, FakeNetwork)
            assert st["safe"] and lines == [
                "roost: safe mode: pin 0 was held at reset, main.py skipped; "
                "fix it and reset the board."]
            assert boardlib.main(d, FakeMachine, FakeNetwork) == "safe"
            _restore()
            lines = _capture()
            _board(d, dict(CFG, udp_port=0))
            boardlib.boot("a", d, FakeMachine, FakeNetwork)
            assert len(lines) == 1 and "udp_port must be a whole number" in lines[0]
            assert boardlib.main(d, FakeMachine, FakeNetwork) == "safe"
    finally:
        _restore()


def test_wifi_retries_with_backoff_and_feeds_the_watchdog():
    lines = _capture()
    try:
        cfg, _ = nodeconfig.validate(CFG)
        slept = []
        FakeWLAN.connect_after = -1
        wlan = FakeWLAN(0)
        wdt = FakeWDT()
        ok = boardlib.wifi_connect(wlan, "lab-ap", "password123", cfg, sleep_ms=slept.append,
                                   feed=wdt.feed)
        assert ok is False and wlan.connects == 2 and wdt.fed > 0
        assert lines[-1] == "roost: wifi 'lab-ap' not reached; starting offline"
        assert not any("password123" in ln for ln in lines)
        FakeWLAN.connect_after = 3
        assert boardlib.wifi_connect(FakeWLAN(0), "lab-ap", "pw", cfg, sleep_ms=slept.append)
        assert boardlib.wifi_connect(None, "", "", cfg)  # no Wi-Fi configured
    finally:
        _restore()
