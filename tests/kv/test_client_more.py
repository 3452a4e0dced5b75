"""KvClient: local misuse, bad replies, determinism, reboots, and against a replica.
MicroPython-safe."""

from roost.common.channel import Channel
from roost.common.prng import Prng
from roost.node.effects import SEND
from roost.node.kv import KV_REPLY, ST_ERROR, ST_OK, KvReplica
from roost.node.kvclient import KvClient
from tests.kv.fakes import InstantConsensus
from tests.kv.fakes_client import KEY, MEMBERS, World


def test_local_misuse_raises():
    w = World()
    for args in (("nope", "k"), ("get", ""), ("put", "k"), ("cas", "k")):
        try:
            w.client.submit(0, *args)
            raise AssertionError("accepted %r" % (args,))
        except ValueError:
            pass
    w.client.submit(0, "get", "k")
    try:
        w.client.submit(0, "get", "k")
        raise AssertionError("accepted a second operation while busy")
    except ValueError:
        pass


def test_bad_replies_are_dropped_and_counted():
    w = World()
    (dst, body), = w.sent(w.client.submit(0, "get", "k"))
    seq = body[0]
    for bad in (None, [seq], [seq, 9, None, None], [seq, ST_OK, 5, None], ["x", 0, None, None],
                [seq, ST_ERROR, None, None], [seq, True, None, None]):
        assert w.reply(1, dst, bad) == []
    assert w.client.busy()
    assert w.cc.stats["rx_rejected_malformed"] == 7
    stranger = Channel("zz", KEY)
    w.client.receive(1, "zz", stranger.seal(KV_REPLY, "c1", [seq, ST_OK, "x", None]))
    assert w.cc.stats["rx_rejected_unknown_sender"] == 1 and w.client.busy()
    rng = Prng(3)
    for i in range(200):
        junk = bytes(rng.getrandbits(8) for _ in range(rng.randbelow(70)))
        assert w.client.receive(i, dst, junk) == []
    assert w.client.busy()


def test_same_seed_same_retries():
    def run(seed):
        w = World(seed)
        w.sent(w.client.submit(0, "get", "k"))
        times = []
        for _ in range(100):
            d = w.client.next_deadline_ms()
            if d is None:
                break
            times.append((d, [x[0] for x in w.sent(w.client.tick(d))]))
        return times

    assert run(4) == run(4)
    assert run(4) != run(5)


def test_seq_grows_across_reboots():
    seqs = []
    for boot in (1, 2):
        c = KvClient("c1", Channel("c1", KEY, incarnation=boot), MEMBERS, rng=Prng(1))
        eff = c.submit(0, "get", "k")[0]
        seqs.append(Channel(eff[1], KEY).open(eff[2]).body[0])
    assert seqs[1] > seqs[0]


def test_client_against_replica_end_to_end():
    rch = Channel("n1", KEY)
    rep = KvReplica("n1", rch, MEMBERS, consensus=InstantConsensus(None))
    rep.paxos.sm = rep.store
    cc = Channel("c1", KEY)
    client = KvClient("c1", cc, ["n1"], rng=Prng(2))
    now = 0
    script = [("put", "k", "a", None, None), ("append", "k", "b", None, None),
              ("cas", "k", None, "ab", "c"), ("get", "k", None, None, None)]
    for op, key, value, old, new in script:
        effects = client.submit(now, op, key, value=value, old=old, new=new)
        for _ in range(10):
            nxt = []
            for e in effects:
                if e[0] == SEND and e[1] == "n1":
                    nxt.extend(rep.receive(now, "c1", e[2]))
                elif e[0] == SEND and e[1] == "c1":
                    nxt.extend(client.receive(now, "n1", e[2]))
            effects = nxt
            now += 1
            if not effects:
                break
        assert not client.busy()
    outs = [(r["op"], r["ok"], r.get("output")) for r in client.history]
    assert outs == [("put", True, None), ("append", True, None), ("cas", True, True),
                    ("get", True, "c")]
