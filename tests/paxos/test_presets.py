"""Timer and memory presets: each is valid, and the ESP32 preset keeps the log window short."""

from roost.node.paxos import PaxosConfig
from tests.paxos.pump import Cluster

IDS = ["n1", "n2", "n3"]


def test_presets_are_valid_and_share_the_window():
    lan, wifi, esp32 = PaxosConfig.lan(), PaxosConfig.wifi(), PaxosConfig.esp32()
    assert lan.election_timeout_max_ms < wifi.election_timeout_min_ms
    assert esp32.window == lan.window == wifi.window  # one group may mix boards and Pis
    assert esp32.snapshot_every < wifi.snapshot_every < lan.snapshot_every


def test_esp32_preset_bounds_the_log_over_1000_commands():
    cfg = PaxosConfig.esp32()
    cl = Cluster(IDS, config=cfg, check=False)
    assert cl.wait_leader() is not None
    sent = rounds = max_log = 0
    while sent < 1000 and rounds < 20000:
        rounds += 1
        leader = cl.leader()
        if leader is None:
            cl.advance(100)
            continue
        for _ in range(8):
            if sent < 1000 and cl.propose(leader, sent):
                sent += 1
        cl.deliver()
        cl.advance(20)
        max_log = max(max_log, max(len(cl.core(n).log) for n in IDS))
    cl.advance(3000)
    assert sent == 1000
    assert all(cl.core(n).applied_index == 1000 for n in IDS)
    assert max_log <= cfg.snapshot_every + cfg.window + 2, max_log
