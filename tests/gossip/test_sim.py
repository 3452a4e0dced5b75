"""Gossip in the deterministic simulator (CPython), each property over 50 seeds with small
fleets and short virtual runs. A failure prints the command that replays it."""

from roost.emulator.gossip_scenario import run_gossip

SEEDS = range(1, 51)


def _replay(seed, extra):
    return "replay: roost sim gossip --seed %d %s" % (seed, extra)


def _views(sim):
    """{live node: sorted [(member, state)]} at the end of the run."""
    out = {}
    for n in sim.nodes():
        h = sim.host(n)
        if h is not None:
            out[n] = sorted((m[0], m[1]) for m in h.members())
    return out


def test_loss_and_kills_converge_detect_and_never_false_positive():
    """8 nodes, 10% loss, default timers, 2 crashes: every live node ends with the same view,
    the crashed nodes dead in all of them, every update everywhere, no live node ever dead."""
    for seed in SEEDS:
        args = "--nodes 8 --loss 0.1 --kill 2 --duration 20 --updates-per-s 3"
        out = []
        r = run_gossip(8, seed, loss=0.1, kill=2, duration_s=20, updates_per_s=3, sim_out=out)
        why = _replay(seed, args)
        assert r["false_positives"] == 0, why
        assert r["coverage"] == 1.0, why
        assert r["detection_s"]["max"] is not None, why
        sim = out[0]
        sim.set_net(loss=0.0)  # loss keeps producing (refuted) suspicions: let them settle
        sim.run_for(8000)
        views = _views(sim)
        assert len(views) == 6, why
        first = next(iter(views.values()))
        for n, v in views.items():
            assert v == first, (why, n, v, first)
        states = dict(first)
        killed = [m for m in states if m not in views]
        assert len(killed) == 2 and all(states[k] == "dead" for k in killed), why
        assert all(states[n] == "alive" for n in views), why


def test_partitions_heal_to_one_view():
    """6 nodes split in halves long enough to declare each other dead, then healed: one view
    again, everything alive, every update delivered."""
    for seed in SEEDS:
        args = "--nodes 6 --partition A/B --duration 28 --updates-per-s 3"
        out = []
        r = run_gossip(6, seed, partition="A/B", duration_s=28, updates_per_s=3, sim_out=out)
        why = _replay(seed, args)
        assert r["coverage"] == 1.0, why
        assert r["false_positives"] > 0, why  # the halves did declare each other dead
        views = _views(out[0])
        for n, v in views.items():
            assert all(s == "alive" for _m, s in v) and len(v) == 6, (why, n, v)


def test_dissemination_reaches_every_node_quickly():
    """No faults: every update reaches every node, within 2 s at 100 ms one-way latency."""
    for seed in SEEDS:
        r = run_gossip(10, seed, duration_s=6, updates_per_s=10)
        why = _replay(seed, "--nodes 10 --duration 6 --updates-per-s 10")
        assert r["coverage"] == 1.0, why
        assert r["dissemination_ms"]["max"] <= 2000, (why, r["dissemination_ms"])


def test_same_seed_same_trace():
    for seed in (3, 17):
        digests = []
        for _ in range(2):
            out = []
            run_gossip(10, seed, loss=0.05, kill=1, duration_s=15, partition="A/B", sim_out=out)
            digests.append(out[0].trace_digest())
        assert digests[0] == digests[1], _replay(seed, "--nodes 10 --loss 0.05 --kill 1")
    out = []
    run_gossip(10, 4, loss=0.05, kill=1, duration_s=15, partition="A/B", sim_out=out)
    assert out[0].trace_digest() != digests[0]  # the seed does matter
