"""A replica group in one process keeps its log bounded through snapshots over 10,000
commands; on MicroPython the gate runs it in a bounded heap (112 KB for its three
replicas and the pump: tests/test_micropython_gate.py)."""

import gc
import sys

from roost.node.paxos import PaxosConfig
from tests.paxos.pump import Cluster

IDS = ["n1", "n2", "n3"]
SNAPSHOT_EVERY = 12
WINDOW = 2
_MPY = sys.implementation.name == "micropython"


def test_log_bounded_over_10000_commands():
    cl = Cluster(IDS, config=PaxosConfig(snapshot_every=SNAPSHOT_EVERY, window=WINDOW,
                                         max_batch=8), check=False)
    leader = cl.wait_leader()
    assert leader is not None
    total = 10000
    sent = 0
    max_log = 0
    max_keys = 0
    rounds = 0
    gc.collect()
    while sent < total and rounds < 10000:
        rounds += 1
        leader = cl.leader()
        if leader is None:
            cl.advance(50)
            continue
        for _ in range(8):
            if sent < total and cl.propose(leader, sent):
                sent += 1
        cl.deliver()
        cl.advance(10)
        for n in IDS:
            c = cl.core(n)
            max_log = max(max_log, len(c.log))
            max_keys = max(max_keys, len(cl.storage[n]))
        if _MPY:  # keep the small heap tidy (a full collection is slow on CPython)
            gc.collect()
    cl.advance(500)
    assert sent == total
    for n in IDS:
        c = cl.core(n)
        assert c.applied_index == total, (n, c.applied_index)
        assert c.stats["snapshots"] >= 3
    snaps = set(repr(cl.core(n).sm.snapshot()) for n in IDS)
    assert len(snaps) == 1
    bound = SNAPSHOT_EVERY + WINDOW + 2
    assert max_log <= bound, max_log
    assert max_keys <= bound + 2, max_keys
    # agreement: every replica folded the same commands in the same order
