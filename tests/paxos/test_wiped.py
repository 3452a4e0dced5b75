"""A replica whose flash was wiped (a board flashed again, a deleted data directory) boots
unsure and does not vote until it has rebuilt (paxos.py, the module docstring). In the
deterministic simulator: the loss it prevents, its rebuild, a new group's first election,
and a crash in the middle of a rebuild. CPython only (the simulator is)."""

from roost.common.channel import Channel
from roost.common.prng import Prng
from roost.emulator.sim import NetConfig
from roost.node.effects import EVENT, PERSIST, SEND
from roost.node.paxos import ACCEPT, ACK, NACK, PREPARE, PROMISE, PaxosConfig, PaxosCore
from tests.paxos.pump import KEY, CountSM
from tests.paxos.simharness import Group, replace_one_under_load

IDS3 = ["n1", "n2", "n3"]
IDS5 = ["n1", "n2", "n3", "n4", "n5"]


def _replay(test, seed):
    return "replay: python -m pytest -q tests/paxos/test_wiped.py -k %s  # seed=%d" % (test, seed)


def _chosen_without_x(seed, config=None):
    """Five commands chosen by the leader and follower w while follower x is cut off (a
    partition); then w's flash is wiped. -> the group, leader, w, x, commands chosen."""
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
    return g, leader, w, x, chosen


def _follower_wiped(seed, ops):
    """A group of three under a client's load of ops commands for 500 ms; then a follower's
    flash is wiped (it is down until restarted). -> the group, the wiped follower."""
    g = Group(seed, IDS3)
    g.wait_leader(1000)
    g.client(5, ops)
    g.sim.run_for(500)
    w = [n for n in IDS3 if n != g.leader()][0]
    g.sim.wipe(w)
    return g, w


def _chosen_then_wiped(seed, config=None):
    """As _chosen_without_x, and the leader loses its plug, and the cut-off follower comes
    back: it and the wiped one are two of three."""
    g, leader, w, x, chosen = _chosen_without_x(seed, config)
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
        g, w = _follower_wiped(seed, 4000)
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


def test_a_wiped_replica_out_of_reach_of_a_majority_does_not_disrupt_the_group():
    """A wiped replica that reaches only two of the other four cannot rebuild. Each election
    of its own would outbid the leader at those two: it asks who hears it and campaigns only
    once a majority of the others do (before, it campaigned 90-97 times in 30 s and the group
    applied 40% of its commands), and rebuilds once the links are back."""
    for seed in range(3):
        g = Group(seed, IDS5)
        g.wait_leader(1000)
        g.client(5, 40000)
        g.sim.run_for(500)
        w = "n5"
        g.sim.wipe(w)
        for m in ("n1", "n2"):
            g.sim.set_link(w, m, loss=1.0)
            g.sim.set_link(m, w, loss=1.0)
        g.sim.restart(w)
        leaders = g.host("n3").stats["leader_terms"] + g.host("n4").stats["leader_terms"]
        before = len(g.by_index)
        g.sim.run_for(30000)
        assert g.host(w).unsure and g.host(w).stats["elections"] == 0, _replay("disrupt", seed)
        assert g.host(w).heard() == [2, 3], _replay("disrupt", seed)  # roost status says so
        # a command every 5 ms at the leader: all of them applied, none lost to an election
        assert len(g.by_index) - before >= 5900, _replay("disrupt", seed)
        assert (g.host("n3").stats["leader_terms"] + g.host("n4").stats["leader_terms"]
                == leaders), _replay("disrupt", seed)
        for m in ("n1", "n2"):
            g.sim.set_link(w, m, loss=0.0)
            g.sim.set_link(m, w, loss=0.0)
        g.sim.run_for(1000)
        assert not g.host(w).unsure, _replay("disrupt", seed)
        g.check_safety("disrupt")


