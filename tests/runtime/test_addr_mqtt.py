"""UDP addresses announced through the broker: sealed, checked, learned (CPython and
MicroPython; the broker side runs for real in tests/fleet/test_plan.py)."""

from roost.common.channel import Channel
from roost.node.addr_mqtt import KIND_ADDR, AddrBook, parse
from roost.node.udp import UdpTransport

KEY = "k" * 32


class _Client:
    """What AddrBook uses of an MQTT client: subscribe, publish, on_message, on_connect."""

    def __init__(self):
        self.on_message = None
        self.subs = []
        self.sent = []

    def subscribe(self, f, qos):
        self.subs.append(f)

    def publish(self, t, payload, qos=0, retain=False):
        self.sent.append((t, payload, retain))


def _book(node, udp, static=(), stats=None):
    ch = Channel(node, KEY)
    c = _Client()
    stats = {} if stats is None else stats
    return AddrBook(c, "lab", node, udp, set(static), stats, lambda: ch,
                    "mqtt://127.0.0.1:1883"), c, stats


def test_an_announcement_is_learned_and_a_forged_one_is_not():
    a_udp = UdpTransport("127.0.0.1", 47391)  # a port of its own: the unix port of
    a_udp.open()  # MicroPython cannot tell which port 0 became
    try:
        a, ca, _ = _book("n01", a_udp)
        a.announce()
        t, payload, retain = ca.sent[0]
        assert t == "roost/lab/node/n01/udp" and retain
        assert parse(payload, Channel("x", KEY).mac, "n01")[0] == ("127.0.0.1", a_udp.bind_port)
        b_udp = UdpTransport("127.0.0.1", 0)
        b, cb, stats = _book("n02", b_udp)
        assert cb.subs == ["roost/lab/node/+/udp"]
        cb.on_message(t, payload, True)
        assert b_udp.book["n01"] == ("127.0.0.1", a_udp.bind_port)
        assert stats["addr_learned"] == 1
        cb.on_message(t, payload, True)  # the same again: nothing moves
        assert stats["addr_learned"] == 1
        # another key's, or one announced under another node's topic: refused and counted
        forged = Channel("n01", "x" * 32).seal(KIND_ADDR, "*", ["10.0.0.66", 4210])
        cb.on_message("roost/lab/node/n01/udp", forged, True)
        cb.on_message("roost/lab/node/n03/udp", payload, True)
        assert stats["rx_rejected_addr"] == 2 and "n03" not in b_udp.book
        assert b_udp.book["n01"] == ("127.0.0.1", a_udp.bind_port)
    finally:
        a_udp.close()


def test_configured_peers_stay_and_other_topics_pass_through():
    udp = UdpTransport("127.0.0.1", 0, {"n01": ("127.0.0.1", 4999)})
    b, c, stats = _book("n02", udp, static=("n01",))
    seen = []
    b._prev = lambda t, p, r: seen.append(t)
    moved = Channel("n01", KEY).seal(KIND_ADDR, "*", ["127.0.0.1", 5001])
    c.on_message("roost/lab/node/n01/udp", moved, True)
    assert udp.book["n01"] == ("127.0.0.1", 4999) and stats["addr_learned"] == 0
    c.on_message("roost/lab/node/n01/inbox", b"x", False)
    assert seen == ["roost/lab/node/n01/inbox"]
