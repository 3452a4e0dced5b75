"""The emulated fleet's node configurations, without starting a process."""

import json
from pathlib import Path

from roost.emulator import fleet
from roost.gateway.cli import build_parser
from roost.node.gossip import GossipConfig
from roost.node.nodemain import _configs
from roost.node.paxos import PaxosConfig


def _state(tmp_path):
    ids = ["n01", "n02", "n03"]
    nodes = {n: {"dir": str(tmp_path / n), "port": 47101 + i, "interp": "cpython"}
             for i, n in enumerate(ids)}
    return {"ids": ids, "nodes": nodes, "fleet": "emu", "broker": None,
            "groups": [["g0", ids]]}


def test_emulate_up_preset_gives_every_node_those_timers(tmp_path):
    """`roost emulate up --preset wifi`: every node runs the wifi timers (a big fleet on a
    small machine); without it, the LAN ones."""
    args = build_parser().parse_args(["emulate", "up", "--preset", "wifi", "--dir", "x"])
    assert args.preset == "wifi"
    assert build_parser().parse_args(["emulate", "up", "--dir", "x"]).preset == "lan"
    for preset, gossip, paxos in (("wifi", GossipConfig.wifi(), PaxosConfig.wifi()),
                                  ("lan", GossipConfig.lan(), PaxosConfig.lan())):
        state = _state(tmp_path / preset)
        fleet.write_configs(tmp_path / preset, state, {"preset": preset})
        for n in state["ids"]:
            cfg = json.loads(Path(state["nodes"][n]["config"]).read_text())
            assert cfg["preset"] == preset
            _members, gcfg, _h, group, pcfg, _k = _configs(cfg)
            assert gcfg.probe_interval_ms == gossip.probe_interval_ms
            assert group and pcfg.election_timeout_min_ms == paxos.election_timeout_min_ms
    assert GossipConfig.wifi().probe_interval_ms != GossipConfig.lan().probe_interval_ms
