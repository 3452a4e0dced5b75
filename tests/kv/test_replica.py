"""KvReplica driven through its wire with an instant consensus; MicroPython-safe."""

from roost.common.channel import Channel
from roost.common.prng import Prng
from roost.node.effects import EVENT, SEND
from roost.node.kv import (
    KV_REPLY,
    KV_REQUEST,
    OP_GET,
    OP_PUT,
    ST_ERROR,
    ST_NOT_LEADER,
    ST_OK,
    ST_RETRY,
    KvConfig,
    KvReplica,
)
from tests.kv.fakes import InstantConsensus

KEY = "fleet-key"

# ---- KvReplica with an instant consensus ------------------------------------------------


def _replica(leader=True, hint=None, **cfg):
    _CHANNELS.clear()
    ch = Channel("n1", KEY)
    r = KvReplica(
        "n1", ch, ["n1", "n2", "n3"], config=KvConfig(**cfg),
        consensus=InstantConsensus(None, leader, hint),
    )
    r.paxos.sm = r.store
    return r


_CHANNELS = {}


def _req(client, body, kind=KV_REQUEST, to="n1"):
    # one sending channel per client, so sequence numbers grow as the replay window expects
    ch = _CHANNELS.get(client)
    if ch is None:
        ch = _CHANNELS[client] = Channel(client, KEY)
    return ch.seal(kind, to, body)


def _replies(effects, client="c1"):
    out = []
    ch = Channel(client, KEY)
    for e in effects:
        if e[0] == SEND:
            env = ch.open(e[2])
            assert env is not None and env.kind == KV_REPLY
            out.append(env.body)
    return out


def test_replica_leader_answers_after_apply():
    r = _replica()
    effs = r.receive(0, "c1", _req("c1", [1, OP_PUT, "k", "v", None]))
    assert _replies(effs) == [[1, ST_OK, None, None]]
    effs = r.receive(1, "c1", _req("c1", [2, OP_GET, "k", None, None]))
    assert _replies(effs) == [[2, ST_OK, "v", None]]
    # a re-sent request is answered from the session without a new proposal
    idx = r.paxos.index
    effs = r.receive(2, "c1", _req("c1", [2, OP_GET, "k", None, None]))
    assert _replies(effs) == [[2, ST_OK, "v", None]] and r.paxos.index == idx
    effs = r.receive(3, "c1", _req("c1", [1, OP_PUT, "k", "old", None]))
    assert _replies(effs) == [[1, ST_ERROR, "stale", None]]
    assert r.store.get("k") == "v"


def test_replica_follower_says_not_leader_with_hint():
    r = _replica(leader=False, hint="n3")
    effs = r.receive(0, "c1", _req("c1", [1, OP_PUT, "k", "v", None]))
    assert _replies(effs) == [[1, ST_NOT_LEADER, None, "n3"]]
    assert r.store.get("k") is None


def test_replica_bad_requests():
    r = _replica(max_value_len=3)
    effs = r.receive(0, "c1", _req("c1", [1, OP_PUT, "k", "long", None]))
    assert _replies(effs) == [[1, ST_ERROR, "too_large", None]]
    effs = r.receive(0, "c1", _req("c1", [2, 7, "k", None, None]))
    assert _replies(effs) == [[2, ST_ERROR, "malformed", None]]
    for body in (None, [1], [-1, 0, "k", None, None], ["x", 0, "k", None, None], {"a": 1}):
        assert r.receive(0, "c1", _req("c1", body)) == []
    assert r.channel.stats["rx_rejected_malformed"] == 5
    assert r.receive(0, "c1", _req("c1", [1], kind=90)) == []
    assert r.channel.stats["rx_rejected_unknown_kind"] == 1
    # paxos kinds go to the consensus core
    r.receive(0, "n2", _req("n2", [0], kind=40))
    assert r.paxos.handled == [40]


def test_replica_lost_leadership_tells_pending_to_retry():
    r = _replica(hint=None)
    r.paxos.hold = True
    effs = r.receive(0, "c1", _req("c1", [1, OP_PUT, "k", "v", None]))
    assert [e for e in effs if e[0] == EVENT and e[1] == "kv.leader"]
    assert _replies(effs) == [] and len(r.pending) == 1
    # the same request again while pending: no second proposal
    r.receive(1, "c1", _req("c1", [1, OP_PUT, "k", "v", None]))
    assert len(r.paxos.held) == 1
    r.paxos.leader = False
    r.paxos.hint = "n2"
    effs = r.tick(5)
    assert _replies(effs) == [[1, ST_RETRY, None, "n2"]]
    assert r.pending == {}


def test_replica_pending_is_bounded_and_expires():
    r = _replica(max_pending=2, pending_timeout_ms=100)
    r.paxos.hold = True
    r.receive(0, "c1", _req("c1", [1, OP_PUT, "k", "v", None]))
    r.receive(0, "c2", _req("c2", [1, OP_PUT, "k", "v", None]))
    effs = r.receive(0, "c3", _req("c3", [1, OP_PUT, "k", "v", None]))
    # "busy": never proposed, so the client knows a later "expired" is no lost answer
    assert _replies(effs, "c3") == [[1, ST_RETRY, "busy", None]]
    assert r.next_deadline_ms() == 100
    r.tick(100)
    assert r.pending == {} and r.stats["expired"] == 2
    # a commit after expiry answers nobody (the client has retried)
    assert _replies(r.paxos.release()) == []


def test_replica_random_bytes_never_raise():
    r = _replica()
    rng = Prng(5)
    good = _req("c1", [1, OP_PUT, "k", "v", None])
    for i in range(300):
        n = rng.randbelow(80)
        junk = bytes(rng.getrandbits(8) for _ in range(n))
        assert r.receive(i, "c1", junk) == []
    for i in range(len(good)):
        mutated = bytearray(good)
        mutated[i] ^= 0x41
        r.receive(i, "c1", bytes(mutated))
        r.receive(i, "c1", good[:i])
    assert r.store.get("k") is None
