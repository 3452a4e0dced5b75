"""Envelope, HMAC, replay window, channel, HLC, ids and config: runs on both interpreters."""

from roost.common import envelope
from roost.common.auth import Hmac, hmac_sha256
from roost.common.channel import Channel
from roost.common.config import apply_overrides
from roost.common.hlc import Hlc, unpack
from roost.common.ids import check_id, is_valid_id, node_name
from roost.common.replay import ReplayWindow

# RFC 4231 test case 2 ("Jefe"), checked here without CPython's hmac so MicroPython runs it.
_RFC4231_2 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def _hex(b):
    return "".join("%02x" % x for x in b)


def test_hmac_rfc4231_vector():
    assert _hex(hmac_sha256(b"Jefe", b"what do ya want for nothing?")) == _RFC4231_2


def test_hmac_long_key_and_verify():
    mac = Hmac(b"k" * 100)
    tag = mac.tag(b"abc")
    assert mac.verify(b"abc", tag)
    assert not mac.verify(b"abd", tag)
    assert not mac.verify(b"abc", tag[:-1])


def test_envelope_roundtrip():
    mac = Hmac("fleet")
    env = envelope.Envelope(3, "n01", "n02", 4, 17, [1, "x", [2]])
    raw = envelope.encode(env, mac)
    back, why = envelope.decode(raw, mac)
    assert why is None
    assert back.to_list() == env.to_list()


def test_envelope_rejections():
    mac = Hmac("fleet")
    raw = envelope.encode(envelope.Envelope(1, "a", "*", 0, 1, None), mac)
    assert envelope.decode(raw, Hmac("other"))[1] == "auth"
    assert envelope.decode(b"x" * 10, mac)[1] == "malformed"
    assert envelope.decode(b"x" * 2000, mac)[1] == "oversized"
    assert envelope.decode("text", mac)[1] == "malformed"
    flipped = bytearray(raw)
    flipped[-2] ^= 1
    assert envelope.decode(bytes(flipped), mac)[1] == "auth"
    bad_json = b"[1,2" + b" " * 40
    assert envelope.decode(mac.tag(bad_json) + bad_json, mac)[1] == "malformed"
    v2 = b'[2,1,"a","*",0,1,null]'
    assert envelope.decode(mac.tag(v2) + v2, mac)[1] == "version"
    bad_id = b'[1,1,"a b","*",0,1,null]'
    assert envelope.decode(mac.tag(bad_id) + bad_id, mac)[1] == "malformed"
    neg = b'[1,1,"a","*",-1,1,null]'
    assert envelope.decode(mac.tag(neg) + neg, mac)[1] == "malformed"


def test_encode_too_large_raises():
    mac = Hmac("fleet")
    try:
        envelope.encode(envelope.Envelope(1, "a", "b", 0, 1, "x" * 2000), mac)
    except ValueError:
        return
    raise AssertionError("expected ValueError")


def test_replay_window():
    w = ReplayWindow(window=8)
    assert w.check("a", 0, 5) == "ok"
    assert w.check("a", 0, 5) == "replay"
    assert w.check("a", 0, 3) == "ok"  # reordered, inside the window
    assert w.check("a", 0, 3) == "replay"
    assert w.check("a", 0, 20) == "ok"
    assert w.check("a", 0, 12) == "replay"  # too far behind
    assert w.check("a", 0, 13) == "ok"
    assert w.check("a", 1, 1) == "ok"  # reboot: new incarnation
    assert w.check("a", 0, 99) == "stale"


def test_replay_window_bounded():
    w = ReplayWindow(window=4, max_senders=3)
    for s in ("a", "b", "c", "d"):
        w.check(s, 0, 1)
    assert len(w) == 3


