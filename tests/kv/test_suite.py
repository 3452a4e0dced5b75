"""The key-value suite in the simulator (CPython): Paxos KV under nemesis mixes, each run
judged by the linearizability checker; durability across whole-group crashes; and proof
that the checker has teeth (a deliberately broken Paxos is caught)."""

from roost.common.prng import Prng
from roost.emulator.kv_scenario import KvRun
from roost.emulator.sim import NetConfig, Simulator
from roost.node.effects import SEND
from roost.node.kv import make_replica_factory
from roost.node.kvclient import KvClient, KvClientConfig
from roost.node.paxos import PaxosConfig

NET = ("loss", "dup", "reorder")
SUITES = [
    # (name, nemesis, seeds, clients, ops, keys)
    ("basic", (), range(1, 16), 3, 40, 3),
    ("concurrent clients", (), range(1, 11), 6, 60, 1),
    ("unreliable network", NET, range(1, 46), 3, 40, 3),
    ("one partition", ("partition",), range(1, 31), 3, 40, 3),
    ("many partitions", ("partition", "pause", "kill", "restart"), range(1, 51), 3, 40, 3),
    ("persist + partition + unreliable",
     ("kill", "restart", "crash-mid-step", "partition") + NET, range(1, 51), 4, 50, 3),
    # the whole group's plugs at once (a power strip's switch), some mid-step
    ("power cuts", ("power-cut", "reorder", "loss"), range(1, 31), 4, 80, 3),
    # a replica's flash erased (a board flashed again), one at a time, with partitions
    ("wiped flash", ("wipe", "partition"), range(1, 61), 4, 120, 3),
    # a plan's Pis beside its boards: n1 should lead, and the others hand it the lead back
    # whenever it is up and caught up (prefer), amid kills, wipes and partitions
    ("a preferred leader", ("kill", "restart", "wipe", "partition") + NET, range(1, 41), 4,
     120, 3, ("n1",)),
]


def _replay(run):
    cmd = "replay: roost sim kv --replicas %d --clients %d --ops %d" % (
        run.replicas, run.clients, run.ops)
    if run.nemesis:
        cmd += " --nemesis " + ",".join(run.nemesis)
    if run.paxos_config is not None and run.paxos_config.prefer:
        cmd += " --prefer " + ",".join(run.paxos_config.prefer)
    return cmd + " --seed %d" % run.seed


def _suite(name):
    for entry in SUITES:
        sname, nemesis, seeds, clients, ops, keys = entry[:6]
        if sname != name:
            continue
        pcfg = PaxosConfig(prefer=entry[6]) if len(entry) > 6 else None
        runs = together = 0
        for seed in seeds:
            run = KvRun(3, clients, ops, seed, nemesis, keys=keys, paxos_config=pcfg).run()
            together += run.sim.stats["delivered_together"]
            assert run.verdict is True, "%s: %s" % (name, _replay(run))
            assert run.liveness_ok, "%s: liveness, clients %s: %s" % (
                name, run.stalled, _replay(run))
            assert len(run.history) >= ops
            runs += 1
        # messages due at a replica at one instant are handled between hold() and
        # release(), as the runtime does with the datagrams it finds waiting together
        assert together > 0, name
        return runs
    raise AssertionError("no suite " + name)


def test_basic():
    assert _suite("basic") == 15


def test_concurrent_clients():
    assert _suite("concurrent clients") == 10


def test_unreliable_network():
    assert _suite("unreliable network") == 45


def test_one_partition():
    assert _suite("one partition") == 30


def test_many_partitions():
    assert _suite("many partitions") == 50


def test_persist_partition_unreliable():
    assert _suite("persist + partition + unreliable") == 50


def test_power_cuts():
    assert _suite("power cuts") == 30


def test_wiped_flash():
    assert _suite("wiped flash") == 60


def test_a_preferred_leader():
    assert _suite("a preferred leader") == 40


def test_seed_count():
    assert sum(len(s[2]) for s in SUITES) >= 200


def test_same_seed_same_history():
    a = KvRun(3, 3, 40, 7, ("kill", "partition", "loss")).run()
    b = KvRun(3, 3, 40, 7, ("kill", "partition", "loss")).run()
    assert a.sorted_history() == b.sorted_history()
    assert a.sim.trace_digest() == b.sim.trace_digest()


