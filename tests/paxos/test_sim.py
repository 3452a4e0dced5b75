"""Paxos in the deterministic simulator: the classic scenarios, a long unreliable run, and
proof that the checks catch the deliberately broken variants. Every assertion message says
how to replay its seed."""

from roost.common.prng import Prng
from roost.emulator.nemesis import Nemesis
from roost.emulator.sim import NetConfig
from roost.node.paxos import PaxosConfig
from tests.paxos.simharness import (
    Group,
    leader_nemesis,
    lost_write_faults,
    replace_one_under_load,
    replay,
)

IDS3 = ["n1", "n2", "n3"]
IDS5 = ["n1", "n2", "n3", "n4", "n5"]


def test_initial_election():
    for seed in range(10):
        g = Group(seed, IDS5)
        leader = g.wait_leader(1000)
        assert leader is not None, replay("initial_election", seed)
        g.sim.run_for(1000)
        assert g.leaders() == [leader], replay("initial_election", seed)
        for n in IDS5:
            assert g.host(n).leader_hint() == leader, replay("initial_election", seed)


def test_reelection_after_leader_crash_resumes_writes_within_half_a_second():
    for seed in range(10):
        g = Group(seed, IDS3)
        g.wait_leader(1000)
        g.client(10, 3000)
        g.sim.run_until(1000)
        old = g.leader()
        g.sim.crash(old)
        crash_at = g.sim.now_ms
        before = len(g.by_index)
        g.sim.run_until(1600)
        resumed = [t for c, t in g.applied_at.items() if t > crash_at]
        assert len(g.by_index) > before, replay("reelection", seed)
        assert min(resumed) - crash_at <= 500, (min(resumed) - crash_at, replay("reelection", seed))
        g.sim.run_until(3000)
        g.sim.restart(old)
        g.sim.run_for(1000)
        g.check_safety("reelection")
        g.check_converged("reelection")


def test_agreement_despite_follower_failure():
    for seed in range(5):
        g = Group(seed, IDS3)
        g.wait_leader(1000)
        follower = [n for n in IDS3 if n != g.leader()][0]
        g.sim.crash(follower)
        g.client(5, 2000)
        g.sim.run_until(2200)
        live = g.live()
        assert len(g.by_index) > 200, replay("follower_failure", seed)
        g.check_safety("follower_failure")
        g.check_converged("follower_failure", live)
        g.sim.restart(follower)
        g.sim.run_for(1000)
        g.check_converged("follower_failure")


def test_no_agreement_without_majority():
    for seed in range(5):
        g = Group(seed, IDS5)
        leader = g.wait_leader(1000)
        others = [n for n in IDS5 if n != leader]
        for n in others[:3]:
            g.sim.crash(n)
        before = len(g.by_index)
        for i in range(10):
            g.propose(["lost", i], at=leader)
        g.client(10, g.sim.now_ms + 2000)
        g.sim.run_for(2000)
        assert len(g.by_index) == before, replay("no_majority", seed)
        assert not g.leaders(), replay("no_majority", seed)
        for n in others[:3]:
            g.sim.restart(n)
        g.sim.run_for(1500)
        g.propose(["after"])
        g.sim.run_for(500)
        assert len(g.by_index) > before, replay("no_majority", seed)
        g.check_safety("no_majority")
        g.check_converged("no_majority")


def test_concurrent_proposals_and_dueling_candidates():
    for seed in range(5):
        g = Group(seed, IDS5, net=NetConfig(latency_ms=2, jitter_ms=3))
        g.wait_leader(1000)
        # every node is asked at once; only the leader accepts, and all commit in one order
        for k in range(30):
            for n in IDS5:
                g.propose(["from", n, k], at=n)
            g.sim.run_for(3)
        # leader dies while three clients push: candidates race; randomized backoff settles it
        g.sim.crash(g.leader())
        g.client(4, g.sim.now_ms + 2000, burst=3)
        g.sim.run_for(2500)
        assert g.leader() is not None, replay("concurrent", seed)
        g.check_safety("concurrent")
        g.check_converged("concurrent")


