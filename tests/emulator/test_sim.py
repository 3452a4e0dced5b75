"""The simulator: determinism, network faults, crashes with durable storage, pauses."""

import pytest

from roost.common.prng import Prng
from roost.emulator.nemesis import Nemesis, parse_kinds
from roost.emulator.sim import NetConfig, Simulator
from tests.emulator.toy import toy_factory

NODES = ["n1", "n2", "n3"]


def _sim(seed, **net):
    sim = Simulator(seed, net=NetConfig(**net))
    for n in NODES:
        sim.add_node(n, toy_factory(NODES))
    return sim


def _pongs(sim):
    seen = []
    sim.observe(lambda t, n, e: seen.append((t, n, e[2][0])) if e[1] == "pong" else None)
    return seen


def test_same_seed_same_trace():
    digests = set()
    for _ in range(2):
        sim = _sim(7, latency_ms=3, jitter_ms=4, loss=0.1, dup=0.1, reorder=0.2)
        sim.run_until(5000)
        digests.add(sim.trace_digest())
    assert len(digests) == 1
    other = _sim(8, latency_ms=3, jitter_ms=4, loss=0.1, dup=0.1, reorder=0.2)
    other.run_until(5000)
    assert other.trace_digest() not in digests


def test_latency_and_delivery():
    sim = _sim(1, latency_ms=10)
    seen = _pongs(sim)
    sim.run_until(1000)
    assert sim.stats["delivered"] > 0 and sim.stats["dropped_loss"] == 0
    # every ping is answered: one period's pings come back within two latencies
    assert len(seen) >= 2 * 9 * 3 * 0.9


def test_loss_rate_close_to_configured():
    sim = _sim(2, loss=0.3)
    sim.run_until(20000)
    lost = sim.stats["dropped_loss"] / sim.stats["sent"]
    assert 0.25 < lost < 0.35


def test_duplicates_are_rejected_by_replay_window():
    sim = _sim(3, dup=0.5)
    sim.run_until(3000)
    assert sim.stats["duplicated"] > 0
    rejected = sum(sim.host(n).channel.stats["rx_rejected_replay"] for n in NODES)
    assert rejected == sim.stats["duplicated"]


def test_partition_blocks_and_heal_restores():
    sim = _sim(4)
    seen = _pongs(sim)
    sim.partition([["n1"], ["n2", "n3"]])
    sim.run_until(2000)
    assert not [s for s in seen if {s[1], s[2]} & {"n1"} and s[1] != s[2]]
    assert sim.stats["dropped_partition"] > 0
    sim.heal()
    sim.run_until(4000)
    assert [s for s in seen if s[1] == "n1"]


def test_crash_keeps_storage_and_restart_recovers():
    sim = _sim(5)
    sim.run_until(1000)
    before = sim.storage["n2"]["count"]
    sim.crash("n2")
    assert sim.host("n2") is None
    sim.run_until(2000)
    assert sim.storage["n2"]["count"] == before
    sim.restart("n2")
    assert sim.host("n2").recovered == before
    assert sim.host("n2").channel.incarnation == 2
    sim.run_until(3000)
    assert sim.storage["n2"]["count"] > before


def test_crash_mid_step_runs_only_a_prefix():
    sim = _sim(6)
    sim.run_until(500)
    sent_before = sim.stats["sent"]
    count_before = sim.storage["n1"]["count"]
    sim.crash("n1", after_effects=1)  # the next step: its PERSIST runs, its two SENDs do not

    def force_tick(host, now_ms):
        host.next_ms = now_ms
        return host.tick(now_ms)

    sim.call("n1", force_tick)
    assert not sim.alive("n1")
    assert sim.storage["n1"]["count"] == count_before + 1
    assert sim.stats["sent"] == sent_before
    assert sim.stats["crashes"] == 1


def test_pause_holds_messages_until_resume():
    sim = _sim(7)
    sim.run_until(500)
    sim.pause("n3")
    count = sim.host("n3").count
    sim.run_until(1500)
    assert sim.host("n3").count == count  # no ticks while paused
    sim.resume("n3")
    sim.run_until(1600)
    assert sim.host("n3").count > count


def test_capacity_bound_drops():
    sim = _sim(8, latency_ms=1000, capacity=2)
    sim.run_until(3000)
    assert sim.stats["dropped_capacity"] > 0


def test_clock_skew_is_local():
    sim = Simulator(1)
    sim.add_node("a", toy_factory(["a"]), skew_ms=5000)
    assert sim.local_time("a") == 5000
    sim.run_until(1000)
    assert sim.host("a").count >= 9  # ticks still arrive once per 100 ms of virtual time


def test_net_config_validates():
    for bad in ({"loss": 2.0}, {"latency_ms": -1}, {"nope": 1}, {"capacity": 0}):
        with pytest.raises(ValueError):
            NetConfig(**bad)


def test_nemesis_is_seeded_and_heals_everything():
    def run(seed):
        sim = _sim(seed)
        nem = Nemesis(sim, parse_kinds("kill,restart,partition,pause,loss,dup,reorder"),
                      NODES, Prng(seed).fork("nemesis"), 100, 5000, mean_interval_ms=200)
        nem.install()
        sim.run_until(6000)
        return sim, nem

    a, na = run(11)
    b, nb = run(11)
    assert na.log == nb.log and a.trace_digest() == b.trace_digest()
    assert len(na.log) > 5
    assert all(a.alive(n) for n in NODES)
    assert not a._group and a.net.loss == 0.0
    # never more than a minority down at once
    down = set()
    for _t, what in na.log:
        verb, _, node = what.partition(" ")
        if verb in ("kill", "pause", "crash-mid-step"):
            down.add(node)
            assert len(down) <= 1
        elif verb in ("restart", "resume"):
            down.discard(node) if verb == "resume" else down.clear()
        elif verb == "heal-all":
            down.clear()


def test_parse_kinds():
    assert parse_kinds("kill, loss") == ("kill", "loss")
    assert parse_kinds("") == ()
    with pytest.raises(ValueError, match="unknown nemesis"):
        parse_kinds("kill,meteor")


def test_heal_all_disarms_a_pending_mid_step_crash():
    sim = _sim(12)
    nem = Nemesis(sim, ("kill",), NODES, Prng(1), 0, 10)
    sim.run_until(100)
    sim.crash("n2", after_effects=2)
    nem.heal_all(sim)
    sim.run_until(2000)
    assert sim.alive("n2")
