"""Phase 1 with a promise in several datagrams. Runs on MicroPython too."""

from roost.common.channel import Channel
from roost.node.effects import SEND
from roost.node.paxos import ACCEPT, HEARTBEAT, PROMISE, PaxosConfig, PaxosCore

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
