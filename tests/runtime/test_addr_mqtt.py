"""UDP addresses announced through the broker: sealed, checked, learned (CPython and
MicroPython; the broker side runs for real in tests/fleet/test_plan.py)."""

from roost.common.channel import Channel
from roost.node.addr_mqtt import KIND_ADDR, AddrBook, local_ip, parse
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


def test_an_older_announcement_published_again_does_not_move_a_node():
    """Anyone who can publish on the broker can put back a signed announcement from an
    earlier boot or an earlier address (a DHCP lease since given to someone else): the
    newest (incarnation, seq) taken so far wins."""
    udp = UdpTransport("127.0.0.1", 0)
    b, c, stats = _book("n02", udp)
    n01 = Channel("n01", KEY, incarnation=5)
    old = n01.seal(KIND_ADDR, "*", ["10.0.0.7", 4210])
    new = n01.seal(KIND_ADDR, "*", ["10.0.0.9", 4210])
    c.on_message("roost/lab/node/n01/udp", new, True)
    c.on_message("roost/lab/node/n01/udp", old, True)
    earlier_boot = Channel("n01", KEY, incarnation=4)
    earlier_boot.seq = 99
    c.on_message("roost/lab/node/n01/udp", earlier_boot.seal(KIND_ADDR, "*", ["10.0.0.8", 1]),
                 True)
    assert udp.book["n01"] == ("10.0.0.9", 4210)
    assert stats["addr_learned"] == 1 and stats["rx_rejected_addr"] == 2
    rebooted = Channel("n01", KEY, incarnation=6)  # a later boot moves it, whatever its seq
    c.on_message("roost/lab/node/n01/udp", rebooted.seal(KIND_ADDR, "*", ["10.0.0.10", 4210]),
                 True)
    assert udp.book["n01"] == ("10.0.0.10", 4210) and stats["addr_learned"] == 2


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


def test_another_node_with_the_same_id_is_named_once():
    said = []
    mine = Channel("n03", KEY, incarnation=1)
    c = _Client()
    stats = {}
    udp = UdpTransport("10.0.0.3", 47392)
    udp.sock = True  # stands for an open socket: announce() only asks that there is one
    book = AddrBook(c, "lab", "n03", udp, set(), stats, lambda: mine, None, said.append)
    t = "roost/lab/node/n03/udp"
    book.announce()
    c.on_message(t, Channel("n03", KEY, incarnation=0).seal(KIND_ADDR, "*", ["10.0.0.3", 4210]),
                 True)  # an earlier boot's, retained, found before its own came back
    c.on_message(t, c.sent[0][1], False)  # its own, heard back
    c.on_message(t, c.sent[0][1], True)  # and retained, after a reconnect
    c.on_message(t, Channel("n03", KEY, incarnation=5).seal(KIND_ADDR, "*", ["10.0.0.3", 47392]),
                 True)  # from before its flash was erased: a higher boot, the same address
    assert stats["duplicate_id"] == 0 and said == []
    # a second board flashed as n03, freshly, so with the same boot count
    twin = Channel("n03", KEY, incarnation=1)
    twin.seq = 7
    c.on_message(t, twin.seal(KIND_ADDR, "*", ["10.0.0.9", 4210]), False)
    c.on_message(t, twin.seal(KIND_ADDR, "*", ["10.0.0.9", 4210]), True)  # at a reconnect
    assert stats["duplicate_id"] == 2
    assert said == ["roost: another node also calls itself n03 (at 10.0.0.9:4210): give each "
                    "board its own --node-id"]


def test_an_old_board_resumed_beside_its_replacement_is_named():
    """roost flash --replace gives the new board a boot count from the clock, so the old
    board, switched on again, announces a lower one; the broker hands the two the client id
    in turn and each finds the other's retained announcement at its reconnect. Before this
    boot's own announcement came back, an earlier boot's is its own leftover; after, it
    was published later, by another board."""
    said = []
    new = Channel("n03", KEY, incarnation=1_000_000)
    c = _Client()
    stats = {}
    udp = UdpTransport("10.0.0.7", 47392)
    udp.sock = True
    book = AddrBook(c, "lab", "n03", udp, set(), stats, lambda: new, None, said.append)
    t = "roost/lab/node/n03/udp"
    old = Channel("n03", KEY, incarnation=4)
    old.seq = 30
    leftover = old.seal(KIND_ADDR, "*", ["10.0.0.3", 4210])
    book.announce()
    c.on_message(t, leftover, True)  # retained at its first connect: the old board's last
    assert stats["duplicate_id"] == 0 and said == [] and book.twin is None
    c.on_message(t, c.sent[0][1], False)  # its own came back: the broker holds it
    c.on_message(t, old.seal(KIND_ADDR, "*", ["10.0.0.3", 4210]), True)  # the old board's,
    assert stats["duplicate_id"] == 1  # announced after ours, found at a reconnect
    assert said == ["roost: another node also calls itself n03 (at 10.0.0.3:4210): give each "
                    "board its own --node-id"]
    assert book.twin[0] == "10.0.0.3:4210"


def test_the_old_board_hears_its_replacement_and_is_told_to_stand_down():
    """The other side of the swap: the board with the lower boot count finds the new one's
    announcement at its reconnect; it is the one the fleet no longer hears (its datagrams
    are replays of an older boot to its peers), so it is told to stop taking part."""
    said, newer = [], []
    old = Channel("n03", KEY, incarnation=4)
    c = _Client()
    stats = {}
    udp = UdpTransport("10.0.0.3", 4210)
    udp.sock = True
    AddrBook(c, "lab", "n03", udp, set(), stats, lambda: old, None, said.append, newer.append)
    new = Channel("n03", KEY, incarnation=1_000_000)
    c.on_message("roost/lab/node/n03/udp", new.seal(KIND_ADDR, "*", ["10.0.0.7", 4210]), True)
    assert newer == ["10.0.0.7:4210"] and said == [] and stats["duplicate_id"] == 1


def test_a_node_beside_its_broker_on_loopback_announces_the_loopback():
    """A virtual board flashed without --wifi has no station address, and the unix port
    cannot tell a socket's own address: toward a broker on this machine's loopback, the
    node is reachable on the loopback (else it never announced, and a twin went unseen)."""
    assert local_ip("127.0.0.1") == "127.0.0.1" and local_ip("localhost") == "127.0.0.1"
