"""``roost plan``: a real fleet written down once (the classroom's boards and Pis), so that
every node is given the same members, replica groups, broker and key. CPython-only.

A plan is a directory like an emulated fleet's: ``fleet.json`` (``"kind": "plan"``: the
node ids and their boards, the groups, the broker), ``fleet.key`` and ``mqtt.json`` (each
node's MQTT password and the admin's, for ``roost broker --plan DIR``; both mode 0600). Nothing
runs from it on this machine: ``roost flash --join-dir DIR`` writes a board's share into its
config.json, ``roost plan --dir DIR --node-config ID`` prints a Pi's node config (what
``install.sh --plan DIR`` installs), and ``roost status``, ``roost kv`` and ``roost load``
reach the running fleet through its broker. Nodes of a plan start out knowing each other by
id only (addresses on a classroom network come from DHCP): their traffic goes through the
broker, each node's inbox topic, until they learn each other's UDP addresses from the
sealed announcements they publish there (roost.node.addr_mqtt), or the plan names them
(``--addr``).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from roost.common.ids import check_id
from roost.hardware.boards import a_board, get_profile

STATE = "fleet.json"
KEY = "fleet.key"
MQTT_USERS = "mqtt.json"  # {"admin": password, "nodes": {id: password}}, mode 0600
MIN_KEY_CHARS = 16  # a fleet key given by hand (the plan makes 32 hex digits)
UDP_PORT = 4210  # a board's UDP port (nodeconfig's default), and a Pi's in its node config
SEEDS_MAX = 8  # gossip seeds a node is given (a board's config.json stays small)


class PlanError(ValueError):
    """A mistake in what the plan was asked to hold: one sentence for the user."""


def is_plan(state: dict[str, Any]) -> bool:
    return state.get("kind") == "plan"


def _parse_nodes(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        node, sep, board = item.partition(":")
        if not sep or not board:
            raise PlanError("--nodes takes ID:BOARD items, e.g. n01:pi-zero-2w,n03:esp32-wrover "
                            "(got %r)" % item)
        try:
            check_id(node, "node id")
            get_profile(board)
        except ValueError as e:
            raise PlanError(str(e)) from None
        if any(n == node for n, _ in out):
            raise PlanError("node %s is named twice in --nodes" % node)
        out.append((node, board))
    if not out:
        raise PlanError("--nodes names no node")
    return out


def _parse_addrs(text: str, ids: list[str]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        node, _, where = item.partition("=")
        host, _, port = where.partition(":")
        if node not in ids or not host:
            raise PlanError("--addr takes ID=HOST[:PORT] items for nodes of the plan (got %r)"
                            % item)
        if node in out:
            raise PlanError("--addr gives %s twice" % node)
        try:
            out[node] = [host, int(port) if port else UDP_PORT]
        except ValueError:
            raise PlanError("--addr %r: the port must be a number" % item) from None
        if not 1 <= out[node][1] <= 65535:
            raise PlanError("--addr %r: the port must be 1 to 65535" % item)
    return out


def _check_broker_host(url: str) -> None:
    """The broker's host must resolve here (a placeholder such as GATEWAY-IP copied from the
    docs would leave every node unable to connect)."""
    import socket

    from roost.node.mqtt_codec import parse_url

    try:
        host, port = parse_url(url.replace("mqtts://", "mqtt://", 1))[:2]
    except ValueError:
        raise PlanError("the broker %s is not mqtt://HOST:PORT" % url) from None
    if not 1 <= port <= 65535:
        raise PlanError("the broker %s has port %d: a port is 1 to 65535" % (url, port))
    try:
        socket.getaddrinfo(host, port)
    except (ValueError, OSError):
        raise PlanError("the broker in %s does not resolve to an address: give the gateway's "
                        "address (hostname -I on the gateway prints it)" % url) from None


def make(d: str | Path, fleet: str, broker: str, nodes: list[tuple[str, str]],
         groups: int = 1, replicas: int = 3, addrs: dict[str, list[Any]] | None = None,
         key: str | None = None) -> dict[str, Any]:
    """Write the plan in d and return it. Replica groups take the nodes whose board profile
    lists the paxos role, in the order given, ``replicas`` to a group; the rest are gossip
    members. The key is new unless given (or ROOST_FLEET_KEY is set)."""
    check_id(fleet, "fleet")
    if not broker.startswith(("mqtt://", "mqtts://")):
        raise PlanError("--broker must be mqtt://HOST:PORT (the gateway's broker), got %r"
                        % broker)
    _check_broker_host(broker)
    if replicas < 1 or replicas % 2 == 0:
        raise PlanError("--replicas must be odd (3 or 5): a group needs a majority")
    able = [n for n, b in nodes if "paxos" in get_profile(b).roles]
    if groups < 0 or groups * replicas > len(able):
        raise PlanError("%d group(s) of %d replicas need %d nodes whose boards hold a replica; "
                        "the plan has %d (%s)" % (groups, replicas, groups * replicas, len(able),
                                                  ", ".join(able) or "none"))
    d = Path(d).resolve()
    if d.exists() and not d.is_dir():
        raise PlanError("--dir %s is a file: give a directory for the plan" % d)
    if (d / STATE).exists():
        raise PlanError("%s already holds a fleet; give another --dir" % d)
    where = "given" if key else "in ROOST_FLEET_KEY"
    key = key or os.environ.get("ROOST_FLEET_KEY") or secrets.token_hex(16)
    if len(key) < MIN_KEY_CHARS:
        raise PlanError("the fleet key %s has only %d of the %d characters it needs to keep out "
                        "a guess: leave it out and the plan makes one" % (where, len(key),
                                                                          MIN_KEY_CHARS))
    d.mkdir(parents=True, exist_ok=True)
    kp = d / KEY
    kp.touch(mode=0o600)
    kp.write_text(key + "\n")
    ids = [n for n, _ in nodes]
    # the broker's users: a node may publish only under its own topics (roost broker --plan)
    users = {"admin": secrets.token_hex(12), "nodes": {n: secrets.token_hex(12) for n in ids}}
    up = d / MQTT_USERS
    up.touch(mode=0o600)
    up.write_text(json.dumps(users, indent=1, sort_keys=True) + "\n")
    state = {
        "kind": "plan", "dir": str(d), "fleet": fleet, "broker": {"url": broker},
        "ids": ids,
        "nodes": {n: {"board": b, "interp": "cpython" if get_profile(b).interpreter == "cpython"
                      else "board", "port": UDP_PORT} for n, b in nodes},
        "groups": [["g%d" % g, able[g * replicas:(g + 1) * replicas]] for g in range(groups)],
        "addrs": addrs or {},
    }
    (d / STATE).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    return state


def mqtt_users(state: dict[str, Any]) -> dict[str, Any] | None:
    """The plan's MQTT users ({"admin", "nodes"}), or None (an emulated fleet; a plan made
    before plans had them, whose broker takes anyone)."""
    if not is_plan(state):
        return None
    try:
        users = json.loads((Path(state["dir"]) / MQTT_USERS).read_text())
    except (OSError, ValueError):
        return None
    ok = (isinstance(users, dict) and isinstance(users.get("admin"), str)
          and isinstance(users.get("nodes"), dict))
    return users if ok else None


def admin_url(state: dict[str, Any]) -> str:
    """The fleet's broker URL as a client on this machine uses it: with the admin's
    credentials when the plan has users (roost status, kv, load, ota publish)."""
    from roost.node.runtime import with_credentials

    url = state["broker"]["url"]
    users = mqtt_users(state)
    return with_credentials(url, "admin", users["admin"]) if users else url


def mqtt_password(state: dict[str, Any], node_id: str) -> str | None:
    """Node node_id's MQTT password in the plan (None when the plan has no users)."""
    users = mqtt_users(state)
    return users["nodes"].get(node_id) if users else None


