"""A replica whose flash was wiped (a board flashed again, a deleted data directory) boots
unsure and does not vote until it has rebuilt (paxos.py, the module docstring). In the
deterministic simulator: the loss it prevents, its rebuild, a new group's first election,
and a crash in the middle of a rebuild. CPython only (the simulator is)."""

from roost.common.channel import Channel
from roost.node.effects import PERSIST, SEND
from roost.node.paxos import ACCEPT, ACK, NACK, PREPARE, PaxosConfig, PaxosCore
from tests.paxos.pump import KEY, CountSM
from tests.paxos.simharness import Group

IDS3 = ["n1", "n2", "n3"]
IDS5 = ["n1", "n2", "n3", "n4", "n5"]


def _replay(test, seed):
    return "replay: python -m pytest -q tests/paxos/test_wiped.py -k %s  # seed=%d" % (test, seed)


def _chosen_then_wiped(seed, config=None):
    """Commands chosen by the leader and one follower while the other follower is cut off;
    then the follower that voted for them loses its flash and the leader its plug, and the
    cut-off follower comes back: it and the wiped one are two of three."""
    g = Group(seed, IDS3, config=config)
    leader = g.wait_leader(1000)
    w, x = [n for n in IDS3 if n != leader]
    g.sim.run_for(100)
    g.sim.partition([[leader, w], [x]])
    for i in range(5):
        assert g.propose(["chosen", i], at=leader)
    g.sim.run_for(100)
    chosen = len(g.by_index)
    g.sim.wipe(w)
    g.sim.crash(leader)
    g.sim.heal()
    g.sim.restart(w)
    return g, leader, w, x, chosen


def test_a_wiped_voter_cannot_undo_what_it_chose():
    for seed in range(5):
        g, leader, w, x, chosen = _chosen_then_wiped(seed)
        assert chosen >= 5, _replay("undo", seed)
        g.sim.run_for(3000)
        # the wiped replica does not vote: x alone is no majority, nothing new is chosen
        assert g.leaders() == [], _replay("undo", seed)
        assert g.host(w).unsure, _replay("undo", seed)
        assert not g.propose(["other"]), _replay("undo", seed)
        g.sim.restart(leader)
        g.sim.run_for(3000)
        assert len(g.leaders()) == 1, _replay("undo", seed)
        assert not any(g.host(n).unsure for n in IDS3), _replay("undo", seed)
        g.propose(["after"])
        g.sim.run_for(500)
        g.check_safety("undo")
        assert g.check_converged("undo") >= chosen + 1, _replay("undo", seed)


def test_teeth_a_wiped_replica_voting_at_once_undoes_a_chosen_value():
    caught = 0
    for seed in range(5):
        g, leader, w, x, chosen = _chosen_then_wiped(seed, PaxosConfig.lan(_unsafe_amnesia=True))
        g.sim.run_for(3000)
        g.propose(["other"])  # x and the amnesiac w elect one of them and choose anew
        g.sim.run_for(500)
        g.sim.restart(leader)
        g.sim.run_for(3000)
        if g.violations:
            caught += 1
    assert caught >= 1, "an amnesiac replica voting again was never caught"


def test_a_wiped_follower_rebuilds_and_votes_again():
    for seed in range(5):
        g = Group(seed, IDS3)
        g.wait_leader(1000)
        g.client(5, 4000)
        g.sim.run_for(500)
        w = [n for n in IDS3 if n != g.leader()][0]
        g.sim.wipe(w)
        g.sim.run_for(50)
        g.sim.restart(w)
        g.sim.run_for(1000)
        assert not g.host(w).unsure, _replay("rebuilds", seed)
        # it votes: with another replica down, the group still goes on
        other = [n for n in IDS3 if n != w and n != g.leader()] or [g.leader()]
        g.sim.crash(other[0])
        before = len(g.by_index)
        g.sim.run_for(1500)
        assert len(g.by_index) > before + 50, _replay("rebuilds", seed)
        g.sim.restart(other[0])
        g.sim.run_until(5000)
        g.check_safety("rebuilds")
        g.check_converged("rebuilds")


def test_a_new_group_elects_its_first_leader_in_one_election():
    for ids in (IDS3, IDS5):
        for seed in range(10):
            g = Group(seed, ids)
            leader = g.wait_leader(300)
            assert leader is not None, _replay("new_group", seed)
            g.sim.run_for(1000)
            assert g.leaders() == [leader], _replay("new_group", seed)
            terms = sum(g.host(n).stats["leader_terms"] for n in ids)
            assert terms == 1, _replay("new_group", seed)
            assert not any(g.host(n).unsure for n in ids), _replay("new_group", seed)


def test_a_new_group_with_a_replica_missing_still_starts():
    for seed in range(5):
        g = Group(seed, IDS3)
        g.sim.crash("n3")  # never booted
        assert g.wait_leader(1000) is not None, _replay("missing", seed)
        g.client(10, 1500)
        g.sim.run_until(1500)
        assert len(g.by_index) > 50, _replay("missing", seed)
        g.sim.restart("n3")  # late: it rebuilds like a wiped one (one more election)
        g.sim.run_for(1500)
        assert not g.host("n3").unsure, _replay("missing", seed)
        g.check_safety("missing")
        g.check_converged("missing")


def test_unsure_until_rebuilt_even_across_a_crash():
    storage = {}
    core = PaxosCore("n2", Channel("n2", KEY), IDS3, CountSM(), storage=storage)
    assert core.unsure
    lch = Channel("n1", KEY)

    def feed(t, kind, body):
        eff = core.receive(t, "n1", lch.seal(kind, "n2", body))
        for e in eff:
            if e[0] == PERSIST:
                if e[2] is None:
                    storage.pop(e[1], None)
                else:
                    storage[e[1]] = e[2]
        return [lch.open(e[2]) for e in eff if e[0] == SEND]

    # a PREPARE gets no promise, an ACCEPT is kept but answered with an ACK, not a vote
    sent = feed(1, PREPARE, [3, "n1", 1])
    assert [m.kind for m in sent] == [NACK] and sent[0].body[4] == 2
    sent = feed(2, ACCEPT, [3, "n1", 1, ["b", [["x"]]], 0])
    assert [m.kind for m in sent] == [ACK]
    assert storage.get("unsure") == 1 and "a/1" in storage
    # a crash now: it boots unsure again, although its flash holds a value
    again = PaxosCore("n2", Channel("n2", KEY, incarnation=1), IDS3, CountSM(), storage=storage)
    assert again.unsure
    # a new group's replica (storage written by who made it) votes at once
    assert not PaxosCore("n2", Channel("n2", KEY), IDS3, CountSM(), storage={"unsure": 0}).unsure
