"""Robustness (CPython, hypothesis): random bytes and mutated valid envelopes, whole and one
byte at a time, into the envelope decoder and GossipCore.receive: nothing raises, every
rejection is counted."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roost.common import envelope
from roost.common.auth import Hmac
from roost.common.channel import Channel
from roost.common.prng import Prng
from roost.node import gossip as g

KEY = "fuzz-key"
_MAC = Hmac(KEY)
_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


def _core():
    c = g.GossipCore("n01", Channel("n01", KEY), g.GossipConfig(), Prng(1), {}, 0)
    c.publish(0, [1, 2])
    return c


def _valid_messages():
    """One of each kind, as a peer would send them."""
    m = [g.encode_member(["n02", g.ALIVE, 1, "esp32", "r1", 0]),
         g.encode_member(["n03", g.SUSPECT, 2, "", "", "n02"])]
    s = [["n02", 3, [21.5, "ok", None]]]
    return [
        (g.PING, [7, "n01", [m, s]]),
        (g.ACK, [7, [m, s]]),
        (g.PING_REQ, [7, "n04", [m, []]]),
        (g.GOSSIP, [[m, s]]),
        (g.JOIN, [0, 1, m, ["", "", [["n02", 1]]], []]),
        (g.SYNC, [1, 1, m, ["n01", "", []], s]),
        (g.SYNC, [2, 1, [], 0, s]),
    ]


def _seal(kind, body, seq, sender="n02"):
    return envelope.encode(envelope.Envelope(kind, sender, "n01", 0, seq, body), _MAC)


def _rejected(core):
    return core.ch.rejected_total()


@_SETTINGS
@given(st.binary(max_size=1600))
def test_random_bytes_never_raise(raw):
    c = _core()
    assert c.receive(0, "n02", raw) == []
    assert _rejected(c) == 1
    env, why = envelope.decode(raw, _MAC)
    assert env is None and why in envelope.REASONS


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=30,
)


@_SETTINGS
@given(st.integers(0, 40), json_values)
def test_random_bodies_are_counted(kind, body):
    """Authentic envelopes with arbitrary bodies: handled or rejected, never raised."""
    c = _core()
    try:
        raw = _seal(kind, body, 1)
    except (ValueError, OverflowError):  # too big or not JSON: nothing to send
        return
    before = _rejected(c)
    c.receive(0, "n02", raw)
    if kind not in g.KINDS:
        assert _rejected(c) == before + 1


def _mutate_body(body, path, value):
    """Replace one element (found by walking path through nested lists) with value."""
    if not isinstance(body, list) or not body:
        return value
    i = path[0] % len(body)
    out = list(body)
    out[i] = _mutate_body(out[i], path[1:], value) if len(path) > 1 else value
    return out


@_SETTINGS
@given(st.integers(0, 6), st.lists(st.integers(0, 20), min_size=1, max_size=5), json_values)
def test_mutated_valid_bodies(which, path, value):
    kind, body = _valid_messages()[which]
    c = _core()
    try:
        raw = _seal(kind, _mutate_body(body, path, value), 1)
    except (ValueError, OverflowError):
        return
    c.receive(0, "n02", raw)  # must not raise
    for m in c.members():
        assert m[1] in g.STATE_NAMES


def test_every_byte_flipped_and_every_prefix():
    """Each valid message, one byte at a time: flipped, and cut short. Re-tagging the mutated
    JSON checks the core's own validation, not just the HMAC."""
    seq = 0
    for kind, body in _valid_messages():
        raw = _seal(kind, body, 1)
        data = raw[32:]
        for i in range(len(data)):
            c = _core()
            bad = bytearray(raw)
            bad[32 + i] ^= 0x55
            assert c.receive(0, "n02", bytes(bad)) == []  # HMAC fails
            assert c.stats["rx_rejected_auth"] == 1
            for mutated in (data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :], data[:i]):
                seq += 1
                c.receive(0, "n02", _MAC.tag(mutated) + mutated)


def test_valid_messages_are_accepted():
    """The fuzz corpus itself is valid: nothing in it is rejected."""
    for seq, (kind, body) in enumerate(_valid_messages()):
        c = _core()
        c.receive(0, "n02", _seal(kind, body, seq + 1))
        assert _rejected(c) == 0, (kind, json.dumps(body))
