"""Gossip bodies (collected through test_messages.py): decode accepts exactly what the core
sends, rejects the rest, never raises; messages stay within the datagram limit."""

import sys

from roost.common.channel import Channel
from roost.common.prng import Prng
from roost.node import gossip as g
from roost.node.effects import PERSIST, SEND
from roost.node.gossip_wire import PH_REPLY, PH_SUMS

# a full 1400-byte datagram on CPython; on the 100 KB MicroPython heap (fragmented after the
# imports on the 64-bit unix port) a smaller limit proves the same packing rule
_FULL = 700 if sys.implementation.name == "micropython" else 1400


def _core(nid="n01", max_bytes=1400, **kw):
    ch = Channel(nid, "k", max_bytes=max_bytes)
    return g.GossipCore(nid, ch, g.GossipConfig(**kw), Prng(7), {}, 0)


def test_member_update_wire_strings():
    for u in (
        ["n01", g.ALIVE, 3, "esp32", "r1", 0],
        ["n01", g.SUSPECT, 3, "", "", "n02"],
        ["n01", g.SLEEPING, 3, "", "", 5000],
        ["n01", g.LEFT, 1073741823, "pi4", "", 0],
    ):
        assert g.parse_member(g.encode_member(u)) == u
    assert g.encode_member(["n01", g.ALIVE, 3, "esp32", "r1", 0]) == "n01:0:3:esp32:r1:0"
    for bad in (
        "n01:1:3:::",  # a suspect without its suspecter
        "n01:5:3:::0",  # unknown state
        "n01:0:-1:::0",
        "n01:0:+1:::0",  # only canonical decimals
        "n01:0:01:::0",
        "n01:0: 1:::0",
        "n01:0:\u0661:::0",  # a non-ASCII digit
        "n01:0:1073741824:::0",  # above MAX_INC
        "bad id:0:1:::0",
        "n01:0:1:" + "x" * 17 + "::0",  # meta too long
        "n01:0:1:::1",  # extra must be 0 unless suspect or sleeping
        "n01:4:1:::1000000000",  # sleeps past a day
        "n01:0:1::",
        "n01:0:1:::0:",
        "n01:0:1:::0" + "x" * 120,
        "",
        ["n01", g.ALIVE, 1, "", "", 0],  # the old list form is not a wire string
        {"id": "n01"},
        7,
    ):
        assert g.parse_member(bad) is None, bad


def test_summary_checks():
    assert g.check_summary(["n01", 1, [1, 2.5, "ok", None, True]], 16)
    assert not g.check_summary(["n01", 0, [1]], 16)  # versions start at 1
    assert not g.check_summary(["n01", 1, [[1]]], 16)  # flat only
    assert not g.check_summary(["n01", 1, {"t": 1}], 16)
    assert not g.check_summary(["n01", 1, ["x" * 33]], 16)
    assert not g.check_summary(["n01", 1, [1] * 17], 16)
    assert not g.check_summary(["n01", 1, [float("inf")]], 16)


def test_decode_body_shapes():
    ok = [["n02", 0, 1, "", "", 0]], [["n02", 2, [1]]]
    wire = ["n02:0:1:::0"]
    assert g.decode_body(g.PING, [5, "n01", [wire, ok[1]]]) == (5, "n01", ok[0], ok[1])
    assert g.decode_body(g.ACK, [5, [[], []]]) == (5, [], [])
    assert g.decode_body(g.GOSSIP, [[[], []]]) == ([], [])
    sync = g.decode_body(g.SYNC, [0, 1, [], ["", "", [["n03", 4]]], []])
    assert sync == (0, 1, [], ("", "", [["n03", 4]]), [])
    assert g.decode_body(g.SYNC, [2, 1, [], 0, ok[1]]) == (2, 1, [], None, ok[1])
    bad = [
        (g.PING, [5, "n01"]),
        (g.PING, ["5", "n01", [[], []]]),
        (g.PING, [5, "n01", [[], {}]]),
        (g.ACK, [-1, [[], []]]),
        (g.ACK, None),
        (g.GOSSIP, [[[["n02"]], []]]),
        (g.GOSSIP, [[["n02:0:1:::0", "n03"], []]]),
        (g.SYNC, [3, 1, [], 0, []]),
        (g.SYNC, [0, 2, [], 0, []]),
        (g.SYNC, [0, 1, [], ["", "", [["n03", 0]]], []]),
        (g.SYNC, [0, 1, [], ["a b", "", []], []]),
        (g.SYNC, [0, 1, [], [1, 2, 3], []]),
        (99, []),
    ]
    for kind, body in bad:
        assert g.decode_body(kind, body) is None, (kind, body)


def _sends(effects):
    return [e for e in effects if e[0] == SEND]


def _sizes(effects):
    return [len(e[2]) for e in _sends(effects)]


def test_piggyback_fills_but_never_exceeds_datagram():
    c = _core(max_bytes=_FULL)
    for i in range(30):  # 30 members and 30 summaries waiting to be gossiped
        nid = "m%03d" % i
        c._merge(0, [nid, g.ALIVE, 1, "esp32", "room-%d" % (i % 4), 0], [])
        c._merge_summary([nid, 1, [i, 21.5, 1013, 40, "ok"]], [])
    out = []
    c._send_gossip(0, "m001", out)
    sizes = _sizes(out)
    assert len(sizes) == 1
    assert _FULL - 150 < sizes[0] <= _FULL
    assert out[0][0] == PERSIST  # the incarnation is on flash before any message carries it
    env = Channel("m001", "k", max_bytes=_FULL).open(_sends(out)[0][2])
    ms, ss = g.decode_body(g.GOSSIP, env.body)
    assert len(ms) + len(ss) > 10