def test_a_new_group_finds_out_it_is_new_and_elects_a_leader_at_once():
    for ids in (IDS3, IDS5):
        for seed in range(10):
            g = Group(seed, ids)
            events = []
            g.sim.observe(lambda now, node, eff, events=events: events.append(eff[1])
                          if eff[0] == EVENT else None)
            leader = g.wait_leader(200)
            assert leader is not None, _replay("new_group", seed)
            g.sim.run_for(1000)
            assert g.leaders() == [leader], _replay("new_group", seed)
            assert not any(g.host(n).unsure for n in ids), _replay("new_group", seed)
            # every replica found out the group is new: none had to rebuild by an election
            assert events.count("paxos.new_group") == len(ids), _replay("new_group", seed)
            assert "paxos.rebuilt" not in events, _replay("new_group", seed)


def test_members_added_campaign_only_once_their_configuration_is_in_force():
    """A configuration chosen at slot k governs from k + window. A member it adds that won
    an election before then stepped down at once: growing a group of three to five under
    load, the two new members took 4-5 elections each and the group went without a leader
    for up to a second (seed 0). And with no command at all, the configuration never came
    into force (the leader now fills the slots up to there with no-ops)."""
    for seed in range(4):  # as in test_sim's reconfiguration test: replace one, then grow
        g, replaced = replace_one_under_load(seed, _replay("in_force", seed))
        g.add("n5")
        g.add("n6")
        for _ in range(40):  # refused while the last change is not yet in force
            if g.reconfigure(sorted(replaced + ["n5", "n6"])):
                break
            g.sim.run_for(50)
        else:
            raise AssertionError(_replay("in_force", seed))
        g.sim.run_for(1000)
        assert not g.host("n5").unsure and not g.host("n6").unsure, _replay("in_force", seed)
        assert g.host("n5").stats["elections"] <= 2, _replay("in_force", seed)
        assert g.host("n6").stats["elections"] <= 2, _replay("in_force", seed)
        g.check_safety("in_force")
    g = Group(0, IDS3)
    g.wait_leader(1000)
    g.add("n4")
    assert g.reconfigure(IDS3 + ["n4"])
    g.sim.run_for(2000)  # no commands
    h = g.host(g.leader())
    assert "n4" in h.config_of(h.commit_index + 1) and not g.host("n4").unsure


def test_a_rebuilt_leader_can_shrink_its_group_to_where_it_needs_its_own_promise():
    """A leader that won as unsure does not count its own promise in that term; shrunk to
    [itself] or [itself, one other], phase 1 there could never finish: it led on and
    proposed nothing, forever. Rebuilt, it now runs a fresh election."""
    for seed in range(3):
        for keep in (0, 1):
            g, w = _follower_wiped(seed, 400)
            g.sim.restart(w)
            for _ in range(100):
                g.sim.run_for(50)
                if not g.host(w).unsure and g.leader() == w:
                    break
            assert g.leader() == w and not g.host(w).unsure, _replay("shrink", seed)
            target = sorted([w] + [n for n in IDS3 if n != w][:keep])
            assert g.reconfigure(target), _replay("shrink", seed)
            g.sim.run_for(1000)
            before = len(g.by_index)
            for i in range(20):
                g.propose(["after", i], at=w)
            g.sim.run_for(2000)
            assert len(g.by_index) - before == 20, _replay("shrink", seed)
            g.check_safety("shrink")


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


def test_what_a_rebuilt_replica_recovered_survives_its_next_restart():
    """Rebuilt by phase 1, it holds values it never voted for in this life (the leader
    reported them chosen): they must be on its flash before it votes, or a plain restart
    forgets them again, and with the replica that never had them it undoes them."""
    for seed in range(5):
        g, leader, w, x, chosen = _chosen_without_x(seed)  # by the leader and w only
        g.sim.restart(w)
        g.sim.heal()
        g.sim.set_link(leader, x, loss=1.0)  # x stays behind: w rebuilds from both
        for _ in range(3000):
            g.sim.run_for(1)
            if not g.host(w).unsure:
                break
        assert not g.host(w).unsure, _replay("survives", seed)
        for m in IDS3:  # a power cut the moment it votes again
            g.sim.crash(m)
        g.sim.set_net(loss=0.0)
        g.sim.restart(w)
        g.sim.restart(x)  # without the old leader, x (behind) and w are two of three
        g.sim.run_for(1500)
        assert g.propose(["after"]), _replay("survives", seed)
        g.sim.run_for(500)
        g.sim.restart(leader)
        g.sim.run_for(1000)
        g.check_safety("survives")
        assert g.check_converged("survives") >= chosen + 1, _replay("survives", seed)


