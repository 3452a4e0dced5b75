"""A replica's promise reaches flash before anything reveals it, also when the log has no
room for the value that raised it; recovery takes the highest ballot its records carry.
Runs on MicroPython too (its own file: a fresh board-sized heap)."""

from roost.common.channel import Channel
from roost.node.effects import PERSIST, SEND
from roost.node.paxos import ACCEPT, NACK, PREPARE, PaxosConfig, PaxosCore
from tests.paxos.pump import KEY, NEW, CountSM

IDS = ["n1", "n2", "n3"]


def test_a_promise_raised_by_an_accept_it_had_no_room_for_is_persisted():
    """An ACCEPT at a higher ballot raises the promise even when the log is full and the
    value is refused: the promise must reach flash all the same, or the next message at
    that ballot reveals a promise a restart would forget."""
    storage = dict(NEW)
    cfg = PaxosConfig(snapshot_every=1, window=1)
    core = PaxosCore("n2", Channel("n2", KEY), IDS, CountSM(), storage=storage, config=cfg)
    lch = Channel("n1", KEY)

    def feed(t, kind, body):
        eff = core.receive(t, "n1", lch.seal(kind, "n2", body))
        for e in eff:
            if e[0] == PERSIST:
                storage[e[1]] = e[2]
        return eff

    slot = 2  # slot 1 stays open, so none of these is forced in past the limit
    while core.log.put(slot, 1, "n1", ["b", []], 0, False):
        slot += 1  # fill the log directly (what a run of ACCEPTs at (1, n1) does)
    feed(1, ACCEPT, [4, "n1", slot, ["b", [1]], 0])
    assert core.stats["rx_rejected_full"] == 1 and core.ballot == (4, "n1")
    assert storage.get("promised") == [4, "n1"]
    eff = feed(2, PREPARE, [4, "n1", 1])  # a PROMISE at the same ballot: nothing new to write
    assert any(e[0] == SEND for e in eff)
    again = PaxosCore("n2", Channel("n2", KEY, incarnation=1), IDS, CountSM(), storage=storage,
                      config=cfg)
    assert again.ballot == (4, "n1")


def test_recovery_takes_the_highest_ballot_an_accepted_value_carries():
    """An accepted value at (5, n2) promised (5, n2) when it was accepted: a promise record
    older than it must not let a restarted replica accept a lower ballot over it."""
    storage = {"promised": [1, "n1"], "a/1": [5, "n3", ["b", [["x"]]]]}
    core = PaxosCore("n2", Channel("n2", KEY), IDS, CountSM(), storage=storage)
    assert core.ballot == (5, "n3")
    lch = Channel("n1", KEY)
    eff = core.receive(0, "n1", lch.seal(ACCEPT, "n2", [2, "n1", 1, ["b", [["y"]]], 0]))
    assert lch.open(eff[-1][2]).kind == NACK