def test_rejoin_of_partitioned_leader():
    for seed in range(6):
        g = Group(seed, IDS5)
        old = g.wait_leader(1000)
        g.client(10, 4000)
        g.sim.run_for(300)
        g.sim.partition([[old], [n for n in IDS5 if n != old]])
        for i in range(5):
            g.propose(["stranded", i], at=old)
        g.sim.run_for(1500)
        new = g.leader()
        assert new is not None and new != old, replay("rejoin", seed)
        g.sim.heal()
        g.sim.run_until(5000)
        g.check_safety("rejoin")
        top = g.check_converged("rejoin")
        assert top > 100, replay("rejoin", seed)


def test_fast_backup_of_a_far_behind_replica():
    cfg = PaxosConfig(snapshot_every=200)
    for seed in range(3):
        g = Group(seed, IDS3, config=cfg)
        g.wait_leader(1000)
        lag = [n for n in IDS3 if n != g.leader()][0]
        g.sim.crash(lag)
        g.client(1, g.sim.now_ms + 1500, burst=4)
        g.sim.run_for(1600)
        assert len(g.by_index) > 3000, replay("fast_backup", seed)
        g.sim.restart(lag)
        t0 = g.sim.now_ms
        top = max(g.by_index)
        while g.host(lag).applied_index < top and g.sim.now_ms - t0 < 3000:
            g.sim.run_for(10)
        took = g.sim.now_ms - t0
        assert g.host(lag).applied_index == top, replay("fast_backup", seed)
        assert took < 1000, (took, replay("fast_backup", seed))
        assert g.host(lag).stats["snapshots_installed"] >= 1
        g.check_safety("fast_backup")
        g.check_converged("fast_backup")


def test_persistence_across_crash_restart_of_every_replica():
    for seed in range(4):
        g = Group(seed, IDS3, config=PaxosConfig(snapshot_every=50))
        g.wait_leader(1000)
        g.client(5, 6000)
        t = 500
        for n in IDS3:  # one at a time, including whoever leads
            g.sim.run_until(t)
            g.sim.crash(n)
            g.sim.run_until(t + 300)
            g.sim.restart(n)
            t += 800
        g.sim.run_until(t)
        count = len(g.by_index)
        for n in IDS3:  # all at once: only durable state survives
            g.sim.crash(n)
        g.sim.run_for(200)
        for n in IDS3:
            g.sim.restart(n)
        g.sim.run_until(7000)
        assert len(g.by_index) > count, replay("persistence", seed)
        g.check_safety("persistence")
        g.check_converged("persistence")
        for n in IDS3:
            assert g.host(n).applied_index == max(g.by_index)


def _unreliable_run(seed, config, ms=8000, kinds=None, mid_step=True):
    g = Group(seed, IDS5, config=config, net=NetConfig(latency_ms=2, jitter_ms=2))
    kinds = kinds or ("kill", "restart", "partition", "pause", "loss", "dup", "reorder",
                      "crash-mid-step")
    if not mid_step:
        kinds = tuple(k for k in kinds if k != "crash-mid-step")
    nem = Nemesis(g.sim, kinds, IDS5, Prng(seed).fork("nemesis"), 300, ms,
                  mean_interval_ms=150)
    nem.install()
    g.client(5, ms + 1500, burst=2)
    g.sim.run_until(ms + 3000)
    return g, nem


def test_figure8_unreliable():
    cfg = PaxosConfig(snapshot_every=100)
    for seed in range(6):
        g, nem = _unreliable_run(seed, cfg)
        g.check_safety("figure8")
        assert nem.summary()["faults"] > 20
        before = len(g.by_index)
        g.sim.run_for(1000)
        g.propose(["final", seed])
        g.sim.run_for(1000)
        assert len(g.by_index) > before, replay("figure8", seed)  # liveness after healing
        g.check_converged("figure8")


