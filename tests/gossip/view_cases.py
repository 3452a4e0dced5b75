"""Merge rules, bad input, member caps, the 32-member view and sync (collected through
test_view.py; runs on MicroPython too)."""

from roost.node import gossip as g
from tests.gossip.core_cases import _add, _answer_pings, _core, _from, _run_to, _sends


def test_merge_rules():
    c = _core()
    _add(c, ["n02"])

    def feed(u):
        return c.receive(0, "n03", _from("n03", g.GOSSIP, [[[g.encode_member(u)], []]]))

    feed(["n02", g.ALIVE, 1, "", "", 0])  # same incarnation: no change
    assert c.members()[1][2] == 1
    feed(["n02", g.SUSPECT, 1, "", "", "n03"])
    assert c.state_of("n02") == "suspect"
    feed(["n02", g.ALIVE, 2, "pi4", "r2", 0])  # refuted: newer alive wins
    assert c.members()[1] == ("n02", "alive", 2, ("pi4", "r2"))
    feed(["n02", g.DEAD, 1, "", "", 0])  # stale death ignored
    assert c.state_of("n02") == "alive"
    feed(["n02", g.LEFT, 2, "pi4", "r2", 0])
    assert c.state_of("n02") == "left"
    feed(["n02", g.DEAD, 2, "", "", 0])  # left is final at this incarnation
    assert c.state_of("n02") == "left"


def test_bad_bodies_are_counted_never_raised():
    c = _core()
    for kind, body in (
        (g.PING, [1]),
        (g.ACK, "x"),
        (g.GOSSIP, [[["n02:9:1:::0"], []]]),
        (g.SYNC, [0, 1, [], [1], []]),
        (77, []),
    ):
        assert c.receive(0, "n02", _from("n02", kind, body)) == []
    st = c.stats
    assert st["rx_rejected_malformed"] == 4 and st["rx_rejected_unknown_kind"] == 1
    assert c.receive(0, "n02", b"\x00" * 60) == [] and c.stats["rx_rejected_auth"] == 1
    assert c.members() == [("n01", "alive", 1, ("", ""))]


def test_member_cap_evicts_tombstones_first():
    c = _core(max_members=4)
    _add(c, ["n02", "n03", "n04"])
    _add(c, ["n05"])
    assert len(c.members()) == 4 and c.stats["members_dropped"] == 1
    dead = [g.encode_member(["n03", g.DEAD, 1, "", "", 0])]
    c.receive(0, "n02", _from("n02", g.GOSSIP, [[dead, []]]))
    _add(c, ["n05"])  # room made by forgetting the dead member
    ids = [m[0] for m in c.members()]
    assert "n05" in ids and "n03" not in ids


def test_32_member_view_probes_everyone_each_round():
    c = _core(retransmit_mult=1, push_pull_interval_ms=60000)  # small messages: 100 KB heap
    peers = ["n%02d" % i for i in range(2, 33)]
    _add(c, peers)
    assert len(c.members()) == 32
    targets = []
    _run_to(c, 31 * 1000 - 1, hook=_answer_pings(c, targets))
    assert sorted(targets) == peers  # round-robin: every member exactly once per round
    assert c.stats["probe_failures"] == 0


def test_sync_gives_full_state_and_answers_what_peer_lacks():
    a = _core("n01")
    a.publish(0, [1, 2])
    _add(a, ["n02", "n03"])
    a.receive(0, "n03", _from("n03", g.GOSSIP, [[[], [["n03", 4, [9]]]]]))
    # n02 pushes an empty digest: n01 answers with every summary and its full membership
    eff = a.receive(5, "n02", _from("n02", g.SYNC, [0, 1, [], ["", "", []], []]))
    sums = []
    members = []
    for _dst, env in _sends(eff, g.SYNC):
        sums.extend(env.body[4])
        members.extend(env.body[2])
    assert sorted(s[0] for s in sums) == ["n01", "n03"]
    assert sorted(g.parse_member(m)[0] for m in members) == ["n01", "n02", "n03"]