def _feed(core, t, ch, kind, body):
    """Seal body from ch's node to the core; what the core sends back, opened by ch."""
    raw = ch.seal(kind, core.node_id, body)
    return [ch.open(e[2]) for e in core.receive(t, ch.node_id, raw) if e[0] == SEND]


def test_an_unsure_candidates_ballot_must_be_above_every_promise():
    """A wiped replica counts its rounds from 0 again: the ballot it picks may be one it
    used before, which a peer promised then. That peer promises it only if it is higher."""
    core = PaxosCore("n2", Channel("n2", KEY), IDS3, CountSM(), storage={"unsure": 0})
    n1 = Channel("n1", KEY)
    assert [m.kind for m in _feed(core, 1, n1, PREPARE, [2, "n1", 1])] == [PROMISE]
    n1 = Channel("n1", KEY, incarnation=2)  # n1 wiped: it picks (2, n1) again, unsure now
    sent = _feed(core, 2, n1, PREPARE, [2, "n1", 1, 77])
    assert [m.kind for m in sent] == [NACK] and sent[0].body[2:4] == [2, "n1"]
    assert [m.kind for m in _feed(core, 3, n1, PREPARE, [3, "n1", 1, 78])] == [PROMISE]
    # its PREPARE sent again (a retry) is promised again; the same ballot from another
    # election (n1 wiped once more) is not
    assert [m.kind for m in _feed(core, 4, n1, PREPARE, [3, "n1", 1, 78])] == [PROMISE]
    n1 = Channel("n1", KEY, incarnation=3)
    assert [m.kind for m in _feed(core, 5, n1, PREPARE, [3, "n1", 1, 79])] == [NACK]


def test_a_rebuilt_replica_reads_back_the_values_it_wrote_as_chosen():
    """Values it was told are chosen carry no ballot: written unmarked, a stale value at
    any ballot would beat them in a later phase 1."""
    storage = {"promised": [4, "n1"], "a/1": [0, "", ["b", [["x"]]], 1],
               "a/2": [4, "n1", ["b", [["y"]]]]}
    core = PaxosCore("n2", Channel("n2", KEY), IDS3, CountSM(), storage=storage)
    assert not core.unsure and core.log.state(1) == 1 and core.log.state(2) == 0


def test_only_answers_to_this_ask_say_a_group_is_new():
    core = PaxosCore("n1", Channel("n1", KEY), IDS3, CountSM(), storage={})
    n2 = Channel("n2", KEY)
    eff = core.tick(1000)  # an unsure replica asks at once
    asks = [n2.open(e[2]) for e in eff if e[0] == SEND and e[1] == "n2"]
    r, n, _, nonce, flag = asks[0].body
    assert nonce > 0 and flag == 1 and core.unsure
    _feed(core, 1001, n2, NACK, [r, n, 0, "", 2, nonce + 1])  # another ask's answer
    assert core.unsure
    _feed(core, 1002, n2, NACK, [r, n, 0, "", 2, nonce])  # this one's: n1 and n2 of three
    assert not core.unsure


