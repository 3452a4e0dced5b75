"""Primary/backup with a view service, in the simulator (CPython)."""

import pytest

from roost.common.channel import Channel
from roost.emulator.kv_scenario import VS_ID, KvRun
from roost.emulator.sim import NetConfig, Simulator
from roost.node.effects import PERSIST, SEND
from roost.node.kvclient import KvClient
from roost.node.pb import PB_PING, PB_VIEW, PbConfig, PbServer, PbViewService, make_pb_factories

ALL = ("kill", "restart", "partition", "pause", "loss", "dup", "reorder")
SERVERS = ["n1", "n2", "n3"]


def _replay(run):
    mode = " --mode primary-backup"
    nem = " --nemesis " + ",".join(run.nemesis) if run.nemesis else ""
    return "replay: roost sim kv --replicas %d --clients %d --ops %d%s%s --seed %d" % (
        run.replicas, run.clients, run.ops, nem, mode, run.seed)


def test_no_faults_linearizable_and_live():
    for seed in range(1, 6):
        run = KvRun(mode="primary-backup", clients=3, ops=60, seed=seed).run()
        s = run.summary()
        assert s["linearizable"] is True and run.liveness_ok, _replay(run)
        assert s["ok"] == 60 and s["unknown"] == 0, _replay(run)


def test_safe_under_random_faults():
    """Primary/backup may stall under faults (a view that was never acknowledged cannot
    change), but what it answers is always linearizable."""
    stalled = 0
    for seed in range(1, 31):
        run = KvRun(mode="primary-backup", clients=3, ops=50, seed=seed, nemesis=ALL).run()
        assert run.verdict is True, _replay(run)
        stalled += not run.liveness_ok
    assert stalled < 30


def test_killing_the_view_service_stops_primary_backup():
    run = KvRun(mode="primary-backup", ops=200, seed=3, nemesis=("kill-vs",)).run()
    assert run.verdict is True, _replay(run)
    # the view service died at 1.0 s, the primary at 1.5 s; nothing completes until the heal
    assert run.longest_outage_ms() >= 3000, _replay(run)
    assert run.summary()["unknown"] >= 1


def test_primary_cut_from_view_service_with_local_reads_is_caught():
    for seed in (1, 2, 3):
        safe = KvRun(mode="primary-backup", seed=seed, nemesis=("split-vs",)).run()
        assert safe.verdict is True, _replay(safe)
        unsafe = KvRun(
            mode="primary-backup", seed=seed, nemesis=("split-vs",),
            pb_config=PbConfig(unsafe_local_reads=True),
        ).run()
        assert unsafe.verdict is False, _replay(unsafe) + " --unsafe-local-reads"
        assert unsafe.sim.host("n1").stats["local_reads"] + unsafe.sim.host("n2").stats[
            "local_reads"] > 0


def test_paxos_carries_on_under_the_same_faults():
    pytest.importorskip("roost.node.paxos")
    for seed in (1, 2, 3):
        run = KvRun(mode="paxos", ops=200, seed=seed, nemesis=("kill-vs",)).run()
        assert run.verdict is True and run.liveness_ok
        replay = "replay: roost sim kv --nemesis kill-vs --seed %d" % seed
        assert run.longest_outage_ms() < 1500, replay
        split = KvRun(mode="paxos", ops=200, seed=seed, nemesis=("split-vs",)).run()
        assert split.verdict is True and split.liveness_ok


# ---- the view service and servers, step by step -----------------------------------------


def _pb_sim(seed=1, servers=SERVERS, **cfg):
    sim = Simulator(seed, net=NetConfig(latency_ms=2))
    vs_f, srv_f = make_pb_factories(servers, VS_ID, config=PbConfig(**cfg))
    sim.add_node(VS_ID, vs_f)
    for n in servers:
        sim.add_node(n, srv_f)
    return sim


