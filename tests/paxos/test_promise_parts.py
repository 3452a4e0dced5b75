"""Phase 1 with a promise in several datagrams. Runs on MicroPython too."""

from roost.common.channel import Channel
from roost.node.effects import SEND
from roost.node.paxos import ACCEPT, HEARTBEAT, PREPARE, PROMISE, PaxosConfig, PaxosCore

KEY = "k" * 32
IDS = ["n1", "n2", "n3"]
NEW = {"unsure": 0}  # replicas of a new group: they vote at once


class NullSM:
    def apply(self, index, command):
        return None

    def snapshot(self):
        return None

    def restore(self, snap):
        pass


def test_a_promise_in_reordered_parts_still_completes_phase_one():
    # n2 holds 3 accepted slots of an old ballot: its promise needs several datagrams.
    # n1 hears them last part first (a network may reorder them) and must still win: n1
    # and n2 are a majority. Before, only parts in order counted and n1 never won.
    n2 = PaxosCore("n2", Channel("n2", KEY), IDS, NullSM(), storage=dict(NEW))
    n3 = Channel("n3", KEY)
    for s in range(1, 4):
        n2.receive(s, "n3", n3.seal(ACCEPT, "n2", [1, "n3", s, ["b", ["v%d" % s + "x" * 700]],
                                                   0]))
    # campaigning at once, without a pre-vote first: this test is about the promise's parts
    n1 = PaxosCore("n1", Channel("n1", KEY), IDS, NullSM(), PaxosConfig(pre_vote=False),
                   storage=dict(NEW), now_ms=1000)
    n1.receive(1000, "n3", n3.seal(HEARTBEAT, "n1", [1, "n3", 0]))  # round 1 is taken
    eff = n1.tick(2000)  # no leader heard since: n1 campaigns in round 2
    prepares = [e for e in eff if e[0] == SEND and e[1] == "n2"]
    assert len(prepares) == 1 and not n1.is_leader()
    parts = [e[2] for e in n2.receive(2001, "n1", prepares[0][2]) if e[0] == SEND]
    spy = Channel("n1", KEY)
    assert len(parts) == 3 and all(spy.open(p).kind == PROMISE for p in parts)
    again = {}
    at_n2 = Channel("n2", KEY)
    for payload in reversed(parts):
        for e in n1.receive(2002, "n2", payload):
            if e[0] == SEND and e[1] == "n2":
                env = at_n2.open(e[2])
                if env.kind == ACCEPT:
                    again[env.body[2]] = env.body[3][1][0][:3]
    assert n1.is_leader()
    # the slots n2 reported are proposed again under n1's ballot
    assert sorted(again) == [1, 2, 3] and again[2] == "v2x"


def small(node_id):
    """A channel of small datagrams (one 250-character value a promise part): the heap of
    a MicroPython run holds two replicas and their copies in flight."""
    return Channel(node_id, KEY, max_bytes=600)


def test_a_long_promise_comes_a_few_parts_per_prepare_and_the_candidate_asks_for_the_rest():
    # n2 holds 7 accepted slots, a (small) datagram each; one PREPARE gets at most 3 parts
    # (catchup_datagrams), the third flagged 2. n1 asks again from where they end until
    # the final part (flagged 1) comes, and then leads. Before, n2 sent all 7 at once: a
    # tail of hundreds overflowed a receive buffer on every retry, and no one ever led.
    cfg = PaxosConfig(pre_vote=False, catchup_datagrams=3)
    n2 = PaxosCore("n2", small("n2"), IDS, NullSM(), cfg, storage=dict(NEW))
    n3 = small("n3")
    for s in range(1, 8):
        n2.receive(s, "n3", n3.seal(ACCEPT, "n2", [1, "n3", s, ["b", ["v%d" % s + "x" * 250]],
                                                   0]))
    n1 = PaxosCore("n1", small("n1"), IDS, NullSM(), cfg, storage=dict(NEW), now_ms=1000)
    n1.receive(1000, "n3", n3.seal(HEARTBEAT, "n1", [1, "n3", 0]))
    eff = n1.tick(2000)
    at_n2 = small("n2")
    asked = []
    flags = []
    again = {}
    now = 2001
    while not n1.is_leader() and len(asked) < 10:
        prepares = [e[2] for e in eff if e[0] == SEND and e[1] == "n2"
                    and small("n2").open(e[2]).kind == PREPARE]
        assert len(prepares) == 1, "n1 asks n2 once for each answer"
        asked.append(small("n2").open(prepares[0]).body[2])
        parts = [e[2] for e in n2.receive(now, "n1", prepares[0]) if e[0] == SEND]
        assert 1 <= len(parts) <= 3
        flags.append([small("n1").open(p).body[5] for p in parts])
        eff = []
        for p in parts:
            for e in n1.receive(now + 1, "n2", p):
                eff.append(e)
                if e[0] == SEND and e[1] == "n2":
                    env = at_n2.open(e[2])
                    if env.kind == ACCEPT:
                        again[env.body[2]] = env.body[3][1][0][:3]
        now += 2
    assert n1.is_leader()
    assert asked == [1, 4, 7] and flags == [[0, 0, 2], [0, 0, 2], [1]]
    assert sorted(again) == [1, 2, 3, 4, 5, 6, 7] and again[7] == "v7x"


