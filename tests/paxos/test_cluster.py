"""PaxosCore cluster tests through the in-process pump: snapshots, loss, partitions,
restarts (laggards: test_snapshots.py; reconfiguration: test_reconfigure.py).
MicroPython-safe, in a board's 100 KB:
`micropython -X heapsize=100K tests/mpy_runner.py tests/paxos/test_cluster.py`.
"""

from roost.node.paxos import PaxosConfig
from tests.paxos.pump import Cluster

IDS = ["n1", "n2", "n3"]


def _elect(cl):
    leader = cl.wait_leader()
    assert leader is not None, "no leader elected"
    return leader


def test_a_log_of_big_values_is_snapshotted_by_its_bytes():
    """snapshot_log_bytes: big values snapshot the log before snapshot_every slots."""
    cl = Cluster(IDS, config=PaxosConfig(snapshot_every=1000, snapshot_log_bytes=2000,
                                         window=4))
    leader = _elect(cl)
    peak = 0
    for i in range(60):
        assert cl.propose(leader, ["v" * 100, i])
        cl.deliver()
        peak = max(peak, max(cl.core(n).log.live_bytes() for n in IDS))
    assert all(cl.core(n).stats["snapshots"] >= 2 for n in IDS)
    assert peak <= 2000 + 4 * 130, peak  # the bound, plus what a few slots in flight hold
    cl.advance(300)  # heartbeats carry the last commit index
    assert all(cl.core(n).applied_index == 60 for n in IDS)
    assert cl.violations == 0


def test_isolated_leader_cannot_commit_and_rejoins():
    cl = Cluster(IDS)
    old = _elect(cl)
    cl.isolate(old)
    ok = cl.propose(old, ["lost?"])
    assert ok
    cl.advance(1000)
    assert not cl.core(old).is_leader()  # check-quorum: it stepped down
    new = cl.leader()
    assert new is not None and new != old
    assert cl.propose(new, ["kept"])
    cl.advance(100)
    cl.heal()
    cl.advance(1500)
    leader = cl.leader()
    assert leader is not None
    assert cl.propose(leader, ["end"])
    cl.advance(300)
    counts = set(cl.core(n).applied_index for n in IDS)
    assert len(counts) == 1, counts
    assert cl.violations == 0


def test_lossy_links_still_converge():
    cl = Cluster(IDS, seed=5)
    cl.drop_every = 7
    leader = _elect(cl)
    n = 0
    for i in range(60):
        ld = cl.leader()
        if ld is not None and cl.propose(ld, ["z", i]):
            n += 1
        cl.advance(20)
    cl.drop_every = 0
    cl.advance(2000)
    counts = set(cl.core(x).applied_index for x in IDS)
    assert len(counts) == 1, counts
    assert counts.pop() >= n - 5 and leader is not None
    assert cl.violations == 0


def test_restart_all_at_once_recovers_log():
    cl = Cluster(IDS, config=PaxosConfig(snapshot_every=8, window=4))
    leader = _elect(cl)
    for i in range(20):
        cl.propose(leader, i)
        cl.deliver()
    cl.advance(100)
    for n in IDS:
        cl.crash(n)
    for n in IDS:
        cl.start(n)
    leader = _elect(cl)
    cl.advance(500)
    for n in IDS:
        assert cl.core(n).applied_index == 20, (n, cl.core(n).applied_index)
    assert cl.propose(leader, ["after"])
    cl.advance(300)
    for n in IDS:
        assert cl.core(n).applied_index == 21
    assert cl.violations == 0


def test_a_snapshot_that_does_not_fit_the_heap_is_skipped_and_tried_again():
    from tests.paxos import pump

    cl = Cluster(IDS, config=PaxosConfig(snapshot_every=20, window=4, catchup_slots=0))
    leader = _elect(cl)
    real = pump.CountSM.snapshot
    fail = [2]  # the next two copies of the store do not fit (a fragmented board heap)

    def tight(sm):
        if fail[0]:
            fail[0] -= 1
            raise MemoryError("memory allocation failed")
        return real(sm)

    pump.CountSM.snapshot = tight
    try:
        for i in range(60):
            assert cl.propose(leader, ["m", i])
            cl.deliver()
    finally:
        pump.CountSM.snapshot = real
    cl.advance(300)  # heartbeats carry the last commit index
    for n in IDS:
        assert cl.core(n).applied_index == 60, (n, cl.core(n).stats)
    failures = sum(cl.core(n).stats["snapshot_failures"] for n in IDS)
    assert failures == 2
    assert all(cl.core(n).stats["snapshots"] >= 1 for n in IDS)  # tried again, and taken
    assert cl.violations == 0
