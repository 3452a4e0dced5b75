"""Stable hashing: the same value on every interpreter and process (never ``hash()``)."""

_MASK32 = 0xFFFFFFFF


def fnv1a32(data):
    """FNV-1a, 32 bits, over bytes or str (utf-8)."""
    if isinstance(data, str):
        data = data.encode()
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & _MASK32
    return h


def stable_hash(value):
    """32-bit stable hash of a str, bytes or int; mixed so nearby keys spread out."""
    if isinstance(value, int):
        value = str(value)
    h = fnv1a32(value)
    h ^= h >> 16
    h = (h * 0x7FEB352D) & _MASK32
    h ^= h >> 15
    h = (h * 0x846CA68B) & _MASK32
    return h ^ (h >> 16)


def bucket(value, n):
    """Map value to one of n buckets, stably."""
    if n <= 0:
        raise ValueError("bucket count must be positive")
    return stable_hash(value) % n