def test_five_replicas():
    for seed in (1, 2, 3):
        run = KvRun(5, 4, 60, seed, ("kill", "restart", "partition", "loss")).run()
        assert run.verdict is True and run.liveness_ok, _replay(run)


# ---- durability: every acknowledged write survives whole-group crashes, exactly once ----


class _Appender:
    """A client host that appends unique tokens to a few keys, one at a time."""

    def __init__(self, node_id, channel, members, rng, done):
        self.client = KvClient(node_id, channel, members,
                               KvClientConfig(op_timeout_ms=2000), rng.fork("c"))
        self.client.on_done = done.append
        self.node_id = node_id
        self.rng = rng
        self.n = 0
        self.next_ms = 0
        self.stop = False

    def receive(self, now_ms, src, payload):
        return self.client.receive(now_ms, src, payload)

    def tick(self, now_ms):
        out = list(self.client.tick(now_ms))
        if not self.client.busy() and not self.stop and now_ms >= self.next_ms:
            self.n += 1
            key = "k%d" % self.rng.randbelow(2)
            out += self.client.submit(now_ms, "append", key, value="%s.%d;" % (self.node_id,
                                                                               self.n))
            self.next_ms = now_ms + 5 + self.rng.randbelow(20)
        return out

    def next_deadline_ms(self):
        d = self.client.next_deadline_ms()
        if not self.stop and not self.client.busy():
            return self.next_ms if d is None else min(d, self.next_ms)
        return d


def _durability_run(seed, paxos_config=None, targeted=False, new_group=False):
    """Crash all three replicas at random moments (some in the middle of a step), restart
    them, several times; then check the acknowledged appends. Returns a list of problems.
    targeted: each round arms both followers to crash right after the first effect of
    their next step (for a broken Paxos: after answering an ACCEPT, before storing it),
    pulls the leader's plug a moment later, and brings the leader back only after the
    followers have elected one of their own. new_group: the replicas first boot marked as
    a new group's (they wait an election timeout before the first election, instead of
    finding out together that they are new)."""
    members = ["n1", "n2", "n3"]
    sim = Simulator(seed, net=NetConfig(latency_ms=2, jitter_ms=1))
    factory = make_replica_factory(members, paxos_config=paxos_config)
    if new_group:
        factory = _first_boot_new(factory)
    for n in members:
        sim.add_node(n, factory)
    done = []
    clients = ["c1", "c2", "c3"]
    for c in clients:
        sim.add_node(c, lambda nid, ch, st, rng, now: _Appender(nid, ch, members, rng, done))
    rng = Prng(seed).fork("crashes")
    t = 400
    for _round in range(4):
        t += 150 + rng.randbelow(300)
        if targeted:
            sim.at(t, _strike_followers_then_leader)
            t += 900
            continue
        for n in members:
            when = t + rng.randbelow(60)
            k = rng.randbelow(4)
            if rng.randbelow(2):
                sim.at(when, lambda s, n=n, k=k: s.crash(n, after_effects=k))
            else:
                sim.at(when, lambda s, n=n: s.crash(n))
        t += 100
        sim.at(t + 60, lambda s: [s.restart(n) for n in members])
    sim.run_until(t + 100)
    for n in members:  # an armed mid-step crash that never fired: pull the plug now
        if sim.host(n) is None or sim._nodes[n].crash_after is not None:
            sim.crash(n)
            sim.restart(n)
    stop_at = t + 300
    sim.run_until(stop_at)
    for c in clients:
        sim.host(c).stop = True
    sim.run_until(stop_at + 2000)
    problems = []
    stores = {n: sim.host(n).store for n in members}
    leader = [n for n in members if sim.host(n).is_leader()]
    if not leader:
        return ["no leader at the end"]
    # replicas agree once caught up
    snaps = {n: stores[n].snapshot()[2:] for n in members}
    if snaps["n1"] != snaps["n2"] or snaps["n1"] != snaps["n3"]:
        problems.append("replicas differ")
    data = stores[leader[0]].data
    acked = [r for r in done if r["ok"] is True]
    unknown = [r for r in done if r["ok"] is None]
    for r in acked:
        count = data.get(r["key"], "").split(";").count(r["value"][:-1])
        if count != 1:
            problems.append("acked %s on %s appears %d times" % (r["value"], r["key"], count))
    for r in unknown:
        if data.get(r["key"], "").split(";").count(r["value"][:-1]) > 1:
            problems.append("unknown %s applied twice" % r["value"])
    sessions = stores[leader[0]].sessions
    for c in clients:
        mine = [r for r in acked if r["client"] == c]
        if mine and c not in sessions:
            problems.append("session of %s lost" % c)
    if len(acked) < 10:
        problems.append("only %d acknowledged writes" % len(acked))
    return problems


