"""NodeHost unit tests (CPython and MicroPython): one channel, dispatch by kind, sensors,
joined event, bad input counted. No simulator: a tiny in-process pump."""

from roost.common.channel import Channel
from roost.common.prng import Prng
from roost.node.effects import EVENT, SEND
from roost.node.gossip import GossipConfig
from roost.node.host import HostConfig, NodeHost, make_host_factory, summary_of

KEY = "unit-key"


class _Reading:
    def __init__(self, values):
        self.values = values

    def to_list(self):
        return [1, "fake", 0, [[k, self.values[k]] for k in sorted(self.values)], [], "ok",
                None]


class _Sensor:
    name = "fake"
    units = {"t": "C"}

    def __init__(self):
        self.reads = 0

    def read(self, now_ms):
        self.reads += 1
        return _Reading({"t": 20.04 + self.reads, "n": 3})


def _pair(with_sensor=False):
    hosts = {}
    for n in ("a1", "a2"):
        cfg = GossipConfig(seeds=("a1", "a2"))
        sens = (lambda nid, now: [_Sensor()]) if with_sensor else None
        f = make_host_factory(cfg, sensors_fn=sens, host_config=HostConfig(sample_ms=500))
        hosts[n] = f(n, Channel(n, KEY), {}, Prng(7).fork(n), 0)
    return hosts


def _pump(hosts, until_ms, events):
    now = 0
    queue = []
    for _ in range(20000):
        if now > until_ms:
            break
        for n in sorted(hosts):
            d = hosts[n].next_deadline_ms()
            if d is not None and d <= now:
                queue.extend((n, e) for e in hosts[n].tick(now))
        while queue:
            src, e = queue.pop(0)
            if e[0] == SEND:
                dsts = [x for x in sorted(hosts) if x != src] if e[1] == "*" else [e[1]]
                for dst in dsts:
                    queue.extend((dst, x) for x in hosts[dst].receive(now, src, e[2]))
            elif e[0] == EVENT:
                events.append((now, src, e[1], e[2]))
        now += 10
    return now


def test_pair_joins_once_and_publishes_sensor_summaries():
    hosts = _pair(with_sensor=True)
    events = []
    _pump(hosts, 3000, events)
    joined = sorted(n for _, n, name, _d in events if name == "joined")
    assert joined == ["a1", "a2"]
    readings = [d for _, n, name, d in events if name == "reading"]
    assert len(readings) >= 8
    a1 = hosts["a1"]
    assert a1.samples >= 4
    assert a1.last_summary[0] == 3 and isinstance(a1.last_summary[1], float)
    sums = hosts["a2"].gossip.summaries()
    assert "a1" in sums and sums["a1"][0] >= 2 and sums["a1"][1][0] == 3
    st = a1.status()
    assert st["joined"] and [m[1] for m in st["members"]] == ["alive", "alive"]
    assert "group" not in st


def test_unknown_kinds_and_garbage_are_counted_not_raised():
    hosts = _pair()
    h = hosts["a1"]
    other = Channel("a2", KEY, 1)
    assert h.receive(0, "a2", other.seal(70, "a1", [1, 2])) == []  # kv kind, no replica here
    assert h.receive(0, "a2", other.seal(200, "a1", [])) == []
    assert h.channel.stats["rx_rejected_unknown_kind"] == 2
    assert h.receive(0, "a2", b"garbage" * 10) == []
    assert h.receive(0, "a2", Channel("a2", "wrong", 1).seal(1, "a1", [])) == []
    assert h.channel.stats["rx_rejected_auth"] == 2
    assert h.receive(0, "a2", other.seal(1, "a1", "not a list")) == []
    assert h.channel.stats["rx_rejected_malformed"] >= 1


def test_learned_routes_only_after_authentication():
    hosts = _pair()
    h = hosts["a1"]
    seen = []
    h.on_learn = lambda sender, src: seen.append((sender, src))
    h.receive(0, "@", Channel("c9", "wrong", 1).seal(1, "a1", []))
    assert seen == []
    h.receive(0, "@", Channel("c9", KEY, 1).seal(200, "a1", []))
    assert seen == [("c9", "@")]
    h.receive(0, "a2", Channel("a2", KEY, 1).seal(200, "a1", []))
    assert seen == [("c9", "@")]


def test_summary_of_rounds_and_limits():
    rs = [_Reading({"b": 1.26, "a": 2}), _Reading({"c": 7.77})]
    assert summary_of(rs, 16) == [2, 1.3, 7.8]
    assert summary_of(rs, 2) == [2, 1.3]


def test_host_config_is_validated():
    for bad in ({"sample_ms": 10}, {"summary_items": 17}, {"nope": 1}):
        try:
            HostConfig(**bad)
        except ValueError:
            continue
        raise AssertionError("accepted %r" % (bad,))
    assert HostConfig.lan().sample_ms == 2000
    h = NodeHost("a1", Channel("a1", KEY), _pair()["a1"].gossip)
    assert h.next_deadline_ms() is not None