def test_a_new_group_on_slow_links_still_finds_out_it_is_new():
    """One-way latency at or above retry_ms: a replica that hears another's ask sends its
    own ask again with the same nonce. With a new nonce each time (the first version), each
    one voided the answers still on their way and no group of 3 or 5 ever had a leader."""
    for ids, latency in ((IDS3, 60), (IDS5, 70)):
        for seed in range(5):
            g = Group(seed, ids, net=NetConfig(latency_ms=latency, jitter_ms=latency // 10))
            assert g.wait_leader(3000), _replay("slow_links", seed)
            assert not any(g.host(n).unsure for n in g.live()), _replay("slow_links", seed)
            g.check_safety("slow_links")


def test_two_wiped_of_five_rebuild_when_their_link_is_the_quicker():
    """Two wiped replicas (within the two a group of five survives) whose link to each other
    is quicker than their links to the voters: each one's ask reached the other first."""
    for seed in range(3):
        g = Group(seed, IDS5)
        assert g.wait_leader(2000)
        g.client(20, 20000)
        g.sim.run_for(500)
        g.sim.set_net(latency_ms=40, jitter_ms=2)
        for w in ("n4", "n5"):
            g.sim.wipe(w)
        g.sim.set_link("n4", "n5", latency_ms=30, jitter_ms=2)
        g.sim.set_link("n5", "n4", latency_ms=30, jitter_ms=2)
        for w in ("n4", "n5"):
            g.sim.restart(w)
        g.sim.run_for(10000)
        assert not g.host("n4").unsure and not g.host("n5").unsure, _replay("quicker", seed)
        g.check_safety("quicker")


def test_answers_without_their_nonce_or_with_a_bad_flag_are_malformed():
    core = PaxosCore("n1", Channel("n1", KEY), IDS3, CountSM(), storage={})
    n2 = Channel("n2", KEY)
    core.tick(1000)  # it asks: it is an unsure follower
    for body in ([1, "n1", 0, "", 3], [1, "n1", 0, "", 2], [1, "n1", 0, "", 3, "x"],
                 [1, "n1", 0, "", 0, 5]):
        assert _feed(core, 1001, n2, NACK, body) == []
    assert core.stats["rx_rejected_malformed"] == 4 and core.unsure
    voter = PaxosCore("n2", Channel("n2", KEY), IDS3, CountSM(), storage={"unsure": 0})
    n1 = Channel("n1", KEY)
    for flag in (True, 1.0, 3):
        assert _feed(voter, 1, n1, PREPARE, [5, "n1", 1, 77, flag]) == []
    assert voter.stats["rx_rejected_malformed"] == 3


def test_an_ask_that_fell_short_is_told_once_per_change():
    core = PaxosCore("n1", Channel("n1", KEY), IDS5, CountSM(), storage={})
    peers = {m: Channel(m, KEY) for m in IDS5[1:]}

    def ask(t, answer):
        eff = core.tick(t)
        body = [peers["n2"].open(e[2]).body for e in eff if e[0] == SEND and e[1] == "n2"][0]
        for m in answer:
            _feed(core, t + 1, peers[m], NACK, [body[0], body[1], 0, "", 3, body[3]])
        return [e[2] for e in eff if e[0] == EVENT and e[1] == "paxos.asked"]

    assert ask(1000, ["n2"]) == [] and core.heard() is None  # the first ask: nothing to tell
    t = core.next_deadline_ms()
    assert ask(t, ["n2"]) == [["n1", 1, 3]] and core.heard() == [1, 3]
    t = core.next_deadline_ms()
    assert ask(t, ["n2", "n3"]) == []  # one answer again: nothing new to tell
    t = core.next_deadline_ms()
    assert ask(t, []) == [["n1", 2, 3]] and core.heard() == [2, 3]


def test_only_members_answers_count_and_no_ask_outside_the_configuration_in_force():
    """Answers from replicas a shrink removed are not counted as voters that hear it; and a
    member added by a configuration not yet in force neither asks nor campaigns, not even
    when another's ask would have it ask again, or voters answer an ask of its."""
    snap = [10, 0, [[1, IDS5], [40, IDS3]], [0, 0, None]]  # 5 -> 3 chosen, in force at 40
    core = PaxosCore("n3", Channel("n3", KEY), IDS5, CountSM(), storage={"unsure": 1, "snap": snap})
    eff = core.tick(10000)
    nonce = [Channel(e[1], KEY).open(e[2]).body[3] for e in eff if e[0] == SEND][0]
    for src in ("n4", "n5"):  # removed members answer as voters
        _feed(core, 10001, Channel(src, KEY), NACK, [1, "n3", 1, src, 3, nonce])
    eff = core.tick(core.next_deadline_ms())
    assert [e[2] for e in eff if e[0] == EVENT] == [["n3", 0, 2]] and core.heard() == [0, 2]
    assert core.stats["elections"] == 0
    snap = [10, 0, [[1, IDS3], [40, IDS5]], [0, 0, None]]  # 3 -> 5 chosen, in force at 40
    n4 = PaxosCore("n4", Channel("n4", KEY), IDS3, CountSM(), storage={"unsure": 1, "snap": snap})
    assert [e for e in n4.tick(10000) if e[0] == SEND] == []
    assert _feed(n4, 10001, Channel("n5", KEY), PREPARE, [1, "n5", 40, 555, 1])[0].kind == NACK
    assert n4._nonce == 0  # it answered (unsure: NACK 2) and did not ask
    for t, v in ((10002, "n1"), (10003, "n2"), (10004, "n3")):
        _feed(n4, t, Channel(v, KEY), NACK, [1, "n4", 7, "n1", 3, 0])
    assert n4.stats["elections"] == 0


def test_a_voter_answers_an_ask_and_promises_nothing():
    core = PaxosCore("n2", Channel("n2", KEY), IDS3, CountSM(), storage={"unsure": 0})
    n1 = Channel("n1", KEY)
    raw = n1.seal(PREPARE, "n2", [5, "n1", 1, 77, 1])
    eff = core.receive(1, "n1", raw)
    assert [e[0] for e in eff] == [SEND]  # nothing persisted
    assert n1.open(eff[0][2]).body == [5, "n1", 0, "", 3, 77]
    assert core.ballot == (0, "") and core.leader is None


def test_an_unsure_replica_campaigns_once_a_majority_of_the_others_hear_it():
    core = PaxosCore("n1", Channel("n1", KEY), IDS5, CountSM(), storage={})
    peers = {m: Channel(m, KEY) for m in IDS5[1:]}
    eff = core.tick(1000)
    asks = {e[1]: peers[e[1]].open(e[2]).body for e in eff if e[0] == SEND}
    assert sorted(asks) == IDS5[1:] and all(len(b) == 5 for b in asks.values())
    r, n, _, nonce, _ = asks["n2"]
    for m in ("n2", "n3"):  # two of the four others: no election yet
        assert _feed(core, 1001, peers[m], NACK, [r, n, 0, "", 3, nonce]) == []
    assert core.stats["elections"] == 0 and core.ballot == (0, "")
    _feed(core, 1002, peers["n4"], NACK, [r, n, 0, "", 3, nonce + 1])  # not this ask's
    assert core.stats["elections"] == 0
    raw = peers["n4"].seal(NACK, "n1", [r, n, 0, "", 3, nonce])  # three: it campaigns
    eff = core.receive(1003, "n4", raw)
    assert core.stats["elections"] == 1 and core.unsure
    sent = [peers[e[1]].open(e[2]) for e in eff if e[0] == SEND]
    assert [m.kind for m in sent] == [PREPARE] * 4 and all(len(m.body) == 4 for m in sent)


def test_wipes_one_at_a_time_never_undo_a_chosen_value():
    """Seeded faults at the Paxos level: a replica's flash wiped (never while another is
    down or still rebuilding), kills (a minority at most), restarts, one replica cut off,
    heals; a client at the leader all along, and the agreement check on every APPLY.
    Before rebuilt replicas wrote what they recovered, 5 of seeds 0-299 broke agreement."""
    for seed in range(150):  # odd seeds on a network that loses and duplicates datagrams
        net = NetConfig(latency_ms=2, jitter_ms=1, loss=0.05 * (seed % 2), dup=0.05 * (seed % 2))
        g = Group(seed, IDS3, net=net)
        rng = Prng(seed).fork("wipes")
        g.client(5, 5000)

        def strike(sim, g=g, rng=rng):
            down = [m for m in IDS3 if not sim.alive(m)]
            up = [m for m in IDS3 if sim.alive(m)]
            act = rng.randbelow(10)
            if act < 2 and not down and not any(g.host(m).unsure for m in up):
                sim.wipe(rng.choice(up))
            elif act < 4 and not down:
                sim.crash(rng.choice(up))
            elif act < 7 and down:
                sim.restart(rng.choice(down))
            elif act < 9:
                sim.isolate(rng.choice(IDS3))
            else:
                sim.heal()
            if sim.now_ms < 4500:
                sim.at(sim.now_ms + 1 + rng.randbelow(300), strike)

        g.sim.at(300, strike)
        g.sim.run_until(5000)
        g.sim.heal()
        for m in IDS3:
            g.sim.restart(m)
        g.sim.run_for(2000)
        g.check_safety("wipes")
