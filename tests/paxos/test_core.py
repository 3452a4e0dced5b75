"""PaxosCore unit tests: explicit now_ms, an in-process pump. Runs on MicroPython too."""

from roost.common.channel import Channel
from roost.node.effects import APPLY, PERSIST, SEND
from roost.node.paxos import (
    ACCEPT,
    HEARTBEAT,
    NACK,
    PREPARE,
    PROMISE,
    PaxosConfig,
    PaxosCore,
)
from tests.paxos.pump import KEY, NEW, Cluster, CountSM

IDS = ["n1", "n2", "n3"]


def _elect(cl):
    leader = cl.wait_leader()
    assert leader is not None, "no leader elected"
    return leader


def test_config_defaults_and_validation():
    c = PaxosConfig()
    assert c.heartbeat_ms < c.election_timeout_min_ms
    w = PaxosConfig.wifi()
    assert w.election_timeout_min_ms > c.election_timeout_max_ms
    for bad in ({"heartbeat_ms": 500}, {"window": 0}, {"nope": 1}, {"window": "x"},
                {"_unsafe_skip_phase1": 1}, {"election_timeout_max_ms": 10}):
        try:
            PaxosConfig(**bad)
        except ValueError:
            continue
        raise AssertionError("accepted %r" % (bad,))
    assert PaxosConfig(_unsafe_skip_phase1=True)._unsafe_skip_phase1
    assert not PaxosConfig()._unsafe_send_before_persist


def test_bad_members_raise():
    ch = Channel("n1", KEY)
    for members in (["n2", "n1"], [], ["n1", "n1"], ["bad id"]):
        try:
            PaxosCore("n1", ch, members, CountSM())
        except ValueError:
            continue
        raise AssertionError("accepted members %r" % (members,))


def test_initial_election_one_leader_and_hints():
    cl = Cluster(IDS)
    leader = _elect(cl)
    cl.advance(500)
    assert cl.leaders() == [leader]
    for n in IDS:
        assert cl.core(n).leader_hint() == leader


def test_propose_commits_everywhere_and_follower_refuses():
    cl = Cluster(IDS)
    leader = _elect(cl)
    follower = [n for n in IDS if n != leader][0]
    ok = cl.propose(follower, ["x", 1])
    assert ok is False
    assert cl.core(follower).leader_hint() == leader
    seen = []
    cl.core(leader).on_apply = lambda i, c, r: seen.append((i, c, r))
    for i in range(5):
        assert cl.propose(leader, ["cmd", i]) is True
    cl.deliver()
    assert [s[1] for s in seen] == [["cmd", i] for i in range(5)]
    assert [s[0] for s in seen] == [1, 2, 3, 4, 5]
    cl.advance(200)  # followers learn the commit index from heartbeats
    for n in IDS:
        assert cl.core(n).applied_index == 5, (n, cl.core(n).applied_index)
        assert cl.core(n).sm.count == 5
    assert cl.violations == 0


def test_batching_and_pipelining():
    cl = Cluster(IDS, config=PaxosConfig(window=2, max_batch=6, pipeline=2))
    leader = _elect(cl)
    core = cl.core(leader)
    before = core.stats["slots_proposed"]
    for i in range(24):
        assert cl.propose(leader, i)
    # 2 slots in flight at once, the rest waits in the queue and rides in batches
    assert core.stats["slots_proposed"] - before == 2
    cl.deliver()
    cl.advance(200)
    used = core.stats["slots_proposed"] - before
    assert used <= 6, used
    for n in IDS:
        assert cl.core(n).applied_index == 24
    assert cl.violations == 0


def _accepts(effects):
    """The values of the ACCEPTs among effects (the body's 4th item; tag 32 bytes)."""
    import json

    out = []
    for e in effects:
        if e[0] == SEND:
            env = json.loads(e[2][32:])
            if env[1] == ACCEPT:
                out.append(env[6][3])
    return out


