"""Pre-vote: a voter whose election timer fires asks whether the others hear no leader
either, and campaigns only once a majority, itself counted, answered. CPython only (the
group runs in the simulator); the core's pre-vote also runs on MicroPython in every
cluster test there (it is on by default)."""

from roost.common.channel import Channel
from roost.node.effects import PERSIST, SEND
from roost.node.paxos import HEARTBEAT, NACK, PREPARE, PaxosConfig, PaxosCore
from tests.paxos.pump import CountSM
from tests.paxos.simharness import Group

KEY = "k" * 32
IDS3 = ["n1", "n2", "n3"]
NEW = {"unsure": 0}  # a new group's replicas: they vote at once


def _core(node, **cfg):
    return PaxosCore(node, Channel(node, KEY), IDS3, CountSM(), PaxosConfig(**cfg),
                     storage=dict(NEW))


def _sends(eff, kind=None):
    spy = {n: Channel(n, KEY) for n in IDS3}
    out = []
    for e in eff:
        if e[0] == SEND:
            env = spy[e[1]].open(e[2])
            if kind is None or env.kind == kind:
                out.append((e[1], env))
    return out


def test_a_timed_out_voter_asks_before_it_campaigns():
    n1 = _core("n1")
    eff = n1.tick(1000)  # no leader heard: its timer fired
    asks = _sends(eff, PREPARE)
    assert sorted(d for d, _ in asks) == ["n2", "n3"]
    assert all(env.body[4] == 2 and len(env.body) == 5 for _, env in asks)
    # an ask promises nothing: no ballot written, no election counted, still a follower
    assert not [e for e in eff if e[0] == PERSIST] and n1.stats["elections"] == 0
    nonce = asks[0][1].body[3]
    n2 = Channel("n2", KEY)
    answer = n2.seal(NACK, "n1", [asks[0][1].body[0], "n1", 0, "", 3, nonce])
    eff = n1.receive(1002, "n2", answer)  # n2 hears no leader either: with n1, a majority
    assert n1.stats["elections"] == 1
    assert [env.body[:2] for _, env in _sends(eff, PREPARE)][0][1] == "n1"
    assert [e for e in eff if e[0] == PERSIST and e[1] == "promised"]


def test_a_replica_that_hears_its_leader_does_not_answer_a_pre_vote():
    n2 = _core("n2")
    n3 = Channel("n3", KEY)
    n2.receive(1000, "n3", n3.seal(HEARTBEAT, "n2", [4, "n3", 0]))  # n3 leads
    promised = n2.ballot
    n1 = Channel("n1", KEY)
    ask = [9, "n1", 1, 1234, 2]
    assert _sends(n2.receive(1100, "n1", n1.seal(PREPARE, "n2", ask))) == []
    assert n2.ballot == promised and n2.leader_hint() == "n3"
    # once the leader has been silent for election_timeout_min_ms it answers, changing
    # nothing (the answer echoes the ask's nonce)
    got = _sends(n2.receive(1000 + 150, "n1", n1.seal(PREPARE, "n2", ask)), NACK)
    assert len(got) == 1 and got[0][1].body[4:] == [3, 1234] and n2.ballot == promised
    # an ask flagged 1 (an unsure replica, or one asked to lead) is answered regardless
    n2.receive(1200, "n3", n3.seal(HEARTBEAT, "n2", [4, "n3", 0]))
    ask1 = [9, "n1", 1, 99, 1]
    assert len(_sends(n2.receive(1201, "n1", n1.seal(PREPARE, "n2", ask1)), NACK)) == 1


def _terms_with_a_lossy_follower(seed, pre_vote):
    """3 replicas, no load: from 1 s every link to and from the follower n3... loses half
    its datagrams for 20 s. -> leader terms begun in that time."""
    g = Group(seed, IDS3, PaxosConfig.lan(pre_vote=pre_vote))
    leader = g.wait_leader(2000)
    assert leader is not None
    lossy = [n for n in IDS3 if n != leader][0]
    for o in IDS3:
        if o != lossy:
            g.sim.set_link(lossy, o, loss=0.5)
            g.sim.set_link(o, lossy, loss=0.5)
    before = sum(g.host(n).stats["leader_terms"] for n in IDS3)
    g.sim.run_for(20000)
    return sum(g.host(n).stats["leader_terms"] for n in IDS3) - before


def test_a_follower_on_a_lossy_link_does_not_depose_a_leader_the_others_hear():
    # without pre-vote, its elections outbid the leader every few timeouts (the same runs
    # prove the check can fail); with it, the leader keeps the lead
    without = [_terms_with_a_lossy_follower(seed, False) for seed in range(3)]
    assert min(without) >= 3, without
    with_pv = [_terms_with_a_lossy_follower(seed, True) for seed in range(3)]
    assert with_pv == [0, 0, 0], with_pv


def test_a_promise_ends_the_replicas_own_pre_vote():
    """n1 pre-votes, then promises n3's election; n2's answer to the pre-vote, late, must
    not make n1 outbid the candidate it just promised (a duel for nothing)."""
    n1 = _core("n1")
    asks = _sends(n1.tick(1000), PREPARE)
    nonce = asks[0][1].body[3]
    n3 = Channel("n3", KEY)
    n1.receive(1001, "n3", n3.seal(PREPARE, "n1", [5, "n3", 1]))
    assert n1.ballot == (5, "n3")
    n2 = Channel("n2", KEY)
    eff = n1.receive(1002, "n2", n2.seal(NACK, "n1", [asks[0][1].body[0], "n1", 0, "", 3, nonce]))
    assert n1.stats["elections"] == 0 and n1.ballot == (5, "n3") and not _sends(eff, PREPARE)


def test_without_check_quorum_a_voter_campaigns_at_once():
    """Pre-vote relies on check_quorum: a leader that hears no one but still reaches one
    follower would keep that follower declining every pre-vote, and nothing would commit."""
    n1 = _core("n1", check_quorum=False)
    eff = n1.tick(1000)
    assert n1.stats["elections"] == 1
    assert all(len(env.body) == 3 for _, env in _sends(eff, PREPARE))
