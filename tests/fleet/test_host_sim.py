"""NodeHost in the deterministic simulator: gossip + a Paxos kv group + simulated sensors.

CPython only (the simulator); the host itself is MicroPython-safe (test_host_unit.py)."""

from roost.emulator.sim import NetConfig, Simulator
from roost.hardware.boards import make_sensors
from roost.node.effects import EVENT
from roost.node.gossip import GossipConfig
from roost.node.host import HostConfig, make_host_factory
from roost.node.kvclient import make_client_factory

NODES = ["n01", "n02", "n03", "n04", "n05"]
GROUP = ["n01", "n02", "n03"]


def _factory(node_id):
    gcfg = GossipConfig.lan(seeds=tuple(NODES), board="esp32")
    members = GROUP if node_id in GROUP else None
    return make_host_factory(
        gcfg, members,
        sensors_fn=lambda nid, now: make_sensors("esp32", seed=int(nid[1:])),
        host_config=HostConfig(sample_ms=1000, group="g0" if members else ""))


def _fleet(seed):
    sim = Simulator(seed, net=NetConfig(latency_ms=2, jitter_ms=1), key="fleet-key")
    events = []
    sim.observe(lambda t, n, e: events.append((t, n, e)))
    for n in NODES:
        sim.add_node(n, _factory(n))
    sim.add_node("c1", make_client_factory(GROUP))
    return sim, events


def _replay(seed):
    return "replay: python -m pytest tests/fleet/test_host_sim.py (seed %d)" % seed


def test_fleet_joins_reads_sensors_and_serves_kv():
    for seed in (1, 2, 3):
        sim, events = _fleet(seed)
        sim.run_until(5000)
        joined = sorted(n for t, n, e in events if e[0] == EVENT and e[1] == "joined")
        assert joined == NODES, _replay(seed)
        readings = [e for t, n, e in events if e[1] == "reading"]
        assert len(readings) >= 5 * 3 * 4, _replay(seed)
        # every member sees every member alive, and the summaries spread
        for n in NODES:
            h = sim.host(n)
            assert [m[1] for m in h.gossip.members()] == ["alive"] * 5, _replay(seed)
            assert len(h.gossip.summaries()) == 5, _replay(seed)
        leaders = [n for n in GROUP if sim.host(n).replica.is_leader()]
        assert len(leaders) == 1, _replay(seed)
        assert sim.host("n04").replica is None
        sim.call("c1", lambda h, now: h.submit(now, "put", "k", "v1"))
        sim.run_for(500)
        sim.call("c1", lambda h, now: h.submit(now, "get", "k"))
        sim.run_for(500)
        hist = sim.host("c1").history
        assert [r["ok"] for r in hist] == [True, True], _replay(seed)
        assert hist[1]["output"] == "v1", _replay(seed)
        st = sim.host(leaders[0]).status()
        assert st["group"]["is_leader"] and st["group"]["commit"] >= 2, _replay(seed)


def test_leader_crash_and_restart_recovers_from_storage():
    seed = 7
    sim, events = _fleet(seed)
    sim.run_until(3000)
    sim.call("c1", lambda h, now: h.submit(now, "put", "a", "1"))
    sim.run_for(500)
    leader = [n for n in GROUP if sim.host(n).replica.is_leader()][0]
    sim.crash(leader)
    sim.run_for(2000)
    sim.call("c1", lambda h, now: h.submit(now, "append", "a", "2"))
    sim.run_for(3000)
    sim.restart(leader)
    sim.run_for(3000)
    h = sim.host(leader)
    assert h.replica.store.get("a") == "12", _replay(seed)
    assert h.gossip.state_of(leader) == "alive"
    others = [sim.host(n).gossip.state_of(leader) for n in NODES if n != leader]
    assert others == ["alive"] * 4, _replay(seed)


def test_same_seed_same_trace():
    a, _ = _fleet(11)
    b, _ = _fleet(11)
    a.run_until(3000)
    b.run_until(3000)
    assert a.trace_digest() == b.trace_digest()