def test_snapshots_install_on_laggard_and_log_stays_bounded():
    cfg = PaxosConfig(snapshot_every=100, window=16)
    g = Group(11, IDS3, config=cfg)
    g.wait_leader(1000)
    lag = [n for n in IDS3 if n != g.leader()][0]
    g.sim.partition([[lag], [n for n in IDS3 if n != lag]])
    peak = {n: 0 for n in IDS3}

    def watch(sim):
        for n in IDS3:
            h = g.host(n)
            if h is not None:
                peak[n] = max(peak[n], len(h.log), len(sim.storage[n]) - 2)
        if sim.now_ms < 4500:
            sim.at(sim.now_ms + 20, watch)

    g.sim.at(g.sim.now_ms, watch)
    g.client(2, 3000, burst=2)
    g.sim.run_until(3000)
    g.sim.heal()
    g.sim.run_until(5000)
    assert g.host(lag).stats["snapshots_installed"] >= 1, replay("snapshots", 11)
    for n in IDS3:
        # the log window, and the applied slots a leader keeps for followers a little behind
        assert peak[n] <= 100 + 16 + 4 + cfg.catchup_slots, (n, peak[n], replay("snapshots", 11))
    g.check_safety("snapshots")
    g.check_converged("snapshots")


def test_reconfiguration_replace_dead_then_grow_under_load():
    for seed in range(4):
        g, replaced = replace_one_under_load(seed, replay("reconfiguration", seed))
        for n in replaced:
            assert g.host(n).members == replaced, replay("reconfiguration", seed)
        # the old member is gone for good; the new group survives losing another one
        g.add("n5")
        g.add("n6")
        five = sorted(replaced + ["n5", "n6"])
        deadline = g.sim.now_ms + 2000
        done = False
        while not done and g.sim.now_ms < deadline:
            done = g.reconfigure(five)
            g.sim.run_for(50)
        assert done, replay("reconfiguration", seed)
        g.sim.run_for(1000)
        for n in five:
            assert g.host(n).members == five, replay("reconfiguration", seed)
        g.sim.crash(g.leader())
        g.sim.crash("n4" if g.host("n4") is not None else "n5")
        g.sim.run_until(6500)
        assert g.leader() in five, replay("reconfiguration", seed)
        g.check_safety("reconfiguration")
        live = [n for n in five if g.host(n) is not None]
        g.check_converged("reconfiguration", live)


def test_a_removed_leader_hands_over_before_it_steps_down():
    """A leader that a shrink removes fills the slots up to the new configuration and leads
    on until a majority of the new one has its commit: stepping down at once left the
    members kept without it, and with the removed ones switched off they could never elect
    (12 of 20 seeds of 3 -> 1, 17 of 20 of 5 -> 2)."""
    for ids, keep_n in ((IDS3, 1), (IDS5, 2)):
        for seed in range(10):
            g = Group(seed, ids)
            ld = g.wait_leader(1000)
            g.client(5, 300)
            g.sim.run_for(400)
            keep = [n for n in ids if n != ld][:keep_n]
            assert g.reconfigure(keep), replay("removed_leader", seed)
            h = g.host(ld)
            for _ in range(200):
                g.sim.run_for(5)
                if not h.is_leader() and h.config_of(h.commit_index + 1) == keep:
                    break
            for n in ids:
                if n not in keep:
                    g.sim.crash(n)  # decommissioned
            g.sim.run_for(3000)
            assert len(g.leaders()) == 1 and g.leader() in keep, replay("removed_leader", seed)
            g.check_safety("removed_leader")


# ---- the checks have teeth: broken variants are caught --------------------------------


def _scripted_lost_accept(config):
    """B answers an accept and loses power before (or, if correct, after) the write; A never
    sees the accept; then A and B form the majority without the old leader."""
    g = Group(1, IDS3, config=config)
    leader = g.wait_leader(1000)
    a, b = [n for n in IDS3 if n != leader]
    g.sim.run_for(100)
    g.sim.set_link(leader, a, loss=1.0)
    g.sim.crash(b, after_effects=1)
    g.propose(["doomed?"], at=leader)
    g.sim.run_for(20)
    g.sim.crash(leader)
    g.sim.set_net(loss=0.0)
    g.sim.restart(b)
    g.sim.run_for(1000)
    g.propose(["other"])
    g.sim.run_for(200)
    g.sim.restart(leader)
    g.sim.run_for(1000)
    return g