def test_views_form_and_backup_takes_over():
    sim = _pb_sim()
    sim.run_until(1000)
    vs = sim.host(VS_ID)
    v0 = list(vs.view)
    assert v0[1] is not None and v0[2] is not None and vs.acked
    primary, backup = v0[1], v0[2]
    assert sim.host(primary).is_primary() and sim.host(backup).synced_view == v0[0]
    sim.crash(primary)
    sim.run_until(3000)
    v1 = vs.view
    assert v1[1] == backup and v1[0] > v0[0] and v1[2] not in (None, primary)
    assert sim.host(backup).is_primary()


def test_view_waits_for_the_primary_ack():
    sim = _pb_sim(servers=["n1", "n2"])
    sim.run_until(1000)
    vs = sim.host(VS_ID)
    primary, backup = vs.view[1], vs.view[2]
    # cut primary -> backup so the next state transfer cannot finish, then lose the backup
    sim.crash(backup)
    sim.run_until(2000)
    stuck_view = list(vs.view)
    assert stuck_view[2] is None or not vs.acked
    sim.set_link(primary, backup, loss=1.0)
    sim.restart(backup)
    sim.run_until(3000)
    assert vs.view[2] == backup and not vs.acked  # transfer cannot complete
    n = vs.view[0]
    sim.crash(primary)
    sim.run_until(6000)
    # the backup never got the state: the view service must not promote it
    assert vs.view[0] == n and vs.view[1] == primary
    assert not sim.host(backup).is_primary()
    assert vs.stats["stuck_checks"] > 0


def test_rebooted_primary_refuses_to_serve_empty():
    ch = Channel("n1", "k")
    srv = PbServer("n1", ch, SERVERS, VS_ID, storage={"pb/booted": True})
    vs_ch = Channel(VS_ID, "k")
    raw = vs_ch.seal(PB_VIEW, "n1", [4, "n1", None])
    effs = srv.receive(0, VS_ID, raw)
    assert not srv.is_primary()
    assert any(e[1] == "pb.refuse_primary" for e in effs if e[0] == 4)
    pings = [e for e in srv.tick(0) if e[0] == SEND and e[1] == VS_ID]
    body = vs_ch.open(pings[-1][2]).body
    assert body == [0]  # it tells the view service its state is gone
    fresh = PbServer("n2", Channel("n2", "k"), SERVERS, VS_ID, storage={})
    assert fresh.tick(0)[0] == (PERSIST, "pb/booted", True)


def test_view_service_rejects_bad_pings_and_persists():
    vs = PbViewService(VS_ID, Channel(VS_ID, "k"), SERVERS, storage={})
    c = Channel("n1", "k")
    assert vs.receive(0, "n1", c.seal(PB_PING, VS_ID, ["x"])) == []
    assert vs.receive(0, "n1", c.seal(PB_PING, VS_ID, None)) == []
    assert vs.channel.stats["rx_rejected_malformed"] == 2
    stranger = Channel("zz", "k")
    assert vs.receive(0, "zz", stranger.seal(PB_PING, VS_ID, [0])) == []
    assert vs.channel.stats["rx_rejected_unknown_sender"] == 1
    effs = vs.receive(1, "n1", c.seal(PB_PING, VS_ID, [0]))
    saved = [e for e in effs if e[0] == PERSIST]
    assert saved and saved[0][2][:3] == [1, "n1", None]
    again = PbViewService(VS_ID, Channel(VS_ID, "k", incarnation=2), SERVERS,
                          storage={"pb/view": saved[-1][2]})
    assert again.view == [1, "n1", None]


def test_kvclient_works_against_primary_backup():
    sim = _pb_sim()
    done = []

    def client_factory(node_id, channel, storage, rng, now_ms):
        c = KvClient(node_id, channel, SERVERS, rng=rng)
        c.on_done = done.append
        return c

    sim.add_node("c1", client_factory)
    sim.run_until(500)
    sim.call("c1", lambda h, t: h.submit(t, "put", "k", value="v"))
    sim.run_until(1000)
    sim.call("c1", lambda h, t: h.submit(t, "get", "k"))
    sim.run_until(1500)
    assert [(r["op"], r["ok"], r.get("output")) for r in done] == [
        ("put", True, None), ("get", True, "v")]