def _first_boot_new(factory):
    booted = set()

    def first_boot_new(node_id, channel, storage, rng, now_ms):
        if node_id not in booted:
            booted.add(node_id)
            storage = dict(storage, unsure=0)
        return factory(node_id, channel, storage, rng, now_ms)

    return first_boot_new


def _strike_followers_then_leader(sim):
    members = ["n1", "n2", "n3"]
    leaders = [n for n in members if sim.host(n) is not None and sim.host(n).is_leader()]
    if not leaders:
        return
    leader = leaders[0]
    followers = [n for n in members if n != leader]
    for f in followers:
        sim.crash(f, after_effects=1)
    t = sim.now_ms
    sim.at(t + 15, lambda s: s.crash(leader))
    sim.at(t + 30, lambda s: [s.crash(f) or s.restart(f) for f in followers])
    sim.at(t + 600, lambda s: s.restart(leader))


def test_acknowledged_writes_survive_whole_group_crashes():
    # 40 seeds: the whole group restarting with a long log not yet chosen is where a
    # candidate once never finished phase 1 (promise parts reordered): seeds 9, 21, 24, 27,
    # 32, 34 and 36 (targeted) caught it, 1 to 8 did not
    crashes_mid = 0
    for seed in range(1, 41):
        for targeted in (False, True):
            problems = _durability_run(seed, targeted=targeted)
            assert problems == [], "seed %d targeted %s: %s" % (seed, targeted, problems[:3])
            crashes_mid += 1
    assert crashes_mid == 80


# ---- the checker has teeth ---------------------------------------------------------------


def test_broken_paxos_is_caught_and_correct_one_passes():
    nemesis = ("partition", "pause", "kill", "restart")
    seeds = range(1, 21)
    caught = []
    for seed in seeds:
        good = KvRun(3, 4, 60, seed, nemesis).run()
        assert good.verdict is True, _replay(good)
        bad = KvRun(3, 4, 60, seed, nemesis,
                    paxos_config=PaxosConfig(_unsafe_skip_phase1=True)).run()
        if bad.verdict is False:
            caught.append(seed)
    assert caught, "skipping phase 1 was never caught on seeds %s" % list(seeds)


def test_a_wiped_replica_that_votes_at_once_is_caught():
    # the suite "wiped flash" passes these seeds; a replica that forgot its votes and voted
    # again at once (as every replica did before they booted unsure) failed seeds 6 and 25
    caught = []
    for seed in range(1, 31):
        bad = KvRun(3, 4, 120, seed, ("wipe", "partition"), keys=3,
                    paxos_config=PaxosConfig(_unsafe_amnesia=True)).run()
        if bad.verdict is False:
            caught.append(seed)
    assert caught, "a wiped replica voting at once was never caught"


def test_send_before_persist_loses_acknowledged_writes():
    broken = PaxosConfig(_unsafe_send_before_persist=True)
    caught = None
    # the correct Paxos passes these seeds (test above). The targeted strike lands on the
    # timing of a group whose first election waits the election timeout: a group that finds
    # out it is new elects ~200 ms earlier, and its strikes miss on 39 of these 40 seeds
    for seed in range(1, 9):
        assert not _durability_run(seed, targeted=True, new_group=True)
        if _durability_run(seed, broken, targeted=True, new_group=True):
            caught = seed
            break
    assert caught is not None, "answering before the flash write was never caught"


def test_client_sends_only_to_members():
    run = KvRun(3, 2, 10, 1).run()
    for c in ("c1", "c2"):
        eff = run.sim.host(c).client
        assert eff.stats["ok"] >= 1
    assert SEND == 1
