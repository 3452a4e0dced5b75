"""``roost node --config FILE``: run one node on CPython (a Raspberry Pi, or a laptop in an
emulated fleet). CPython-only entry point; the node itself is roost.node.nodemain.

The same config file runs on MicroPython's unix port:
``micropython -c "import roost.node.nodemain as m; m.main('FILE')"``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

DISCOVER_S = 3.0  # how long a starting node listens for the broker and its peers


def discover(cfg: dict[str, Any], log: Callable[[str], None],
             timeout_s: float = DISCOVER_S) -> list[Any]:
    """With ``"discovery": true``: advertise this node by zeroconf and fill in, from what
    answers on the LAN, the brokers (when the config names none) and the UDP addresses of
    the fleet's nodes. What the config names stays: it is the fallback when nothing answers,
    and a forged record (mDNS has no authentication) cannot take it away. -> the
    advertisements, to close when the node stops."""
    try:
        from roost.gateway import discovery
    except ImportError:  # pragma: no cover - zeroconf is a dependency
        return []
    from roost.node import nodemain

    me, fleet = cfg["node_id"], cfg.get("fleet", "default")
    port = int((cfg.get("udp") or ["0.0.0.0", 4210])[1])
    members = cfg.get("members")
    # a broker record must be signed with the fleet key before this node gives it a
    # password: mDNS has no authentication, and anyone on the LAN can answer
    password = bool(nodemain.mqtt_password(cfg))
    seen: dict[str, int] = {}
    adverts = []
    try:
        if port:  # an ephemeral port is not known before the node binds it
            adverts.append(discovery.advertise(me, fleet, port, board=cfg.get("board", "pi")))
        with ThreadPoolExecutor(2) as pool:  # both at once: one wait, not two
            brokers = None if cfg.get("brokers") else pool.submit(
                discovery.find_broker, timeout_s, fleet, expect=1, stats=seen,
                key=nodemain.fleet_key(cfg), signed_only=password)
            want = len(members) - 1 if members else None
            peers = pool.submit(discovery.browse, fleet, timeout_s, expect=want or None,
                                role="node", exclude=[me])
            found = peers.result()
            urls = brokers.result() if brokers is not None else []
    except Exception as e:  # noqa: BLE001 - whatever the LAN answers, the node starts
        log("roost: discovery by zeroconf failed (%s); the config's addresses only" % e)
        for a in adverts:
            a.close()
        return []
    if urls:
        cfg["brokers"] = urls
        log("roost: found the broker at %s (zeroconf)" % ", ".join(urls))
    skipped = [(seen.get("rx_rejected_" + k, 0), why) for k, why in (
        ("unsigned", "unsigned (this node logs in with a password: start the broker with "
                     "--plan DIR or ROOST_FLEET_KEY set)"),
        ("bad_signature", "not signed with this fleet's key"))]
    for n, why in skipped:
        if n:
            log("roost: ignored %d broker record%s %s" % (n, "" if n == 1 else "s", why))
    book = cfg.setdefault("peers", {})
    new = [p for p in found if p.id not in book and (not members or p.id in members)]
    for p in new:
        book[p.id] = [p.address, p.port]
    if new:
        log("roost: found %s (zeroconf)" % ", ".join(
            "%s at %s:%d" % (p.id, p.address, p.port) for p in new))
    return adverts


def _node_cmd(args: argparse.Namespace) -> int:
    from roost.node import nodemain

    cfg = nodemain.load_config(args.config)  # ValueError: one sentence, exit 2
    if args.storage:
        cfg["storage"] = args.storage
    nodemain.fleet_key(cfg)  # fail early, before sockets, when no key is configured
    say = lambda m: print(m, flush=True)  # noqa: E731
    adverts = discover(cfg, say) if cfg.get("discovery") else []
    try:
        return nodemain.run_node(cfg, log=say)
    finally:
        for a in adverts:  # goodbye records: the others forget this node at once
            a.close()


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