def board_of(state: dict[str, Any], node_id: str) -> str:
    """The board the plan gives node_id (PlanError for a node it does not hold)."""
    if node_id not in state["ids"]:
        raise PlanError("%s is not in the plan in %s (its nodes: %s)"
                        % (node_id, state["dir"], ", ".join(state["ids"])))
    return state["nodes"][node_id]["board"]


def shared(state: dict[str, Any], node_id: str) -> dict[str, Any]:
    """What every node of the plan is told: members, seeds, groups and known addresses."""
    board_of(state, node_id)  # PlanError for a node the plan does not hold
    out: dict[str, Any] = {"members": list(state["ids"]),
                           "seeds": [n for n in state["ids"] if n != node_id][:SEEDS_MAX],
                           "groups": state["groups"], "preset": "wifi"}
    peers = {n: a for n, a in sorted(state.get("addrs", {}).items()) if n != node_id}
    if peers:
        out["peers"] = peers
    from roost.emulator.fleet import lead_preference

    prefer = lead_preference(state, node_id)
    if prefer:  # the group's Pis lead while one is up: a board leader slows every write
        out["paxos"] = {"prefer": prefer}
    return out


def node_config(state: dict[str, Any], node_id: str, key_file: str,
                storage: str = "/var/lib/roost/data") -> dict[str, Any]:
    """A Pi's ``roost node`` config (``/etc/roost/node.json``)."""
    board = board_of(state, node_id)
    common = shared(state, node_id)
    if state["nodes"][node_id]["interp"] != "cpython":
        raise PlanError("%s is %s board, not a Pi: flash it with roost flash --join-dir %s "
                        "--node-id %s" % (node_id, a_board(board), state["dir"], node_id))
    cfg = {"node_id": node_id, "fleet": state["fleet"],
           "board": board, "brokers": [state["broker"]["url"]],
           "key_file": key_file, "udp": ["0.0.0.0", UDP_PORT], "sensors": "real",
           "storage": storage}
    if mqtt_password(state, node_id):  # beside the key (install.sh: roost plan --mqtt-password)
        cfg["mqtt_password_file"] = str(Path(key_file).parent / "mqtt.password")
    cfg.update(common)
    return cfg


