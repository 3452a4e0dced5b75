"""Small clusters of GossipCores through the in-process pump (collected through
test_core.py; runs on MicroPython too)."""

from tests.gossip.pump import Pump


def test_cluster_join_publish_and_leave():
    p = Pump(4, seed=2)
    p.run_until(4000)
    for n in p.ids:
        assert sorted(p.view(n)) == p.ids and set(p.view(n).values()) == {"alive"}
    p.call("n03", lambda c, now: c.publish(now, [21.5, 40]))
    p.run_until(6000)
    for n in p.ids:
        assert p.cores[n].summaries()["n03"] == (1, [21.5, 40])
    p.call("n04", lambda c, now: c.leave(now))
    p.run_until(9000)
    for n in ("n01", "n02", "n03"):
        assert p.view(n)["n04"] == "left"
    assert not [e for e in p.events if e[2] == "member" and e[3][1] == "dead"]


def test_cluster_crash_detected_and_restart_comes_back_alive():
    p = Pump(4, seed=3, seeds=["n01", "n02"])
    p.run_until(4000)
    p.crash("n02")
    p.run_until(25000)
    for n in p.live():
        assert p.view(n)["n02"] == "dead", (n, p.view(n))
    p.restart("n02")
    p.run_until(35000)
    for n in p.live():
        assert p.view(n)["n02"] == "alive", (n, p.view(n))
    assert p.storage["n02"]["gossip/inc"] > 1


def test_cluster_sleeper_not_suspected_then_probed_again():
    p = Pump(4, seed=4)
    p.run_until(4000)
    p.call("n04", lambda c, now: c.sleep_until(now, now + 15000))
    p.run_until(4500)
    p.isolate("n04")  # the radio is off while it sleeps
    p.run_until(18000)
    for n in ("n01", "n02", "n03"):
        assert p.view(n)["n04"] == "sleeping"
    p.heal()
    p.run_until(25000)
    for n in p.ids:
        assert p.view(n)["n04"] == "alive"
    # a sleeper that never wakes goes through normal suspicion
    p.call("n04", lambda c, now: c.sleep_until(now, now + 3000))
    p.run_until(25500)
    p.crash("n04")
    p.run_until(50000)
    for n in ("n01", "n02", "n03"):
        assert p.view(n)["n04"] == "dead"


def test_cluster_partition_heals_to_one_view():
    p = Pump(4, seed=5, seeds=["n01", "n03"])
    p.run_until(4000)
    for a in ("n01", "n02"):
        for b in ("n03", "n04"):
            p.cut(a, b)
    p.run_until(40000)
    assert p.view("n01")["n03"] == "dead" and p.view("n03")["n01"] == "dead"
    p.heal()
    p.run_until(100000)
    for n in p.ids:
        assert set(p.view(n).values()) == {"alive"}, (n, p.view(n))
