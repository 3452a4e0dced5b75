"""Sensor interface: Reading wire form, and bus errors that never escape read()."""

import json

from roost.hardware.sensor import HEALTH_ERROR, HEALTH_OK, Reading, Sensor


def _reading():
    return Reading(
        "bme280",
        1234,
        {"temperature": 21.5, "pressure": 1013, "humidity": 40.25},
        {"temperature": "C", "pressure": "hPa", "humidity": "%"},
        HEALTH_OK,
        {"type": "visit", "thumb_hex": "00ff"},
    )


def test_to_list_sorted_and_round_trips_through_json():
    r = _reading()
    items = r.to_list()
    assert [kv[0] for kv in items[3]] == ["humidity", "pressure", "temperature"]
    assert [kv[0] for kv in items[6]] == ["thumb_hex", "type"]
    back = Reading.from_list(json.loads(json.dumps(items)))
    assert back is not None
    assert back == r
    assert back.values["humidity"] == 40.25
    assert back.event["type"] == "visit"


def test_same_reading_same_bytes_whatever_the_insertion_order():
    a = Reading("s", 1, {"a": 1, "b": 2, "c": 3}, {"a": "x"}, HEALTH_OK)
    b = Reading("s", 1, {"c": 3, "b": 2, "a": 1}, {"a": "x"}, HEALTH_OK)
    assert json.dumps(a.to_list()) == json.dumps(b.to_list())


def test_from_list_rejects_malformed_without_raising():
    good = _reading().to_list()
    bad = [
        None,
        "x",
        [],
        good[:6],
        [99] + good[1:],
        good[:5] + ["sideways"] + good[6:],
        good[:3] + [[["t", "hot"]]] + good[4:],
        good[:3] + [[["t"]]] + good[4:],
        good[:3] + [[[1, 2]]] + good[4:],
        good[:2] + ["late"] + good[3:],
        good[:6] + ["notalist"],
    ]
    for items in bad:
        assert Reading.from_list(items) is None, items


class _Flaky(Sensor):
    kind = "flaky"
    units = {"x": "u"}

    def __init__(self):
        Sensor.__init__(self)
        self.fail = False

    def _sample(self, now_ms):
        if self.fail:
            raise OSError(5)
        return {"x": now_ms}


def test_bus_error_gives_error_reading_not_exception():
    s = _Flaky()
    assert s.read(1).health == HEALTH_OK
    s.fail = True
    r = s.read(2)
    assert r.health == HEALTH_ERROR
    assert r.values == {}
    assert r.units == {"x": "u"}
    assert s.stats["errors"] == 1
    s.fail = False
    assert s.read(3).values == {"x": 3}


def test_unimplemented_sample_is_a_bug_not_a_fault():
    s = Sensor("plain")
    try:
        s.read(0)
    except NotImplementedError:
        return
    raise AssertionError("a missing _sample must raise")


def test_sample_period_validated():
    try:
        Sensor("x", sample_period_ms=0)
    except ValueError:
        return
    raise AssertionError("sample_period_ms=0 accepted")