def test_a_retried_prepare_asks_from_where_the_parts_that_came_reach():
    # the part that ends n2's first answer is lost: once no part came for retry_ms, n1's
    # retry asks from the end of the parts it has, not from the start again
    cfg = PaxosConfig(pre_vote=False, catchup_datagrams=3)
    n2 = PaxosCore("n2", small("n2"), IDS, NullSM(), cfg, storage=dict(NEW))
    n3 = small("n3")
    for s in range(1, 8):
        n2.receive(s, "n3", n3.seal(ACCEPT, "n2", [1, "n3", s, ["b", ["v" + "x" * 250]], 0]))
    n1 = PaxosCore("n1", small("n1"), IDS, NullSM(), cfg, storage=dict(NEW), now_ms=1000)
    n1.receive(1000, "n3", n3.seal(HEARTBEAT, "n1", [1, "n3", 0]))
    at_n2 = small("n2")
    prep = [e[2] for e in n1.tick(2000) if e[0] == SEND and e[1] == "n2"][0]
    parts = [e[2] for e in n2.receive(2001, "n1", prep) if e[0] == SEND]
    for p in parts[:2]:
        assert not [e for e in n1.receive(2002, "n2", p) if e[0] == SEND and e[1] == "n2"]
    # parts came at 2002: no retry before retry_ms has passed without one (a retry while
    # they come would start a second pull beside the first)
    assert not [e for e in n1.tick(2000 + cfg.retry_ms) if e[0] == SEND and e[1] == "n2"]
    retry = [e[2] for e in n1.tick(2000 + 2 * cfg.retry_ms) if e[0] == SEND and e[1] == "n2"]
    assert [at_n2.open(p).body[2] for p in retry] == [3]


def test_a_leader_pulls_no_more_of_a_promise_it_no_longer_needs():
    # n1 wins with n2's whole promise; n3's first answer comes after the win, its last part
    # flagged 2. Before, the leader went on pulling n3's log as it grew (each PREPARE also
    # blanked n3's leader hint): 283 PREPAREs in 4 s in a review's run
    cfg = PaxosConfig(pre_vote=False, catchup_datagrams=3)
    n3c = small("n3")
    acceptors = {}
    for a, old in (("n2", "n3"), ("n3", "n2")):  # each accepted 7 slots of the other's term
        acceptors[a] = PaxosCore(a, small(a), IDS, NullSM(), cfg, storage=dict(NEW))
        ch = small(old)
        for s in range(1, 8):
            acceptors[a].receive(s, old, ch.seal(ACCEPT, a, [1, old, s, ["b", ["v" + "x" * 250]],
                                                             0]))
    n1 = PaxosCore("n1", small("n1"), IDS, NullSM(), cfg, storage=dict(NEW), now_ms=1000)
    n1.receive(1000, "n3", n3c.seal(HEARTBEAT, "n1", [1, "n3", 0]))
    eff = n1.tick(2000)
    first = {a: [e[2] for e in eff if e[0] == SEND and e[1] == a][0] for a in acceptors}
    n3_parts = [e[2] for e in acceptors["n3"].receive(2001, "n1", first["n3"]) if e[0] == SEND]
    out = list(acceptors["n2"].receive(2001, "n1", first["n2"]))
    now = 2002
    while not n1.is_leader() and now < 2040:
        nxt = []
        for e in out:
            if e[0] == SEND:
                nxt += [x for x in n1.receive(now, "n2", e[2]) if x[0] == SEND and x[1] == "n2"]
        out = []
        for e in nxt:
            out += acceptors["n2"].receive(now, "n1", e[2])
        now += 1
    assert n1.is_leader()
    assert len(n3_parts) == 3 and small("n1").open(n3_parts[2]).body[5] == 2
    to_n3 = []
    for p in n3_parts:
        to_n3 += [e[2] for e in n1.receive(now, "n3", p) if e[0] == SEND and e[1] == "n3"]
    assert not [p for p in to_n3 if small("n3").open(p).kind == PREPARE]
