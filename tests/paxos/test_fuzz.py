"""Robustness: garbage, forged, wrong-ballot and unknown-sender messages never raise, are
dropped and counted, and never move the acceptor's durable state backwards."""

from hypothesis import given, settings
from hypothesis import strategies as st

from roost.common.channel import Channel
from roost.node.effects import PERSIST, SEND
from roost.node.paxos import ACCEPT, PREPARE, SNAP, PaxosCore
from tests.paxos.pump import KEY, NEW, Cluster, CountSM

IDS = ["n1", "n2", "n3"]

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**45, 2**45),
                      st.text(max_size=12), st.floats(allow_nan=False))
json_value = st.recursive(json_leaf, lambda c: st.lists(c, max_size=6), max_leaves=25)


def _core():
    return PaxosCore("n1", Channel("n1", KEY), IDS, CountSM(), storage=dict(NEW))


def _rejections(core):
    n = core.channel.rejected_total()
    return n


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1500))
def test_random_bytes_never_raise(raw):
    core = _core()
    assert core.receive(0, "n2", raw) == []
    assert _rejections(core) == 1


@settings(max_examples=400, deadline=None)
@given(st.integers(30, 45), json_value, st.sampled_from(["n2", "n3", "zz"]))
def test_sealed_garbage_bodies_are_dropped_and_counted(kind, body, sender):
    core = _core()
    ch = Channel(sender, KEY)
    try:
        raw = ch.seal(kind, "n1", body)
    except ValueError:
        return
    before = core.ballot
    effects = core.receive(5, sender, raw)
    for e in effects:  # whatever it answers is well formed
        assert e[0] in (SEND, PERSIST)
    assert core.ballot >= before
    handled = effects or core.log or core.ballot != before
    counted = _rejections(core) + sum(v for k, v in core.stats.items()
                                      if k.startswith("rx_rejected_"))
    assert handled or counted >= 1 or kind in (33, 35, 36, 38)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=400), st.integers(0, 399), st.integers(0, 255))
def test_one_byte_flips_are_rejected(payload_seed, pos, byte):
    ch = Channel("n2", KEY)
    raw = bytearray(ch.seal(ACCEPT, "n1", [1, "n2", 1, ["b", [payload_seed.hex()]], 0]))
    pos %= len(raw)
    if raw[pos] == byte:
        return
    raw[pos] = byte
    core = _core()
    assert core.receive(0, "n2", bytes(raw)) == []
    assert _rejections(core) == 1


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**40), st.integers(1, 50))
def test_wrong_ballots_are_refused_after_a_promise(r, slot):
    core = _core()
    n2, n3 = Channel("n2", KEY), Channel("n3", KEY)
    core.receive(0, "n2", n2.seal(PREPARE, "n1", [1000, "n2", 1]))
    eff = core.receive(1, "n3", n3.seal(ACCEPT, "n1", [r % 1000, "n3", slot, ["n"], 0]))
    assert slot not in core.log
    assert core.stats["rx_rejected_old_ballot"] == 1
    assert [e[0] for e in eff] == [SEND]  # a NACK, nothing persisted
    eff = core.receive(2, "n3", n3.seal(PREPARE, "n1", [r % 1000, "n3", 1]))
    assert not [e for e in eff if e[0] == PERSIST]
    assert core.ballot == (1000, "n2")


def test_unknown_sender_is_counted():
    core = _core()
    zz = Channel("zz", KEY)
    for kind in range(32, 41):
        assert core.receive(0, "zz", zz.seal(kind, "n1", [1, "zz", 1])) == []
    assert core.stats["rx_rejected_unknown_sender"] == 9


def test_forged_snapshot_chunks_cannot_install():
    cl = Cluster(IDS)
    leader = cl.wait_leader()
    follower = [n for n in IDS if n != leader][0]
    core = cl.core(follower)
    ch = Channel(leader, KEY, incarnation=99)
    # opened by a channel of their own: the core's would take the leader for rebooted and
    # drop its real datagrams, of an older incarnation, from then on
    rx = Channel(follower, KEY)
    # a chunk claiming to complete a snapshot with the wrong checksum
    eff = core.handle(cl.now, rx.open(ch.seal(SNAP, follower, [50, 2, 7, 0, "e30="])))
    assert eff == [] and core.applied_slot == 0
    assert core.stats["rx_rejected_malformed"] == 1
    eff = core.handle(cl.now, rx.open(ch.seal(SNAP, follower, [50, 10**9, 7, 0, "e30="])))
    assert core.stats["rx_rejected_oversized"] == 1
    assert cl.propose(leader, "still fine")
    cl.advance(200)
    assert core.applied_index == 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(30, 45), json_value), max_size=30))
def test_cluster_survives_injected_garbage(msgs):
    cl = Cluster(IDS)
    leader = cl.wait_leader()
    assert leader is not None
    for i, (who, kind, body) in enumerate(msgs):
        src = IDS[who]
        dst = IDS[(who + 1) % 3]
        try:
            raw = cl.core(src).channel.seal(kind, dst, body)  # a buggy peer's own channel
        except ValueError:
            continue
        if i % 3 == 0:
            cl.propose(cl.leader() or leader, ["ok", i])
        cl.queue.append((src, dst, raw))
        cl.deliver()
    cl.advance(1500)
    leader = cl.leader()
    assert leader is not None
    assert cl.propose(leader, "end")
    cl.advance(300)
    assert len({cl.core(n).applied_index for n in IDS}) == 1
    assert cl.violations == 0
