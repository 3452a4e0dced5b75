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


def test_a_leader_outside_prefer_hands_the_lead_to_the_preferred_member_once_caught_up():
    """prefer: a replica that won while the preferred one was away leads only until that
    one is back and caught up; no command is lost on the way and the lead then stays."""
    cl = Cluster(IDS, config=PaxosConfig(prefer=["n1"]))
    assert cl.propose(_elect(cl), ["first"])
    cl.advance(100)
    cl.crash("n1")  # switched off (an isolated one would come back campaigning anyway)
    cl.advance(1000)
    other = _elect(cl)
    assert other != "n1"
    for i in range(20):
        assert cl.propose(other, ["before", i])
        cl.advance(10)
    assert cl.core(other).is_leader() and cl.core(other).stats["hand_overs"] == 0
    cl.start("n1")
    cl.advance(1500)  # n1 catches up, is asked, campaigns and wins
    assert cl.leader() == "n1"
    assert cl.core(other).stats["hand_overs"] == 1
    assert cl.propose("n1", ["after"])
    elections = cl.core("n1").stats["elections"]
    cl.advance(3000)  # the preferred leader keeps the lead
    assert cl.leader() == "n1" and cl.core("n1").stats["elections"] == elections
    assert all(cl.core(n).applied_index == 22 for n in IDS)
    assert cl.violations == 0


def test_a_wiped_replica_outside_prefer_rebuilds_by_leading_then_hands_the_lead_back():
    """The classroom's board swap: the board rebuilds by winning an election, then a Pi
    (in prefer) leads again."""
    cl = Cluster(IDS, config=PaxosConfig(prefer=["n1", "n2"]))
    leader = _elect(cl)
    for i in range(10):
        assert cl.propose(leader, [i])
        cl.advance(10)
    cl.wipe("n3")  # a spare board: an empty flash
    cl.start("n3")
    seen = set()
    for _ in range(60):
        cl.advance(50)
        seen.add(cl.leader())
    assert "n3" in seen, seen  # it rebuilt by winning
    assert not cl.core("n3").unsure
    assert cl.leader() in ("n1", "n2") and cl.core("n3").stats["hand_overs"] == 1
    assert cl.propose(cl.leader(), ["after"])
    cl.advance(300)
    assert all(cl.core(n).applied_index == 11 for n in IDS)
    assert cl.violations == 0


def test_a_preferred_leader_or_no_preference_never_hands_over():
    for prefer in (["n1", "n2", "n3"], []):
        cl = Cluster(IDS, config=PaxosConfig(prefer=prefer))
        leader = _elect(cl)
        for i in range(10):
            assert cl.propose(leader, [i])
            cl.advance(200)
        assert cl.leader() == leader
        assert sum(cl.core(n).stats["elections"] for n in IDS) == 1
        assert sum(cl.core(n).stats["hand_overs"] for n in IDS) == 0


def test_prefer_must_be_a_list_of_ids():
    for bad in ("n1", ["n 1"], [3]):
        try:
            PaxosConfig(prefer=bad)
        except ValueError as e:
            assert "prefer" in str(e)
        else:
            raise AssertionError("accepted prefer=%r" % (bad,))