def test_held_requests_share_the_next_slot():
    """Between hold() and release() (a runtime handing over the datagrams that arrived
    together) a chosen slot starts no new batch: the requests among them join the queue
    and release() puts them all in one slot."""
    cl = Cluster(IDS, config=PaxosConfig(max_batch=16, pipeline=1))
    leader = _elect(cl)
    core = cl.core(leader)
    assert cl.propose(leader, "a")  # in flight: the next ones wait for it
    assert cl.propose(leader, "b")
    slots = core.stats["slots_proposed"]
    core.hold()
    cl.deliver()  # the accepts and their answers: "a" is chosen, nothing new is started
    assert core.applied_index == 1 and core.stats["slots_proposed"] == slots
    ok, effects = core.propose(cl.now, "c")
    assert ok and _accepts(effects) == []
    effects = cl.call(leader, lambda c, now: c.release(now))
    assert _accepts(effects) == [["b", ["b", "c"]], ["b", ["b", "c"]]]  # to each follower
    cl.advance(100)  # followers learn the commit index from the next heartbeat
    assert [cl.core(n).applied_index for n in IDS] == [3, 3, 3]
    # without a hold the chosen slot starts the next batch at once, with what is queued
    assert cl.propose(leader, "d")
    assert cl.propose(leader, "e")
    cl.deliver()
    assert core.applied_index == 5 and core.stats["slots_proposed"] == slots + 3
    assert cl.violations == 0


def test_accept_persists_before_reply():
    ch = Channel("n2", KEY)
    core = PaxosCore("n2", ch, IDS, CountSM(), storage=dict(NEW), now_ms=0)
    lch = Channel("n1", KEY)
    eff = core.receive(0, "n1", lch.seal(PREPARE, "n2", [3, "n1", 1]))
    kinds = [e[0] for e in eff]
    assert kinds.index(PERSIST) < kinds.index(SEND)
    assert [e for e in eff if e[0] == PERSIST][0][1:] == ("promised", [3, "n1"])
    eff = core.receive(1, "n1", lch.seal(ACCEPT, "n2", [3, "n1", 1, ["b", [["x"]]], 0]))
    kinds = [e[0] for e in eff]
    assert kinds == [PERSIST, SEND]
    assert eff[0][1] == "a/1" and eff[0][2] == [3, "n1", ["b", [["x"]]]]
    # the unsafe test flag reverses the order
    bad = PaxosCore("n2", Channel("n2", KEY), IDS, CountSM(), storage=dict(NEW),
                    config=PaxosConfig(_unsafe_send_before_persist=True))
    eff = bad.receive(0, "n1", lch.seal(PREPARE, "n2", [3, "n1", 1]))
    kinds = [e[0] for e in eff]
    assert kinds.index(SEND) < kinds.index(PERSIST)


def test_promise_reports_accepted_values_and_recovery():
    storage = dict(NEW)
    lch = Channel("n1", KEY)
    core = PaxosCore("n2", Channel("n2", KEY), IDS, CountSM(), storage=storage)
    for eff in (core.receive(0, "n1", lch.seal(PREPARE, "n2", [2, "n1", 1])),
                core.receive(1, "n1", lch.seal(ACCEPT, "n2", [2, "n1", 1, ["b", [7]], 0])),
                core.receive(2, "n1", lch.seal(ACCEPT, "n2", [2, "n1", 3, ["b", [9]], 0]))):
        for e in eff:
            if e[0] == PERSIST:
                storage[e[1]] = e[2]
    # restart from storage: the promise and the accepted values survive
    again = PaxosCore("n2", Channel("n2", KEY, incarnation=1), IDS, CountSM(), storage=storage)
    assert again.ballot == (2, "n1")
    assert sorted(again.log) == [1, 3]
    n3 = Channel("n3", KEY)
    eff = again.receive(5, "n3", n3.seal(PREPARE, "n2", [1, "n3", 1]))
    env = n3.open(eff[-1][2])
    assert env.kind == NACK and env.body[2:4] == [2, "n1"]
    eff = again.receive(6, "n3", n3.seal(PREPARE, "n2", [5, "n3", 1]))
    promises = [n3.open(e[2]) for e in eff if e[0] == SEND]
    assert promises and all(p.kind == PROMISE for p in promises)
    entries = [it for p in promises for it in p.body[6]]
    assert [it[0] for it in entries] == [1, 3]
    assert entries[1][1:4] == [2, "n1", ["b", [9]]]
    assert promises[-1].body[5] == 1