def test_full_sync_splits_into_datagrams():
    c = _core(max_bytes=400)
    for i in range(32):
        nid = "m%03d" % i
        c._merge(0, [nid, g.ALIVE, 1, "pi4", "lab", 0], [])
        c._merge_summary([nid, 3, [i, i + 0.5]], [])
    out = []
    c._send_state(0, g.SYNC, "m001", 0, out)
    sizes = _sizes(out)
    assert len(sizes) >= 2
    assert max(sizes) <= c.ch.max_bytes
    seen = 0
    digest = 0
    rx = Channel("m001", "k", max_bytes=400)
    for e in _sends(out):
        msg = g.decode_body(g.SYNC, rx.open(e[2]).body)
        seen += len(msg[2])
        if msg[3] is not None:
            digest += len(msg[3][2])
    assert seen == 33 and digest == 32


def test_sync_capped_at_max_datagrams():
    c = _core(max_bytes=400, sync_max_datagrams=2)
    for i in range(32):
        c._merge(0, ["m%03d" % i, g.ALIVE, 1, "pi4", "lab", 0], [])
    out = []
    c._send_state(0, g.SYNC, "m001", 0, out)
    assert len(_sizes(out)) == 2


def test_publish_bounds():
    c = _core(max_summary_bytes=40)
    eff = c.publish(0, [1, 2, 3])
    assert [e for e in eff if e[0] == 4] == [(4, "summary", ["n01", 1])]
    for bad in ([1.5] * 20, "text", [[1]], {"a": 1}, [1] * 17):
        try:
            c.publish(0, bad)
        except ValueError:
            continue
        raise AssertionError("publish accepted %r" % (bad,))
    assert c.summaries()["n01"] == (1, [1, 2, 3])


def test_config_validation():
    for bad in (
        {"probe_timeout_ms": 1000},
        {"nope": 1},
        {"probe_interval_ms": "1s"},
        {"seeds": ["bad id"]},
        {"board": "x" * 20},
        {"push_pull_dead_pct": 101},
    ):
        try:
            g.GossipConfig(**bad)
        except ValueError:
            continue
        raise AssertionError("accepted %r" % (bad,))
    w = g.GossipConfig.wifi()
    assert w.probe_interval_ms > g.GossipConfig.lan().probe_interval_ms
    assert g.GossipConfig.wifi(max_members=64).max_members == 64


def test_heard_repeats_count_as_sends():
    """A piggybacked repeat of an update still queued here counts as one of our sends (others
    are spreading it); a repeat in a full-state sync does not."""
    c = _core()
    u = ["m001", g.ALIVE, 1, "pi4", "lab", 0]
    c._merge(0, u, [])
    w = g.encode_member(u)
    limit = g.retransmit_limit(c._n(), c.cfg.retransmit_mult)
    peer = Channel("m002", "k")
    c.receive(0, "m002", peer.seal(g.SYNC, "n01", [PH_SUMS, 1, [w], 0, []]))
    assert c._qm["m001"] >> 22 == 0
    for _ in range(limit - 1):
        c.receive(0, "m002", peer.seal(g.GOSSIP, "n01", [[[w], []]]))
    assert c._qm["m001"] >> 22 == limit - 1
    c.receive(0, "m002", peer.seal(g.GOSSIP, "n01", [[[w], []]]))
    assert "m001" not in c._qm
    assert c.state_of("m001") == "alive"


def test_heard_summary_repeats_count_after_our_own_first_sends():
    """A repeat of a queued summary counts as one of our sends only once we have sent it
    _OWN_SENDS times ourselves (the last nodes of a small fleet would otherwise wait)."""
    c = _core()
    c._merge(0, ["m002", g.ALIVE, 1, "", "", 0], [])
    peer = Channel("m002", "k")
    rep = [[[], [["m003", 1, [21.5]]]]]
    c.receive(0, "m002", peer.seal(g.GOSSIP, "n01", rep))  # new: queued, not a repeat
    limit = g.retransmit_limit(c._n(), c.cfg.retransmit_mult)
    own = 4
    for i in range(own):
        c.receive(0, "m002", peer.seal(g.GOSSIP, "n01", rep))
        assert c._qs["m003"] >> 22 == i  # heard, not counted: we have sent it i times
        assert c._gossip(0, 1000, None)[1] == [["m003", 1, [21.5]]]
    for i in range(own, limit - 1):
        c.receive(0, "m002", peer.seal(g.GOSSIP, "n01", rep))
        assert c._qs["m003"] >> 22 == i + 1
    c.receive(0, "m002", peer.seal(g.GOSSIP, "n01", rep))
    assert "m003" not in c._qs
    assert c.summaries()["m003"] == (1, [21.5])


def test_first_push_pull_after_join_is_staggered():
    """The join is a full exchange: the next push-pull comes an interval later, at a random
    phase in [interval/2, 3*interval/2), so a fleet booted together does not sync at once."""
    seen = set()
    for seed in range(6):
        c = g.GossipCore("n01", Channel("n01", "k"), g.GossipConfig(seeds=["n02"]),
                         Prng(seed), {}, 0)
        c.tick(0)
        reply = Channel("n02", "k").seal(
            g.SYNC, "n01", [PH_REPLY, 1, ["n02:0:1:::0"], 0, []]
        )
        c.receive(40, "n02", reply)
        i = c.cfg.push_pull_interval_ms
        assert 40 + i // 2 <= c._next_pp < 40 + i // 2 + i
        seen.add(c._next_pp)
    assert len(seen) > 1