# ---------------------------------------------------------------- command line


def _plan_cmd(args: argparse.Namespace) -> int:
    try:
        if args.node_config or args.mqtt_password:
            from roost.emulator.fleet import load_state

            state = load_state(args.dir)
            if not is_plan(state):
                raise PlanError("%s holds an emulated fleet, not a plan" % args.dir)
            if args.mqtt_password:  # for install.sh, into a file only root and roost read
                board_of(state, args.mqtt_password)  # a node the plan does not hold
                pw = mqtt_password(state, args.mqtt_password)
                if pw is None:
                    raise PlanError("the plan in %s has no MQTT passwords" % args.dir)
                print(pw)
                return 0
            print(json.dumps(node_config(state, args.node_config, args.key_file), indent=1,
                             sort_keys=True))
            return 0
        if not args.fleet or not args.broker or not args.nodes:
            raise PlanError("a new plan needs --fleet, --broker and --nodes")
        nodes = _parse_nodes(args.nodes)
        state = make(args.dir, args.fleet, args.broker, nodes, args.groups, args.replicas,
                     _parse_addrs(args.addr, [n for n, _ in nodes]))
    except ValueError as e:  # PlanError, FleetError, a bad id
        print("roost plan: %s" % e, file=sys.stderr)
        return 2
    print("fleet %s planned in %s (key in %s, keep it off screens)"
          % (state["fleet"], state["dir"], Path(state["dir"]) / KEY))
    for n in state["ids"]:
        g = [name for name, members in state["groups"] if n in members]
        print("  %-5s %-13s %s" % (n, state["nodes"][n]["board"],
                                   "replica of " + g[0] if g else "gossip member"))
    print("broker: roost broker --host 0.0.0.0 --plan %s   (on the gateway: one MQTT user "
          "per node)" % args.dir)
    print("boards: roost flash --join-dir %s --node-id ID --port PORT --wifi SSID" % args.dir)
    print("Pis:    sudo sh roost/firmware/pi/install.sh --plan %s --node-id ID" % args.dir)
    print("then:   roost status --dir %s" % args.dir)
    return 0


def add_plan_parser(sub: Any) -> argparse.ArgumentParser:
    """``roost plan --dir DIR --fleet F --broker URL --nodes ID:BOARD,...``."""
    p = sub.add_parser("plan", help="write down a real fleet (boards and Pis) once",
                       description="Write a real fleet's plan: its nodes and their boards, "
                       "replica groups, broker and a new fleet key, in DIR. 'roost flash "
                       "--join-dir DIR' and 'install.sh --plan DIR' give each node its share; "
                       "'roost status|kv|load --dir DIR' reach the fleet through its broker.")
    p.add_argument("--dir", required=True, help="where the plan goes (fleet.json, fleet.key)")
    p.add_argument("--fleet", help="fleet name (MQTT topics roost/<fleet>/...)")
    p.add_argument("--broker", help="mqtt://GATEWAY-IP:1883, the broker every node uses")
    p.add_argument("--nodes", help="ID:BOARD,... e.g. n01:pi-zero-2w,n03:esp32-wrover")
    p.add_argument("--groups", type=int, default=1, help="replica groups (default 1)")
    p.add_argument("--replicas", type=int, default=3, help="replicas per group (default 3)")
    p.add_argument("--addr", default="", help="ID=HOST[:PORT],... fixed UDP addresses, if "
                   "the network gives them (otherwise node traffic goes through the broker)")
    p.add_argument("--node-config", metavar="ID",
                   help="print node ID's 'roost node' config from the plan (for a Pi)")
    p.add_argument("--key-file", default="/etc/roost/fleet.key",
                   help="with --node-config: where the Pi keeps the fleet key (its MQTT "
                   "password goes beside it, in mqtt.password)")
    p.add_argument("--mqtt-password", metavar="ID",
                   help="print node ID's MQTT password (install.sh puts it in a file)")
    p.set_defaults(handler=_plan_cmd)
    return p
