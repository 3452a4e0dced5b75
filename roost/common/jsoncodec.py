"""Compact JSON for datagrams and flash records, as fast as each interpreter allows.

``dumps(x)`` is ``json.dumps(x, separators=(",", ":"))`` and ``loads(s)`` is
``json.loads(s)`` (str, bytes, bytearray or memoryview), the same text and the same
errors. On CPython
they skip what the json module redoes on every call: ``dumps`` with separators builds a new
encoder object each time, ``loads`` of bytes guesses their encoding first. That is about
1.9 and 1.4 µs a call, on a path that one replicated write crosses some 25 times.
MicroPython's json has neither layer, so there the json functions are used as they are.
"""

import json

try:  # CPython: its C encoder, built once with the compact separators
    from json.decoder import JSONDecoder
    from json.encoder import JSONEncoder, c_make_encoder, encode_basestring_ascii
except ImportError:  # MicroPython
    c_make_encoder = None

if c_make_encoder is not None:
    # the arguments json.JSONEncoder(separators=(",", ":")).iterencode passes it, but for
    # the check for circular lists (no caller builds one)
    _encode = c_make_encoder(None, JSONEncoder().default, encode_basestring_ascii, None,
                             ":", ",", False, False, True)
    _raw_decode = JSONDecoder().raw_decode

    def dumps(x):
        """Compact JSON text of x (TypeError for what JSON cannot hold)."""
        return "".join(_encode(x, 0))

    def loads(s):
        """The value of one JSON text (ValueError when it is not one)."""
        if isinstance(s, memoryview):  # a datagram's JSON after its tag
            s = bytes(s)
        try:
            t = s.decode() if isinstance(s, (bytes, bytearray)) else s
            obj, end = _raw_decode(t)
            if end == len(t):
                return obj
        except (ValueError, TypeError):
            pass
        return json.loads(s)  # anything unusual (spaces around it, a BOM, an error): as json

else:

    def dumps(x):
        """Compact JSON text of x."""
        return json.dumps(x, separators=(",", ":"))

    loads = json.loads
