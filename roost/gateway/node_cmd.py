"""``roost node --config FILE``: run one node on CPython (a Raspberry Pi, or a laptop in an
emulated fleet). CPython-only entry point; the node itself is roost.node.nodemain.

The same config file runs on MicroPython's unix port:
``micropython -c "import roost.node.nodemain as m; m.main('FILE')"``.
"""

from __future__ import annotations

import argparse
from typing import Any


def _node_cmd(args: argparse.Namespace) -> int:
    from roost.node import nodemain

    cfg = nodemain.load_config(args.config)  # ValueError: one sentence, exit 2
    if args.storage:
        cfg["storage"] = args.storage
    nodemain.fleet_key(cfg)  # fail early, before sockets, when no key is configured
    return nodemain.run_node(cfg, log=lambda m: print(m, flush=True))


def add_node_parser(sub: Any) -> argparse.ArgumentParser:
    """``roost node --config FILE [--storage DIR]``."""
    p = sub.add_parser("node", help="run one fleet node from a JSON config (UDP + MQTT)",
                       description="Run one node: gossip member, Paxos replica of its group "
                       "(if any), simulated or real sensors, UDP to peers and MQTT to the "
                       "broker. SIGTERM or Ctrl-C stops it cleanly; kill -9 is a pulled plug.")
    p.add_argument("--config", required=True, help="node config (JSON), see docs/fleet.md")
    p.add_argument("--storage", help="flash directory (overrides the config's storage)")
    p.set_defaults(handler=_node_cmd)
    return p