def test_garbage_and_forgeries_are_counted():
    core = PaxosCore("n1", Channel("n1", KEY), IDS, CountSM(), storage=dict(NEW))
    assert core.receive(0, "n2", b"\x00" * 80) == []
    assert core.channel.stats["rx_rejected_auth"] == 1
    stranger = Channel("zz", KEY)
    assert core.receive(0, "zz", stranger.seal(HEARTBEAT, "n1", [1, "zz", 0])) == []
    assert core.stats["rx_rejected_unknown_sender"] == 1
    n2 = Channel("n2", KEY)
    bodies = [
        (ACCEPT, [1, "n2", "x", ["b", [1]], 0]),
        (ACCEPT, [1, "n3", 1, ["b", [1]], 0]),  # ballot names another node
        (ACCEPT, [1, "n2", 1, ["q"], 0]),
        (PREPARE, {"a": 1}),
        (PROMISE, [1, "n2"]),
        (HEARTBEAT, [-1, "n2", 0]),
        (39, [[1]]),
        (40, [1, 2, 3, 0, 5]),
    ]
    for kind, body in bodies:
        assert core.receive(0, "n2", n2.seal(kind, "n1", body)) == []
    assert core.stats["rx_rejected_malformed"] == len(bodies)
    assert core.receive(0, "n2", n2.seal(63, "n1", [])) == []
    assert core.stats["rx_rejected_unknown_kind"] == 1


def test_stale_ballot_is_refused_and_counted():
    core = PaxosCore("n1", Channel("n1", KEY), IDS, CountSM(), storage=dict(NEW))
    n2 = Channel("n2", KEY)
    core.receive(0, "n2", n2.seal(PREPARE, "n1", [9, "n2", 1]))
    eff = core.receive(1, "n2", n2.seal(ACCEPT, "n1", [4, "n2", 1, ["n"], 0]))
    assert core.stats["rx_rejected_old_ballot"] == 1
    env = n2.open(eff[0][2])
    assert len(eff) == 1 and env.kind == NACK and env.body == [4, "n2", 9, "n2", 0]
    assert 1 not in core.log


def test_leader_crash_reelection_keeps_commits():
    cl = Cluster(IDS)
    leader = _elect(cl)
    for i in range(5):
        cl.propose(leader, i)
    cl.deliver()
    cl.crash(leader)
    new = None
    t = 0
    while new is None and t < 3000:
        cl.advance(50)
        t += 50
        new = cl.leader()
    assert new is not None and new != leader
    assert t <= 500, t
    for i in range(5):
        assert cl.propose(new, 100 + i)
    cl.advance(300)
    cl.start(leader)
    cl.advance(1000)
    for n in IDS:
        assert cl.core(n).applied_index == 10, (n, cl.core(n).applied_index)
    assert cl.violations == 0








def test_no_commit_without_majority():
    cl = Cluster(IDS)
    leader = _elect(cl)
    others = [n for n in IDS if n != leader]
    for n in others:
        cl.crash(n)
    cl.propose(leader, ["nope"])
    cl.advance(2000)
    assert cl.core(leader).applied_index == 0
    assert cl.leader() is None






def test_apply_effects_match_index():
    cl = Cluster(["solo"])
    assert _elect(cl) == "solo"
    ok, eff = cl.core("solo").propose(cl.now, ["one"])
    assert ok
    assert [e for e in eff if e[0] == APPLY] == [(APPLY, 1, ["one"])]
