"""GossipCore cases (collected through test_core.py, which imports the gossip modules first so
they compile on an unfragmented MicroPython heap): one core with explicit now_ms, then small
clusters through the pump, including a 32-member view."""

from roost.common import envelope
from roost.common.auth import Hmac
from roost.common.channel import Channel
from roost.common.prng import Prng
from roost.node import gossip as g
from roost.node.effects import EVENT, PERSIST, SEND

KEY = "k"


def _core(nid="n01", storage=None, **kw):
    return g.GossipCore(nid, Channel(nid, KEY), g.GossipConfig(**kw), Prng(5), storage or {}, 0)


_MAC = Hmac(KEY)
_SEQ = {}  # peer -> last sequence number used (rising, for the replay window)


def _from(peer, kind, body, to="n01"):
    """A sealed envelope from peer (without a Channel per peer: 31 of them would not fit a
    100 KB heap next to the core)."""
    seq = _SEQ.get(peer, 0) + 1
    _SEQ[peer] = seq
    return envelope.encode(envelope.Envelope(kind, peer, to, 0, seq, body), _MAC)


def _sends(eff, kind=None):
    out = []
    for e in eff:
        if e[0] == SEND:
            env = Channel(e[1], KEY, max_bytes=1400).open(e[2]) if e[1] != "*" else None
            if env is not None and (kind is None or env.kind == kind):
                out.append((e[1], env))
    return out


def _events(eff, name="member"):
    return [e[2] for e in eff if e[0] == EVENT and e[1] == name]


def _add(core, ids, now=0):
    ms = [g.encode_member([n, g.ALIVE, 1, "esp32", "r1", 0]) for n in ids]
    return core.receive(now, ids[0], _from(ids[0], g.GOSSIP, [[ms, []]]))


def _run_to(core, t_end, now=0, hook=None, keep_sends=False, max_steps=1000):
    """Tick the core at each deadline up to t_end; returns the effects (SENDs only when
    keep_sends: a board's heap cannot hold a minute of datagrams)."""
    out = []
    for _ in range(max_steps):
        d = core.next_deadline_ms()
        if d is None or d > t_end:
            return out
        now = d if d > now else now
        eff = core.tick(now)
        if hook is not None:
            hook(now, eff)
        for e in eff:
            if keep_sends or e[0] != SEND:
                out.append(e)
    raise AssertionError("core kept ticking")


def test_suspicion_timeout_table():
    cfg = g.GossipConfig(suspicion_mult=4, suspicion_max_mult=6, suspicion_confirmations=3)
    # (n, confirmations, expected ms): min = 4 * log10(n) * 1000 (at least 4000), max = 6*min
    for n, c, want in (
        (2, 0, 4000),  # too small to expect confirmations: min
        (10, 0, 24000),
        (10, 3, 4000),
        (10, 9, 4000),
        (100, 0, 48000),
        (100, 3, 8000),
    ):
        assert g.suspicion_timeout_ms(n, c, cfg) == want, (n, c)
    one = g.suspicion_timeout_ms(10, 1, cfg)
    two = g.suspicion_timeout_ms(10, 2, cfg)
    assert 24000 > one > two > 4000  # each confirmation shrinks it, logarithmically
    assert g.retransmit_limit(9, 4) == 8 and g.retransmit_limit(99, 4) == 8
    assert g.retransmit_limit(100, 4) == 12
    assert g.retransmit_limit(1000, 4) == 16


def test_incarnation_persisted_before_it_is_sent():
    c = _core(storage={"gossip/inc": 5})
    assert c.inc == 6
    _add(c, ["n02"])
    eff = _run_to(c, 1000, keep_sends=True)
    kinds = [e[0] for e in eff if e[0] in (PERSIST, SEND)]
    assert kinds[0] == PERSIST and (PERSIST, "gossip/inc", 6) in eff
    assert SEND in kinds


def _answer_pings(core, log):
    def hook(now, eff):
        for dst, env in _sends(eff, g.PING):
            log.append(dst)
            # handed over already opened: the channel's replay window for 31 peers would not
            # fit next to the view in a 100 KB heap (the channel has its own tests)
            ack = envelope.Envelope(g.ACK, dst, "n01", 0, 1, [env.body[0], [[], []]])
            core.handle(now + 1, ack)

    return hook


def test_probe_ack_keeps_member_alive():
    c = _core()
    _add(c, ["n02"])
    log = []
    eff = _run_to(c, 10000, hook=_answer_pings(c, log))
    assert log == ["n02"] * 10  # one probe per period
    assert c.state_of("n02") == "alive"
    assert not _events(eff)
    assert c.stats["probe_failures"] == 0 and c.stats["pings"] == 10


def test_missed_probe_goes_indirect_then_suspect_then_dead():
    c = _core()
    _add(c, ["n02", "n03", "n04"])
    seen = []
    reqs = []

    def hook(now, eff):
        seen.extend((now, x) for x in _events(eff))
        if not reqs:
            reqs.extend(_sends(eff, g.PING_REQ))

    _run_to(c, 60000, hook=hook)
    assert reqs, "no ping-req after the direct ping timed out"
    assert c.stats["suspicions"] >= 1 and c.stats["deaths"] >= 1
    states = [ev[1][1] for ev in seen if ev[1][0] == reqs[0][1].body[1]]
    assert states[:2] == ["suspect", "dead"], seen


def test_refutes_suspicion_with_higher_incarnation():
    c = _core()
    _add(c, ["n02"])
    inc = c.inc
    doubt = g.encode_member(["n01", g.SUSPECT, inc, "", "", "n02"])
    c.receive(10, "n02", _from("n02", g.GOSSIP, [[[doubt], []]]))
    assert c.inc == inc + 1 and c.stats["refutations"] == 1
    eff = c.leave(20)  # any send now carries the new incarnation: persisted first
    kinds = [e[0] for e in eff if e[0] != EVENT]
    assert kinds[0] == PERSIST and SEND in kinds
    # an old suspicion (lower incarnation) is ignored
    c2 = _core()
    c2.inc = 4
    doubt = g.encode_member(["n01", g.SUSPECT, 3, "", "", "n02"])
    c2.receive(0, "n02", _from("n02", g.GOSSIP, [[[doubt], []]]))
    assert c2.inc == 4 and c2.stats["refutations"] == 0