def test_replay_window_evicts_the_least_recently_heard_in_one_pass():
    w = ReplayWindow(window=8, max_senders=16)
    for i in range(16):
        w.check("s%02d" % i, 0, 1)
    assert w.check("s00", 0, 2) == "ok"  # heard again: now the most recent
    assert w.check("new", 0, 1) == "ok"  # full: the two least recently heard go (16 // 8)
    assert len(w) == 15
    assert w.check("s00", 0, 2) == "replay"  # kept, with its window
    assert w.check("s03", 0, 1) == "replay"
    assert w.check("s01", 0, 1) == "ok"  # evicted: remembered afresh


def test_channel_counts_everything():
    a = Channel("n01", "key")
    b = Channel("n02", "key")
    c = Channel("n03", "key")
    raw = a.seal(7, "n02", ["hi"])
    env = b.open(raw)
    assert env.body == ["hi"] and env.sender == "n01"
    assert b.open(raw) is None and b.stats["rx_rejected_replay"] == 1
    assert c.open(raw) is None and c.stats["rx_rejected_misdirected"] == 1
    assert c.open(a.seal(7, "*", 1)).kind == 7
    assert Channel("n04", "other").open(raw) is None
    assert b.open(b"garbage") is None and b.stats["rx_rejected_malformed"] == 1
    assert b.rejected_total() == 2
    assert a.overhead(7, "n02") + len("[\"hi\"]") >= len(a.seal(7, "n02", ["hi"])) - 2
    # a counter for every reason from the start, under the name reject() counts it by
    assert envelope.COUNTERS == tuple("rx_rejected_" + r for r in envelope.REASONS)
    assert sorted(a.stats) == sorted(("tx", "rx_ok") + envelope.COUNTERS)


def test_overhead_is_exact():
    """Cores pack bodies to the limit by overhead(), counted without encoding: it must equal
    the sealed size minus the body's JSON, for any kind, receiver, incarnation and seq."""
    for nid, rcv, inc, seq, kind in (
        ("n01", "*", 0, 0, 1),
        ("node-abc.1", "n0999", 123456, 99999, 31),
        ("a", "b", 7, 9, 300),
    ):
        ch = Channel(nid, "k", incarnation=inc)
        ch.seq = seq
        want = ch.overhead(kind, rcv)
        assert want == len(ch.seal(kind, rcv, [1, "x"])) - len('[1,"x"]')


def test_hlc_monotonic_and_merges():
    h = Hlc()
    t1 = h.now(100)
    t2 = h.now(100)
    t3 = h.now(50)  # physical clock went backwards
    assert t1 < t2 < t3
    t4 = h.update(60, (200 << 16) + 5)
    assert unpack(t4) == (200, 6)
    assert h.update(0, (10**9) << 16) is None  # too far ahead: refused


def test_ids():
    assert is_valid_id("n01") and not is_valid_id("") and not is_valid_id("a" * 33)
    assert not is_valid_id("a/b") and not is_valid_id(5)
    # an id names a directory and stands on command lines: not '.', '..' or an option
    for bad in (".", "..", "-", "-x", "_a", ".hidden"):
        assert not is_valid_id(bad), bad
    assert is_valid_id("n-01") and is_valid_id("pi4.kitchen") and is_valid_id("7_b")
    assert node_name(3) == "n03" and node_name(120) == "n120"
    try:
        check_id("bad id")
    except ValueError as e:
        assert "node id" in str(e)
        return
    raise AssertionError("expected ValueError")


class _Cfg:
    period_ms = 1000
    ratio = 0.5
    on = False


def test_config_overrides():
    c = _Cfg()
    apply_overrides(c, _Cfg, {"period_ms": 5, "ratio": 1, "on": True}, "test")
    assert c.period_ms == 5 and c.ratio == 1.0 and c.on is True
    for bad in ({"nope": 1}, {"period_ms": "5"}, {"on": 1}, {"period_ms": True}):
        try:
            apply_overrides(_Cfg(), _Cfg, bad, "test")
        except ValueError:
            continue
        raise AssertionError("expected ValueError for %r" % (bad,))
