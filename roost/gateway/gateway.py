"""``roost gateway``: the fleet seen through the MQTT broker. CPython-only.

The gateway subscribes to every node's retained status (``online``, or ``offline`` from
its Last Will when a plug is pulled) and sensor data under ``roost/<fleet>/node/``, and
writes what it sees to ``DIR/gateway.json`` once a second, where ``roost status`` shows
it beside the nodes' own reports. It holds no replicated state: the fleet keeps gossiping
and the store keeps answering when the gateway's plug is pulled. (Shard configuration and
MapReduce coordination will run here too.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from roost.common.ids import check_id

GATEWAY_FILE = "gateway.json"


class FleetView:
    """What the broker says about each node: pure state, fed (wall time, topic, payload)."""

    def __init__(self, fleet: str) -> None:
        self.prefix = "roost/%s/node/" % fleet
        self.nodes: dict[str, dict[str, Any]] = {}
        self.stats = {"messages": 0, "readings": 0, "ignored": 0, "malformed": 0}

    MAX_NODES = 1024  # anyone who may publish can invent node ids: the view stays bounded
    MAX_READING = 16384  # bytes: a node's reading is a few hundred
    MAX_DEPTH = 8  # levels of nesting a reading may have (a node's has two)

    def _node(self, node_id: str) -> dict[str, Any] | None:
        n = self.nodes.get(node_id)
        if n is None:
            try:
                check_id(node_id)
            except ValueError:
                self.stats["malformed"] += 1
                return None
            if len(self.nodes) >= self.MAX_NODES:
                self.stats["ignored"] += 1
                return None
            n = self.nodes[node_id] = {"mqtt": None, "since": None, "readings": 0,
                                       "last_reading": None, "last_reading_at": None}
        return n

    def on_message(self, now: float, topic: str, payload: bytes) -> None:
        self.stats["messages"] += 1
        if not topic.startswith(self.prefix):
            self.stats["ignored"] += 1
            return
        node_id, _, leaf = topic[len(self.prefix):].partition("/")
        if not node_id or leaf not in ("status", "data"):
            self.stats["ignored"] += 1
            return
        if leaf == "status":
            word = payload.decode("utf-8", "replace")
            if word not in ("online", "offline"):
                self.stats["malformed"] += 1
                return
            n = self._node(node_id)
            if n is not None and n["mqtt"] != word:
                n["mqtt"], n["since"] = word, now
            return
        try:
            reading = json.loads(payload) if len(payload) <= self.MAX_READING else None
        except (ValueError, RecursionError):
            reading = None
        if not isinstance(reading, dict) or _deeper_than(reading, self.MAX_DEPTH):
            self.stats["malformed"] += 1  # kept, it could not be written out (RecursionError)
            return
        n = self._node(node_id)
        if n is None:
            return
        n["readings"] += 1
        n["last_reading"], n["last_reading_at"] = reading, now
        self.stats["readings"] += 1

    def to_json(self, now: float, connected: bool) -> dict[str, Any]:
        nodes = {}
        for k in sorted(self.nodes):
            n = dict(self.nodes[k])
            at = n.pop("last_reading_at")
            n["last_reading_age_s"] = round(now - at, 1) if at is not None else None
            nodes[k] = n
        return {"wall": now, "pid": os.getpid(), "broker_connected": connected,
                "stats": dict(self.stats), "nodes": nodes}


def _deeper_than(obj: Any, limit: int) -> bool:
    """True when obj nests lists or objects more than limit levels deep (no recursion)."""
    level = [obj]
    for _ in range(limit + 1):
        level = [c for o in level if isinstance(o, (dict, list))
                 for c in (o.values() if isinstance(o, dict) else o)]
        if not level:
            return False
    return True


def read_view(d: str | Path, fresh_s: float = 5.0) -> dict[str, Any] | None:
    """The gateway's latest view of the fleet in d, or None when it is missing or stale."""
    try:
        v = json.loads((Path(d) / GATEWAY_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(v, dict) or time.time() - v.get("wall", 0) > fresh_s:
        return None
    return v


def _write(d: Path, doc: dict[str, Any]) -> None:
    tmp = d / (GATEWAY_FILE + ".tmp")
    tmp.write_text(json.dumps(doc, sort_keys=True))
    os.replace(tmp, d / GATEWAY_FILE)


async def serve(d: Path, url: str, fleet: str, stop: asyncio.Event) -> FleetView:
    """Watch the broker at url until stop is set; the view goes to d/gateway.json."""
    from roost.gateway.mqtt_paho import PahoClient
    from roost.node.mqtt import MQTTConfig

    view = FleetView(fleet)
    c = PahoClient("gateway-%s-%d" % (fleet, os.getpid()), [url],
                   on_message=lambda t, p, r: view.on_message(time.time(), t, p),
                   config=MQTTConfig(clean_session=True, keepalive_s=10,
                                     backoff_max_ms=2000))
    c.subscribe("roost/%s/node/+/status" % fleet, 1)
    c.subscribe("roost/%s/node/+/data" % fleet, 0)
    c.start()
    try:
        while not stop.is_set():
            _write(d, view.to_json(time.time(), c.connected))
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass
    finally:
        await c.stop(1000)
        _write(d, view.to_json(time.time(), False))
    return view


def run(d: str | Path) -> int:
    """Run the gateway of the emulated fleet in d until SIGTERM or Ctrl-C."""
    from roost.emulator.fleet import load_state

    d = Path(d).resolve()
    state = load_state(d)
    b = state.get("broker") or {}
    if not b.get("url"):
        raise ValueError("the fleet in %s has no MQTT broker for a gateway to watch" % d)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print("roost gateway: watching %s for fleet %s; view in %s"
              % (b["url"], state["fleet"], d / GATEWAY_FILE), flush=True)
        await serve(d, b["url"], state["fleet"], stop)

    asyncio.run(main())
    return 0


def _gateway_cmd(args: argparse.Namespace) -> int:
    return run(args.dir)


def add_gateway_parser(sub: Any) -> argparse.ArgumentParser:
    """``roost gateway --dir DIR``."""
    p = sub.add_parser("gateway", help="watch a fleet through its MQTT broker",
                       description="Subscribe to every node's status (online, or offline "
                       "from its Last Will) and sensor data, and write the view to "
                       "DIR/gateway.json each second ('roost status' shows it). 'roost "
                       "emulate up' starts one; SIGTERM or Ctrl-C stops it.")
    p.add_argument("--dir", required=True,
                   help="the fleet directory (roost emulate up --dir, or roost plan --dir)")
    p.set_defaults(handler=_gateway_cmd)
    return p
