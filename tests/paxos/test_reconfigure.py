"""Reconfiguration through the in-process pump: a dead replica replaced, then the group
grown to five, which survives losing two members. MicroPython-safe: six replicas in one
100 KB heap (a file of its own, so the other cluster tests' code is not loaded next to them).
"""

from roost.node.paxos import PaxosConfig
from tests.paxos.pump import Cluster

IDS = ["n1", "n2", "n3"]


def _propose(cl, cmd, want):
    """At whoever leads, until the leader has applied `want` commands, as a client retries:
    a new member boots unsure (it cannot tell a new member from a wiped one) and rebuilds
    by an election, which takes the lead once; what the old leader still queued is lost."""
    for _ in range(20):
        leader = cl.leader()
        if leader is not None and cl.propose(leader, cmd):
            cl.deliver()
            for _ in range(30):
                leader = cl.leader()
                if leader is not None and cl.core(leader).applied_index >= want:
                    return
                cl.advance(10)
        else:
            cl.advance(10)
    raise AssertionError("no leader applied %r" % (cmd,))


def test_reconfigure_replace_and_grow():
    cl = Cluster(IDS, config=PaxosConfig(window=4, snapshot_every=30))
    leader = cl.wait_leader()
    assert leader is not None, "no leader elected"
    for i in range(50):
        cl.propose(leader, ["a", i])
        cl.deliver()
    dead = [n for n in IDS if n != leader][0]
    cl.crash(dead)
    cl.add("n4", members=IDS)
    new_members = sorted([n for n in IDS if n != dead] + ["n4"])
    ok = cl.call(leader, lambda c, now: c.reconfigure(now, new_members))
    assert ok
    for i in range(20):
        _propose(cl, ["b", i], 51 + i)
    cl.advance(1000)
    assert cl.core(leader).members == new_members
    assert cl.core("n4").applied_index == 70, cl.core("n4").applied_index
    # grow to five
    cl.add("n5", members=IDS)
    cl.add("n6", members=IDS)
    five = sorted(new_members + ["n5", "n6"])
    leader = cl.leader()
    assert cl.call(leader, lambda c, now: c.reconfigure(now, five))
    for i in range(20):
        _propose(cl, ["c", i], 71 + i)
    cl.advance(1000)
    for n in five:
        assert cl.core(n).members == five
        assert cl.core(n).applied_index == 90, (n, cl.core(n).applied_index)
    # the new group survives losing two of its members, including the leader
    leader = cl.leader()
    cl.crash(leader)
    cl.crash([n for n in five if n != leader][0])
    new = cl.wait_leader()
    assert new is not None and new in five
    assert cl.propose(new, ["d"])
    cl.advance(500)
    assert cl.core(new).applied_index == 91
    assert cl.violations == 0
