"""HMAC-SHA256 built on ``hashlib`` (MicroPython has no ``hmac`` module)."""

import hashlib

try:  # CPython: a C constant-time comparison; MicroPython has no hmac module
    from hmac import compare_digest as _compare
except ImportError:
    _compare = None

_BLOCK = 64  # SHA-256 block size in bytes
TAG_LEN = 32  # full HMAC-SHA256 tag

_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _translate(data, table):
    return bytes(table[b] for b in data)


class Hmac:
    """A fleet key prepared once; ``tag(data)`` is RFC 2104 HMAC-SHA256."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key):
        if isinstance(key, str):
            key = key.encode()
        if not isinstance(key, (bytes, bytearray)) or not key:
            raise ValueError("the fleet key must be non-empty bytes or str")
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = bytes(key) + bytes(_BLOCK - len(key))
        self._inner = _translate(key, _IPAD)
        self._outer = _translate(key, _OPAD)

    def tag(self, data):
        """The 32-byte tag over data."""
        inner = hashlib.sha256(self._inner)
        inner.update(data)
        outer = hashlib.sha256(self._outer)
        outer.update(inner.digest())
        return outer.digest()

    def verify(self, data, tag):
        """True when tag matches; compares every byte (no early exit)."""
        if len(tag) != TAG_LEN:
            return False
        want = self.tag(data)
        if _compare is not None:
            return _compare(want, bytes(tag))
        diff = 0
        for i in range(TAG_LEN):
            diff |= want[i] ^ tag[i]
        return diff == 0


def hmac_sha256(key, data):
    """One-shot HMAC-SHA256."""
    return Hmac(key).tag(data)
