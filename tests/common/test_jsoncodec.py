"""The compact JSON codec gives the json module's text, values and errors (CPython and
MicroPython)."""

import json

from roost.common.jsoncodec import dumps, loads

VALUES = [
    None, True, False, 0, -7, 2**40, 1.5, -0.25, 1e-7, "", "plain", 'q"uote\\back', "é ü ☃",
    "\x00\x1f\n\t", [], {}, [1, [2, [3, []]]], {"b": 1, "a": [None, "x"]},
    [1, 64, "c12", "n01", 1733480000, 12345, [7, "put", "k12", "v" * 300, None, 99]],
]


def test_dumps_is_compact_json_dumps():
    for v in VALUES:
        assert dumps(v) == json.dumps(v, separators=(",", ":"))


def test_loads_reads_str_bytes_and_bytearray():
    for v in VALUES:
        text = json.dumps(v)
        for form in (text, text.encode(), bytearray(text.encode())):
            assert loads(form) == v


def test_loads_takes_what_json_takes_around_a_value():
    assert loads(" [1, 2] ") == [1, 2]
    assert loads(b"\n{\"a\": 1}\n") == {"a": 1}


def _error(fn, arg):
    try:
        fn(arg)
    except ValueError:
        return "ValueError"
    except TypeError:
        return "TypeError"
    return None


def test_loads_rejects_what_json_rejects():
    for bad in ("", "[1,", "[1] x", "[1]]", "{'a': 1}", "nul", b"\xff\xfe\x00", b"[1,2", "1 2"):
        assert _error(loads, bad) == _error(json.loads, bad) == "ValueError", bad


def test_dumps_refuses_what_json_refuses():
    # CPython raises TypeError; MicroPython's json writes such an object's repr
    assert _error(dumps, object()) == _error(json.dumps, object())