def _leader_faults(seed, config):
    g = Group(seed, IDS3, config=config, net=NetConfig(latency_ms=2, jitter_ms=2))
    leader_nemesis(g, Prng(seed).fork("nemesis"), 300, 3000, 40)
    g.client(3, 4000, burst=2)
    g.sim.run_until(5000)
    return g


def _lost_writes(seed, config):
    g = Group(seed, IDS3, config=config, net=NetConfig(latency_ms=2, jitter_ms=2))
    lost_write_faults(g, Prng(seed).fork("nemesis"), 300, 2)
    g.client(5, 2500)
    g.sim.run_until(3000)
    return g


def test_teeth_send_before_persist_is_caught():
    good = _scripted_lost_accept(PaxosConfig())
    good.check_safety("teeth")
    good.check_converged("teeth")
    bad = _scripted_lost_accept(PaxosConfig(_unsafe_send_before_persist=True))
    assert bad.violations, "the checker missed an acceptor that answered before its write"
    # seeded faults (crash mid-step, partitions, kills, restarts) find it on most seeds
    # (17 of seeds 0-19 since a voter pre-votes before it campaigns, 18 before; 0, 1 and 3
    # among them), while the correct core passes the very same runs
    for seed in (0, 1, 3):
        g = _lost_writes(seed, PaxosConfig(_unsafe_send_before_persist=True))
        assert g.violations, "send-before-persist not caught; " + replay("teeth_send", seed)
        ok = _lost_writes(seed, PaxosConfig())
        ok.check_safety("teeth_send")
        ok.sim.run_for(1000)
        ok.check_converged("teeth_send")


def test_teeth_skip_phase1_is_caught():
    # caught on 14 of seeds 0-19 (1 and 4 among them) since a voter pre-votes before it
    # campaigns, 20 of 20 before: fewer elections, fewer chances for a phase 1 skipped
    for seed in (1, 4):
        g, _ = _unreliable_run(seed, PaxosConfig(_unsafe_skip_phase1=True), ms=3000,
                               kinds=("kill", "restart", "partition"))
        assert g.violations, "skip-phase1 not caught; " + replay("teeth_skip_phase1", seed)
        g2, _ = _unreliable_run(seed, PaxosConfig(), ms=3000,
                                kinds=("kill", "restart", "partition"))
        g2.check_safety("teeth_skip_phase1")


def test_leader_aimed_faults_keep_agreement():
    for seed in range(100, 106):
        g = _leader_faults(seed, PaxosConfig(snapshot_every=64))
        g.check_safety("leader_aimed_faults")
        g.sim.run_for(1000)
        g.check_converged("leader_aimed_faults")


def test_a_power_cut_under_load_leaves_a_long_tail_that_phase_one_still_gathers():
    # Every replica restarts at once holding hundreds of accepted slots beyond its
    # snapshot, each about a datagram: a promise is hundreds of datagrams. A link carries
    # only 40 at once (a socket's receive buffer: the rest are dropped). Before, every
    # PREPARE was answered with the whole tail: the same first 40 parts arrived each time,
    # the rest never did, and the group stayed leaderless for good (seen on a real fleet:
    # a power cut during a 140-client load).
    for seed in range(3):
        g = Group(seed, IDS3, config=PaxosConfig.lan(snapshot_every=5000),
                  net=NetConfig(latency_ms=2, jitter_ms=1, capacity=40))
        assert g.wait_leader(1000)
        pad = "x" * 900

        def step(sim, g=g, pad=pad):
            g._next += 1
            g.propose(["c", g._next, pad])
            if sim.now_ms < 2600:
                sim.at(sim.now_ms + 2, step)

        g.sim.at(g.sim.now_ms + 2, step)
        g.sim.run_until(2600)
        top = len(g.by_index)
        assert top > 300, top  # the tail the test is about
        for n in IDS3:
            g.sim.crash(n)
        g.sim.run_for(200)
        for n in IDS3:
            g.sim.restart(n)
        assert g.wait_leader(3000), "no leader 3 s after the restart; %s" % replay(
            "long_tail", seed)
        g.propose(["c", "after"])
        g.sim.run_for(1000)
        g.check_safety("long_tail")
        g.check_converged("long_tail")
        assert len(g.by_index) > top, replay("long_tail", seed)
