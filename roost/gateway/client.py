"""Clients of a running fleet: ``roost kv``, ``roost status``, ``roost load``. CPython-only.

``roost kv put|get|append|cas --dir DIR ...`` speaks the key-value client protocol (kinds
64/65, the same sealed envelopes as the nodes) over UDP straight to the replicas, reusing
the sans-I/O ``KvClient`` core driven by a small asyncio loop: it finds the leader, re-sends
the same (client, seq) on retries, and reports an unknown outcome rather than guessing.
A key belongs to group ``bucket(key, number of groups)``.

``roost status --dir DIR`` reads what every node reports (DIR/nodes/<id>/status.json,
written each second; the same status is retained on MQTT under roost/<fleet>/node/<id>/state):
members and their state in each view, groups, leaders, commit indexes, lag, counters.

``roost load --dir DIR --clients C --duration S --history FILE`` runs C closed-loop
clients, records every operation in the shared history format (shared/spec/history.md)
and prints throughput and latency.

DIR may also hold a real fleet's plan (``roost plan``): then the clients reach the replicas
through the fleet's broker (each node's inbox topic, a client's own inbox for the replies)
and ``roost status`` reads the nodes' retained status and state topics there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from roost.common.channel import Channel
from roost.common.prng import Prng, seed_problem
from roost.common.stablehash import bucket
from roost.emulator.fleet import (
    FleetError,
    heard_text,
    load_state,
    no_majority_text,
    node_pid,
    not_voting,
    read_status,
    refuse_if_stopped,
)
from roost.node.effects import SEND
from roost.node.kv import KvConfig
from roost.node.kvclient import KvClient, KvClientConfig
from roost.node.runtime import topic

OPS = ("get", "put", "append", "cas")
DIR_HELP = "the fleet's directory: roost emulate up's, or a real fleet's plan (roost plan)"


class Fleet:
    """What a client needs to know about the fleet in a directory."""

    def __init__(self, d: str | Path) -> None:
        from roost.gateway.plan import admin_url, is_plan

        self.state = load_state(d)
        refuse_if_stopped(d, self.state)  # its replicas are down: no answer would come
        self.dir = Path(self.state["dir"])
        self.key = (self.dir / "fleet.key").read_text().strip()
        self.groups = [(g[0], sorted(g[1])) for g in self.state["groups"]]
        nodes = self.state["nodes"]
        # a real fleet's plan: the replicas are reached through the broker
        self.via_broker = is_plan(self.state)
        self.name = self.state["fleet"]
        # the URL to connect with (a plan's admin credentials); broker_shown for messages
        self.broker_shown = (self.state.get("broker") or {}).get("url")
        self.broker_url = admin_url(self.state) if self.broker_shown else None
        self.addr = {} if self.via_broker else {
            n: (nodes[n].get("addr", "127.0.0.1"), nodes[n]["port"]) for n in self.state["ids"]}
        # a fleet in network namespaces (emulate up --netns) is reached from its "gw" one
        # a fleet in network namespaces, or a plan's on a real network
        self.bind = "0.0.0.0" if self.state.get("netns") or self.via_broker else "127.0.0.1"
        ns = (self.state.get("netns") or {}).get("ns", {}).get("gw")
        if ns and not _in_netns(ns):
            raise FleetError("the fleet in %s runs in network namespaces: run the client in "
                             "its gw namespace: ip netns exec %s roost ..." % (self.dir, ns))
        if not self.groups:
            raise FleetError("the fleet in %s has no replica groups (emulate up --groups 1)"
                             % self.dir)

    def group_of(self, key: str) -> int:
        return bucket(key, len(self.groups))


def _in_netns(name: str) -> bool:
    """True when this process runs in the named network namespace (``ip netns``)."""
    try:
        return os.stat("/proc/self/ns/net").st_ino == os.stat("/run/netns/" + name).st_ino
    except OSError:
        return False


class _Clock:
    """One clock per run (history times in seconds from the start of the run)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)


class UdpKvClient:
    """One client (one operation at a time) against every group of a fleet, over UDP."""

    def __init__(self, fleet: Fleet, client_id: str, clock: _Clock,
                 config: KvClientConfig | None = None, seed: int | None = None,
                 incarnation: int | None = None, counter: list[int] | None = None) -> None:
        self.fleet = fleet
        self.id = client_id
        self.clock = clock
        # a new incarnation per run (seconds): the replicas' replay windows and sessions
        # see a fresh, higher sequence space even if a client id is reused
        # (a load's clients share one, and one counter of operations: see KvClient)
        inc = int(time.time()) if incarnation is None else incarnation
        self.channel = Channel(client_id, fleet.key, incarnation=inc)
        rng = Prng(seed if seed is not None else int.from_bytes(os.urandom(4), "big"))
        self.cores = [KvClient(client_id, self.channel, members, config=config,
                               rng=rng.fork(name), now_ms=clock.ms(), counter=counter)
                      for name, members in fleet.groups]
        self.owner = {}
        self._addr_stamps: dict[str, tuple[int, int]] = {}  # node -> newest announcement taken
        for i, (_name, members) in enumerate(fleet.groups):
            for m in members:
                self.owner[m] = i
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((fleet.bind, 0))
        self.sock.setblocking(False)
        self.link: Any = None  # a plan's fleet: the broker (PahoClient), see open()
        self._rx: deque[bytes] = deque()
        self._fut: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.history: list[dict[str, Any]] = []
        self.lat_ms: list[float] = []  # latency of each ok operation (perf_counter, ms)
        self._cur: KvClient | None = None  # run_ops: the core running an operation
        self._t0 = 0.0  # and when that operation started (perf_counter)
        self._next_op: Any = None
        self._finished: Any = None

    async def open(self, timeout_s: float = 10.0) -> None:
        """A plan's fleet: connect to its broker and subscribe to this client's inbox (the
        replicas answer there). Nothing to do for an emulated fleet (UDP)."""
        if not self.fleet.via_broker or self.link is not None:
            return
        from roost.gateway.mqtt_paho import PahoClient
        from roost.node.mqtt import MQTTConfig

        self.link = PahoClient(self.id, [self.fleet.broker_url], on_message=self._on_mqtt,
                               config=MQTTConfig(clean_session=True, keepalive_s=10))
        self.link.subscribe(topic(self.fleet.name, self.id, "inbox"), 0)
        # the replicas' UDP addresses, which they announce there (roost.node.addr_mqtt):
        # requests to a replica whose address is known go straight to it
        self.link.subscribe(topic(self.fleet.name, "+", "udp"), 0)
        self.link.start()
        t_end = time.monotonic() + timeout_s
        while not self.link.connected:
            if time.monotonic() > t_end:
                raise FleetError("cannot reach the fleet's broker %s" % self.fleet.broker_shown)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # the subscription is in place before the first request

    async def aclose(self) -> None:
        if self.link is not None:
            await self.link.stop(1000)
            self.link = None
        self.close()

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
        self._loop = None
        self.sock.close()

    def _on_mqtt(self, t: str, payload: bytes, retained: bool) -> None:
        if t.endswith("/udp"):
            self._learn(t, payload)
            return
        if retained or len(self._rx) >= 256:
            return
        self._rx.append(payload)
        self._woken()

    def _learn(self, t: str, payload: bytes) -> None:
        from roost.node.addr_mqtt import newer, parse

        node = t.split("/")[-2]
        got, stamp, _why = parse(payload, self.channel.mac, node)
        if got is not None and node in self.owner:  # a replica, whose announcement is sealed
            if newer(self._addr_stamps, node, stamp) < 1:  # one published again
                return
            try:
                a = socket.getaddrinfo(got[0], got[1], socket.AF_INET, socket.SOCK_DGRAM)
            except OSError:
                return
            self.fleet.addr[node] = a[0][-1]

    def _readable(self) -> None:
        while len(self._rx) < 256:
            try:
                self._rx.append(self.sock.recv(2048))
            except OSError:  # BlockingIOError: drained; others (ICMP errors): the core retries
                break
        self._woken()

    def _woken(self) -> None:
        if self._next_op is not None:  # run_ops: the reply may start the next operation
            self._dispatch()
            if self._cur is not None and not self._cur.busy():
                self._start_next()
            return
        f = self._fut
        if f is not None and not f.done():
            f.set_result(None)

    async def _wait(self, seconds: float) -> None:
        """Until a datagram arrives or seconds pass (a future and a timer: no task per wait)."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            loop.add_reader(self.sock.fileno(), self._readable)
        fut = loop.create_future()
        self._fut = fut
        h = loop.call_later(seconds, _wake, fut)
        try:
            await fut
        finally:
            h.cancel()
            self._fut = None

    def _do(self, effects: list) -> None:
        for e in effects or ():
            if e[0] == SEND and self.link is not None and e[1] not in self.fleet.addr:
                self.link.publish(topic(self.fleet.name, e[1], "inbox"), e[2], 0)
            elif e[0] == SEND:
                a = self.fleet.addr.get(e[1])
                if a is not None:
                    try:
                        self.sock.sendto(e[2], a)
                    except OSError:
                        pass  # the core retries

    async def op(self, op: str, key: str, value: str | None = None, old: str | None = None,
                 new: str | None = None) -> dict[str, Any]:
        """Run one operation to its end; returns its history record."""
        done: list[dict[str, Any]] = []
        core = self._begin(done.append, op, key, value, old, new)
        while core.busy():
            if not self._rx:
                d = core.next_deadline_ms()
                wait = max(0, d - self.clock.ms()) / 1000 if d is not None else 0.05
                await self._wait(wait)
            self._dispatch()
            if core.busy():
                self._tick_due(core)
        self._record(done[-1])
        return done[-1]

    def _begin(self, on_done: Any, op: str, key: str, value: str | None, old: str | None,
               new: str | None) -> KvClient:
        """Submit an operation to the core of its key's group; -> that core."""
        core = self.cores[self.fleet.group_of(key)]
        core.on_done = on_done
        self._t0 = time.perf_counter()
        self._do(core.submit(self.clock.ms(), op, key, value=value, old=old, new=new))
        return core

    def _tick_due(self, core: KvClient) -> None:
        """Retry or give up the core's operation when its deadline has passed."""
        now = self.clock.ms()
        d = core.next_deadline_ms()
        if d is not None and d <= now:
            self._do(core.tick(now))

    def _dispatch(self) -> None:
        """Every received datagram to the core of the group its sender serves."""
        while self._rx:
            env = self.channel.open(self._rx.popleft())
            i = self.owner.get(env.sender) if env is not None else None
            if i is not None:
                self._do(self.cores[i].handle(self.clock.ms(), env))

    # ---- back to back from callbacks (roost load): no future, timer or task per operation

    def run_ops(self, loop: asyncio.AbstractEventLoop, next_op: Any, finished: Any) -> None:
        """Run operations one after another until ``next_op()`` returns None, then call
        ``finished(self)``. ``next_op()`` gives ``(op, key, value, old, new)``, or a
        ``time.monotonic()`` time to be asked again at (a paced client). A reply that ends
        an operation starts the next one in the same callback; retries and give-ups are
        driven by ``tick()``, which the caller runs every few milliseconds."""
        self._next_op = next_op
        self._finished = finished
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)
        self._start_next()

    def _start_next(self) -> None:
        while True:
            nxt = self._next_op()
            if nxt is None:
                self._cur = None
                self._finished(self)
                return
            if isinstance(nxt, float):
                assert self._loop is not None
                self._cur = None  # nothing running: tick() and replies start nothing
                self._loop.call_at(nxt, self._start_next)  # the loop's clock is monotonic
                return
            core = self._cur = self._begin(self._record, *nxt)
            if core.busy():
                return
            # refused at once (a value too large): recorded; go on with the next

    def _record(self, rec: dict[str, Any]) -> None:
        if rec["ok"] is True:
            self.lat_ms.append((time.perf_counter() - self._t0) * 1000)
        self.history.append(rec)

    def tick(self) -> None:
        """Retry or give up the running operation when its core's deadline has passed."""
        core = self._cur
        if core is None:
            return
        self._tick_due(core)
        if not core.busy():
            self._start_next()


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


def _client_id(prefix: str, i: int = 0) -> str:
    """A client id no other client will draw: a replica answers a request whose (client id,
    seq) it has applied from that client's session, and clients started in the same second
    share their first seq. With 24 random bits, two of the 120 gets a test ran in one
    second drew the same id, and one get was answered with another key's value."""
    return "%s%s-%d" % (prefix, os.urandom(8).hex(), i)


# ---------------------------------------------------------------- roost kv


def kv_once(d: str | Path, op: str, key: str, value: str | None = None, old: str | None = None,
            new: str | None = None, timeout_ms: int = 5000) -> dict[str, Any]:
    fleet = Fleet(d)
    cfg = KvClientConfig(op_timeout_ms=timeout_ms)

    async def go() -> dict[str, Any]:
        c = UdpKvClient(fleet, _client_id("k"), _Clock(), cfg)
        try:
            await c.open()
            return await c.op(op, key, value, old, new)
        finally:
            await c.aclose()

    return asyncio.run(go())


# what the store's definite refusals mean (roost kv, roost load, the demo's narration)
REFUSED_WHY = {
    "full": "the store holds its %d keys already: a new key is refused" % KvConfig.max_keys,
    "too_large": "a value may have at most %d characters" % KvConfig.max_value_len,
}


def _check_sizes(key: str, *values: str | None) -> None:
    """The store's limits, said before sending (ValueError: one sentence): a long key was
    refused in the transport's terms, a long value as a bare too_large."""
    if len(key) > KvConfig.max_key_len:
        raise ValueError("the key has %d characters; a key may have at most %d"
                         % (len(key), KvConfig.max_key_len))
    for v in values:
        if v is not None and len(v) > KvConfig.max_value_len:
            raise ValueError("a value has %d characters; a value may have at most %d"
                             % (len(v), KvConfig.max_value_len))


def _kv_cmd(args: argparse.Namespace) -> int:
    op = args.kv_command
    old = new = value = None
    if op in ("put", "append"):
        value = args.value
    elif op == "cas":
        old = None if args.absent else args.old
        new = args.new
        if args.absent and args.old is not None:
            raise ValueError("cas --absent takes NEW only (it swaps only if the key is absent): "
                             "leave out OLD, or --absent")
        if old is None and not args.absent:
            raise ValueError("cas needs OLD NEW, or --absent NEW to swap only if the key is absent")
    if not 0.001 <= args.timeout <= 3600:  # nan fails this too
        raise ValueError("--timeout must be 0.001 to 3600 seconds")
    _check_sizes(args.key, value, old, new)
    rec = kv_once(args.dir, op, args.key, value, old, new, int(args.timeout * 1000))
    ok = rec["ok"]
    # 4: answered, but the key is absent ("" is a value) or nothing was swapped
    absent = ok and op == "get" and rec.get("output") is None
    unswapped = ok and op == "cas" and not rec.get("output")
    code = 4 if absent or unswapped else 0 if ok else 3 if ok is None else 1
    if args.json:
        print(json.dumps(rec, sort_keys=True))
    elif ok is None and op == "get":  # a read changes nothing: only the answer is missing
        print("unknown: no answer within %.1f s (no leader yet, or a majority of the replicas "
              "is down: try again)" % args.timeout)
    elif ok is None:
        print("unknown: no answer within %.1f s (the %s may or may not have happened)"
              % (args.timeout, op))
    elif ok is False:
        why = rec.get("error")
        print("error: %s%s" % (why, " (%s)" % REFUSED_WHY[why] if why in REFUSED_WHY else ""),
              file=sys.stderr)
    elif absent:
        # stdout stays empty: a value may read "(absent)", and a script tells by the code
        print("(absent: the key holds no value)", file=sys.stderr)
    elif op == "get":
        print(rec["output"])
    elif op == "cas":
        print("swapped" if not unswapped else "not swapped (%s)" % (
            "the key holds a value" if args.absent else "the key did not hold %r" % old))
    else:
        print("ok")
    return code


# ---------------------------------------------------------------- roost load


def _percentile(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    i = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[i]


def summarize(history: list[dict[str, Any]], duration_s: float,
              lat: list[float] | None = None) -> dict[str, Any]:
    ok = [r for r in history if r["ok"] is True]
    writes = [r for r in ok if r["op"] != "get"]
    if lat is None:
        lat = [(r["return"] - r["call"]) * 1000 for r in ok]
    return {
        "ops": len(history), "ok": len(ok), "failed": sum(1 for r in history if r["ok"] is False),
        "unknown": sum(1 for r in history if r["ok"] is None), "errors": _errors(history),
        "duration_s": round(duration_s, 3),
        "ops_per_s": round(len(ok) / duration_s, 1) if duration_s > 0 else 0.0,
        "writes_per_s": round(len(writes) / duration_s, 1) if duration_s > 0 else 0.0,
        "latency_ms": {"p50": _r(_percentile(lat, 50)), "p90": _r(_percentile(lat, 90)),
                       "p99": _r(_percentile(lat, 99)), "max": _r(max(lat) if lat else None)},
    }


def _errors(history: list[dict[str, Any]]) -> dict[str, int]:
    """Definite failures by the store's reason ("too_large": a value reached its limit)."""
    out: dict[str, int] = {}
    for r in history:
        if r["ok"] is False:
            why = str(r.get("error") or "error")
            out[why] = out.get(why, 0) + 1
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def run_load(d: str | Path, clients: int, duration_s: float, history: str | None = None,
             keys: int = 8, mix: str = "put:3,get:3,append:2,cas:1", seed: int = 0,
             value_size: int = 0, timeout_ms: int = 3000,
             key_prefix: str = "k", rate: float = 0) -> dict[str, Any]:
    """C closed-loop clients for duration_s seconds, each starting an operation as soon as
    its last one ended or, with ``rate`` (operations/s, all clients together), at most at
    its share of that pace (a sensor fleet's load, not a saturating one). Returns the
    summary (and the history in ``summary["history"]`` unless written to a file)."""
    if clients < 1:
        raise ValueError("--clients must be at least 1")
    if not 0 < duration_s < math.inf:
        raise ValueError("--duration must be a positive number of seconds")
    if not 0 <= rate < math.inf:
        raise ValueError("--rate must be a number, not negative (0: as fast as the fleet "
                         "answers)")
    if keys < 1:
        raise ValueError("--keys must be at least 1")
    if seed_problem(seed):
        raise ValueError(seed_problem(seed))
    if value_size + 24 > KvConfig.max_value_len:  # a put's tag takes up to ~24 characters
        raise ValueError("--value-size must be at most %d: a value may have %d characters, "
                         "and a put's own tag takes some" % (KvConfig.max_value_len - 24,
                                                             KvConfig.max_value_len))
    gap = clients / rate if rate else 0.0  # seconds between one client's operations
    weights = _parse_mix(mix)
    fleet = Fleet(d)
    rng = Prng(seed or int.from_bytes(os.urandom(4), "big"))
    clock = _Clock()
    cfg = KvClientConfig(op_timeout_ms=timeout_ms)
    keynames = ["%s%d" % (key_prefix, i) for i in range(keys)]
    pad = "x" * max(0, value_size)

    def plan(c: UdpKvClient, i: int, r: Prng, t_end: float) -> Any:
        """Client i's next operation (see UdpKvClient.run_ops)."""
        st = {"n": 0, "due": time.monotonic() + gap * i / clients}  # paced: staggered

        def next_op() -> Any:
            now = time.monotonic()
            if now >= t_end:
                return None
            if gap:
                if st["due"] > now:
                    return st["due"]
                st["due"] = max(st["due"] + gap, now - gap)  # no burst to catch up
            st["n"] += 1
            op = _pick(r, weights)
            key = keynames[r.randbelow(len(keynames))]
            tag = "%d.%d;" % (i, st["n"])  # short: values are at most 256 characters
            if op == "get":
                return "get", key, None, None, None
            if op == "put":
                return "put", key, tag + pad, None, None
            if op == "append":  # never overwritten: every ack stays checkable
                return "append", key, tag, None, None
            last = [h for h in c.history if h["key"] == key and h["op"] == "get" and h["ok"]]
            return "cas", key, None, (last[-1].get("output") if last else None), tag

        return next_op

    made: list[UdpKvClient] = []  # the clients, for a history when stopped by Ctrl-C

    async def go() -> list[UdpKvClient]:
        loop = asyncio.get_running_loop()
        inc, count = int(time.time()), [0]
        cs = [UdpKvClient(fleet, _client_id("L", i), clock, cfg, rng.next32(), inc, count)
              for i in range(clients)]
        made.extend(cs)
        all_done = loop.create_future()
        running = set(range(clients))

        def finished_one(i: int) -> Any:
            def finished(_c: UdpKvClient) -> None:
                running.discard(i)
                if not running and not all_done.done():
                    all_done.set_result(None)
            return finished

        def tick() -> None:  # retries and give-ups of every client, every 5 ms
            for c in cs:
                c.tick()
            if not all_done.done():
                loop.call_later(0.005, tick)

        try:
            for c in cs:
                await c.open()
            t_end = time.monotonic() + duration_s
            for i, c in enumerate(cs):
                c.run_ops(loop, plan(c, i, rng.fork(c.id), t_end), finished_one(i))
            tick()
            await all_done
        finally:
            for c in cs:
                await c.aclose()
        return cs

    t0 = time.monotonic()
    interrupted = False
    try:
        cs = asyncio.run(go())
    except KeyboardInterrupt:  # Ctrl-C or a kill: the history so far is still written
        interrupted = True
        cs = made
        for c in cs:
            for core in c.cores:
                core.abandon(clock.ms())  # in flight: may still take effect
    elapsed = time.monotonic() - t0
    hist = [rec for c in cs for rec in c.history]
    hist.sort(key=lambda r: r["call"])
    summary = summarize(hist, elapsed, [x for c in cs for x in c.lat_ms])
    summary["clients"] = clients
    if history:
        with open(history, "w") as f:
            for rec in hist:
                f.write(json.dumps(rec, sort_keys=True) + "\n")
        summary["history"] = history
    else:
        summary["history"] = hist
    if interrupted:
        if history:
            print("roost load: stopped; the history so far (%d operations, those in flight "
                  "as unknown) is in %s" % (len(hist), history), file=sys.stderr, flush=True)
        raise KeyboardInterrupt
    return summary


def _parse_mix(mix: str) -> list[tuple[str, int]]:
    out = []
    for part in mix.split(","):
        name, _, w = part.partition(":")
        name = name.strip()
        if name not in OPS:
            raise ValueError("--mix names ops get, put, append, cas (got %r)" % name)
        try:
            weight = int(w or "1")
        except ValueError:
            raise ValueError("--mix weights are whole numbers, like put:3,get:1") from None
        if weight < 0:
            raise ValueError("--mix weights must not be negative")
        out.append((name, weight))
    if not sum(w for _, w in out):
        raise ValueError("--mix needs at least one op with a positive weight")
    return out


def _pick(r: Prng, weights: list[tuple[str, int]]) -> str:
    x = r.randbelow(sum(w for _, w in weights))
    for name, w in weights:
        if x < w:
            return name
        x -= w
    return weights[-1][0]


def _check_writable(path: str) -> None:
    """ValueError (one sentence) unless a file can be written at path; leaves none behind."""
    p = Path(path)
    existed = p.exists()
    if p.is_dir():
        raise ValueError("--history %s is a directory: give a file name" % path)
    try:
        with open(p, "a"):
            pass
    except OSError as e:
        raise ValueError("cannot write the history to %s (%s)" % (path, e.strerror)) from None
    if not existed:
        p.unlink()


def _load_cmd(args: argparse.Namespace) -> int:
    import signal

    from roost.emulator.lifeline import raise_keyboard_interrupt

    # a kill (a CI step's timeout) stops it as Ctrl-C does: the history so far is written
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    if args.history:
        _check_writable(args.history)  # before the load, not after it (its history lost)
        # the history is judged from empty keys: values left by an earlier load would make
        # a correct store look not linearizable (its first reads see writes it never saw)
        for i in range(min(3, args.keys)):
            key = "%s%d" % (args.key_prefix, i)
            r = kv_once(args.dir, "get", key, timeout_ms=2000)
            if r.get("ok") is True and r.get("output") is not None:
                print("roost load: key %s already holds a value (an earlier load?); a history "
                      "is checked from empty keys: pass a new --key-prefix (say --key-prefix "
                      "run2-)" % key, file=sys.stderr)
                return 2
    sessions = KvConfig().max_sessions
    if args.clients > sessions:  # said before the load: its unknowns are what this costs
        print("roost load: note: %d clients, and the store keeps %d client sessions: they "
              "evict each other, and an operation retried after its session was evicted "
              "ends unknown (docs/kv.md)" % (args.clients, sessions), file=sys.stderr)
    s = run_load(args.dir, args.clients, args.duration, args.history, args.keys, args.mix,
                 args.seed, args.value_size, key_prefix=args.key_prefix, rate=args.rate)
    if not args.history:
        s.pop("history", None)
    if args.json:
        print(json.dumps(s, sort_keys=True))
    else:
        lat = s["latency_ms"]
        print("%d clients, %.1f s: %d ops ok (%.1f ops/s, %.1f writes/s), %d failed, %d unknown"
              % (args.clients, s["duration_s"], s["ok"], s["ops_per_s"], s["writes_per_s"],
                 s["failed"], s["unknown"]))
        if lat["p50"] is None:
            print("latency: no operation was answered")
        else:
            print("latency ms: p50 %s  p90 %s  p99 %s  max %s"
                  % (lat["p50"], lat["p90"], lat["p99"], lat["max"]))
        if s["errors"]:
            print("failed by reason: %s" % ", ".join(
                "%s %d" % kv for kv in sorted(s["errors"].items())))
        if s["errors"].get("too_large"):
            print("(too_large: %s, and appends reached it; use more --keys or fewer appends "
                  "in --mix)" % REFUSED_WHY["too_large"])
        if s["errors"].get("full"):
            print("(full: %s; use fewer --keys, or a --key-prefix a load used before)"
                  % REFUSED_WHY["full"])
        if args.history:
            print("history: %s (check it: roost check %s)" % (args.history, args.history))
    if not s["ok"]:  # a pipeline must not go green on a load that did nothing
        if s["failed"]:
            print("roost load: no operation succeeded: the store refused every one (see the "
                  "reasons above)", file=sys.stderr)
        else:
            print("roost load: no operation succeeded: is the fleet in %s up? (roost emulate "
                  "status --dir %s)" % (args.dir, args.dir), file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- roost status


def reports_through_broker(state: dict[str, Any],
                            wait_s: float = 3.0) -> dict[str, tuple[str, Any]]:
    """A plan's fleet: {node: (online|offline|unknown, its retained state or None)} from the
    retained status (set by each node's Last Will) and state topics on its broker."""
    from roost.gateway.mqtt_paho import PahoClient
    from roost.gateway.plan import admin_url
    from roost.node.mqtt import MQTTConfig

    prefix = "roost/%s/node/" % state["fleet"]
    words: dict[str, str] = {}
    states: dict[str, Any] = {}

    def on_message(t: str, payload: bytes, retained: bool) -> None:
        node, _, leaf = t[len(prefix):].partition("/")
        if leaf == "status":
            words[node] = payload.decode("utf-8", "replace")
        elif leaf == "state":
            try:
                doc = json.loads(payload)
            except ValueError:
                return
            if isinstance(doc, dict):  # anyone on the broker may publish there
                states[node] = doc

    async def go() -> None:
        c = PahoClient("status-%s" % os.urandom(8).hex(), [admin_url(state)],
                       on_message=on_message, config=MQTTConfig(clean_session=True))
        c.subscribe(prefix + "+/status", 1)
        c.subscribe(prefix + "+/state", 1)
        c.start()
        t_end = time.monotonic() + wait_s
        try:  # retained messages come at once; the wait bounds a slow or absent broker
            while time.monotonic() < t_end:
                if c.connected and all(n in words and (words[n] != "online" or n in states)
                                       for n in state["ids"]):
                    break
                await asyncio.sleep(0.05)
            if not c.connected:
                raise FleetError("cannot reach the fleet's broker %s" % state["broker"]["url"])
        finally:
            await c.stop(500)

    asyncio.run(go())
    out = {}
    for n in state["ids"]:
        w = words.get(n, "unknown")
        out[n] = (w, states.get(n) if w == "online" else None)
    return out


TWIN_RECENT_S = 30  # roost status names a board with a node's id heard this recently
# a member whose report is of a life this young, while views hold another life of it dead,
# is rejoining (its report may also be a dead node's last, retained: older lives stay dead)
REJOIN_S = 60

# what each reason a node drops a datagram for means, for the line under roost status
REJECTED_WHY = {
    "stale": "sent by an earlier boot of a node (a restarted or replaced board's datagrams "
             "still on their way, or an old board switched on again)",
    "replay": "copies of datagrams already taken",
    "auth": "not signed with this fleet's key (another fleet, or a forger)",
    "malformed": "not a roost message",
    "oversized": "larger than a datagram may be",
    "version": "from another version of roost's wire format",
    "misdirected": "addressed to another node",
    "unknown_kind": "of a kind nothing on the node takes",
    "unknown_sender": "from a node outside the fleet",
    "addr": "address announcements not taken: older than one already taken (usual after "
            "a board is replaced or restarted) or not signed with this fleet's key",
    "mqtt_malformed": "MQTT packets through the broker that were not MQTT",
    "mqtt_oversize": "MQTT messages larger than the node takes, skipped unread",
    "old_ballot": "Paxos messages of a leader or candidate that a later election passed "
                  "(usual after a leader change or a partition)",
    "full": "accepts a board's Paxos log had no room for until its next snapshot (the "
            "leader sends them again)",
}


def _dict(x: Any) -> dict:
    """x when it is a dict, else {} (a report's parts come from JSON anyone may publish)."""
    return x if isinstance(x, dict) else {}


def fleet_status(d: str | Path) -> dict[str, Any]:
    """Members and their state, groups, leaders, commit indexes, lag, counters."""
    from roost.gateway.plan import is_plan

    state = load_state(d)
    planned = is_plan(state)
    remote = reports_through_broker(state) if planned else {}
    now = time.time()
    nodes: dict[str, Any] = {}
    views: dict[str, dict[str, str]] = {}
    boots: dict[str, dict[str, int]] = {}  # the gossip incarnation each view holds
    for n in state["ids"]:
        info = state["nodes"][n]
        if planned:  # a real node: alive while its broker status says online
            word, st = remote[n]
            alive = word == "online"
            process = {"online": "running", "offline": "down"}.get(word, "unknown")
        else:
            alive = node_pid(state, n) is not None
            st = read_status(state, n) if alive else None
            process = "running" if alive else "down"
        entry: dict[str, Any] = {"process": process,
                                 "interp": info["interp"], "port": info["port"],
                                 "pid": info.get("pid") if alive else None}
        if st is not None:
            # a board's clock may not be set: a real node's report is as fresh as its broker
            # status says
            age = 0.0 if planned else now - st.get("wall", 0)
            host = _dict(st.get("host"))
            stats = _dict(st.get("stats"))
            rej = {k[len("rx_rejected_"):]: v for k, v in sorted(stats.items())
                   if k.startswith("rx_rejected_") and isinstance(v, int) and v}
            for k, v in _dict(st.get("mqtt")).items():  # dropped by the MQTT client itself
                if k in ("rx_malformed", "rx_oversize") and isinstance(v, int) and v:
                    rej["mqtt_" + k[3:]] = v
            entry.update({
                "age_s": round(age, 1), "incarnation": st.get("incarnation"),
                "uptime_s": round(st.get("uptime_ms", 0) / 1000, 1),
                "joined": st.get("joined"), "blocked": st.get("blocked", []),
                "loss_ppm": st.get("loss_ppm", 0), "mqtt": st.get("mqtt"),
                "mem_free": st.get("mem_free"), "summary": host.get("summary"),
                "board": _dict(st.get("board")) or None,  # its slot, version, OTA counters
                "twin": st.get("twin"),  # another board heard announcing this node's id
                "counters": {"rx": stats.get("rx", 0), "tx": stats.get("tx", 0),
                             "udp_rx": stats.get("udp_rx", 0),
                             "udp_rx_oversize": stats.get("udp_rx_oversize", 0),
                             "fault_dropped": stats.get("fault_dropped", 0),
                             "host_errors": stats.get("host_errors", 0),
                             "rx_rejected": sum(rej.values()), "persists": stats.get("persists", 0),
                             "mqtt_tx": stats.get("mqtt_tx", 0)},
                "rejected": rej, "group": _dict(host.get("group")) or None,
            })
            rows = [m for m in host.get("members") or [] if isinstance(m, list) and len(m) > 1]
            views[n] = {m[0]: m[1] for m in rows}
            boots[n] = {m[0]: m[2] for m in rows if len(m) > 2 and isinstance(m[2], int)}
            entry["sees_alive"] = sorted(m for m in views[n] if views[n][m] == "alive")
            if age > 5:
                entry["process"] = "stalled"
            elif st.get("out_of_memory"):
                entry["process"] = "out-of-memory"  # stopped taking part (docs/fleet.md)
        nodes[n] = entry
    for n, seen in boots.items():  # a view whose dead mark is on another life of the member
        for m, inc in seen.items():  # than the one it reports (a board replaced by flash
            own = boots.get(m, {}).get(m)  # --replace, or restarted): not heard of it yet,
            young = (nodes.get(m) or {}).get("uptime_s")  # if that life began just now
            if views[n][m] == "dead" and own is not None and inc != own \
                    and isinstance(young, (int, float)) and young < REJOIN_S:
                views[n][m] = "rejoining"
    members = {}
    for m in state["ids"]:
        seen = {v[m] for v in views.values() if m in v}
        counts = {s: sum(1 for v in views.values() if v.get(m) == s) for s in sorted(seen)}
        members[m] = {"views": counts, "state": max(counts, key=lambda s: counts[s])
                      if counts else "unknown"}
        if planned and nodes[m]["process"] == "running" and members[m]["state"] == "dead":
            # its retained "online" outlived it: it died while the broker was away, so no
            # Last Will was there to say so; the fleet's views know
            nodes[m]["process"] = "down"
    groups = []
    for name, gm in state["groups"]:
        commits = {}
        leaders = []
        for m in gm:
            g = (nodes[m].get("group") or {}) if nodes[m].get("process") == "running" else {}
            if g:
                commits[m] = g.get("commit", 0)
                if g.get("is_leader"):
                    leaders.append(m)
        commits = {m: c for m, c in commits.items() if isinstance(c, int)}
        top = max(commits.values()) if commits else 0
        lag: dict[str, int | None] = {m: top - c for m, c in sorted(commits.items())}
        heard = (nodes[leaders[0]].get("group") or {}).get("follower_commits") \
            if len(leaders) == 1 else None
        if not (isinstance(heard, dict) and isinstance(commits.get(leaders[0]), int)):
            heard = None
        if heard:  # one report's figures: the others' reports may be seconds older (a plan)
            for m in lag:  # (None: the leader has not heard this one yet)
                c = heard.get(m)
                lag[m] = 0 if m == leaders[0] else max(0, commits[leaders[0]] - c) \
                    if isinstance(c, int) else None
        groups.append({"name": name, "members": gm, "leaders": leaders,
                       "leader": leaders[0] if len(leaders) == 1 else None,
                       "commit": commits, "lag": lag,
                       "lag_from": "leader" if heard else "reports"})
    return {"fleet": state["fleet"], "dir": state["dir"], "broker": state.get("broker"),
            "nodes": nodes, "members": members, "groups": groups, "gateway": _gateway(state),
            "stopped_at": state.get("stopped_at")}


def _gateway(state: dict[str, Any]) -> dict[str, Any] | None:
    """The gateway process and what it sees through the broker (None: the fleet has none)."""
    from roost.emulator.fleet import gateway_running
    from roost.gateway.gateway import read_view

    if not state.get("gateway"):
        return None
    running = gateway_running(state)
    view = read_view(state["dir"]) if running else None
    out: dict[str, Any] = {"process": "running" if running else "down", "view": view}
    if view is not None:
        out["online"] = sorted(n for n, v in view["nodes"].items() if v["mqtt"] == "online")
        out["offline"] = sorted(n for n, v in view["nodes"].items() if v["mqtt"] == "offline")
    return out


def _pairs(d: dict[str, Any]) -> str:
    """{'n01': 0, 'n02': None} -> 'n01 0, n02 ?' (for people, not for Python)."""
    return ", ".join("%s %s" % (k, "?" if v is None else v) for k, v in sorted(d.items()))


def _status_cmd(args: argparse.Namespace) -> int:
    st = fleet_status(args.dir)
    if args.json:
        print(json.dumps(st, sort_keys=True))
        return 0
    print("fleet %s in %s, %s" % (st["fleet"], st["dir"], "broker " + st["broker"]["url"]
                                   if (st["broker"] or {}).get("url") else
                                   "no broker (its nodes speak UDP only)"))
    if st.get("stopped_at"):
        print("stopped by roost emulate down at %s: none of its processes runs (roost emulate "
              "up --dir %s starts it again)"
              % (time.strftime("%H:%M:%S", time.localtime(st["stopped_at"])), args.dir))
    # "boot": the incarnation, counted from the node's clock (seconds since 2020)
    print("%-5s %-11s %-8s %-9s %-9s %-20s %s" % ("node", "interp", "process", "boot", "members",
                                                   "role", "rx/tx/rejected"))
    old = []  # nodes whose role is from a report they no longer renew (stalled, ...)
    for n in sorted(st["nodes"]):
        v = st["nodes"][n]
        g = v.get("group") or {}
        role = ""
        if g:
            role = "%s %s%s c%s" % (g.get("name"), "LEADER" if g.get("is_leader") else
                                    "rebuilding" if g.get("unsure") else "replica",
                                    "" if v["process"] == "running" else "?", g.get("commit"))
            if v["process"] != "running":
                old.append("%s (%s)" % (n, v["process"]))
        c = v.get("counters") or {}
        alive = len(v.get("sees_alive", []))
        print("%-5s %-11s %-8s %-9s %-9s %-20s %s/%s/%s" % (
            n, v["interp"], v["process"], v.get("incarnation", "-"),
            "%d/%d" % (alive, len(st["members"])) if v.get("counters") else "-", role,
            c.get("rx", "-"), c.get("tx", "-"), c.get("rx_rejected", "-")))
    if old:
        print("?: the role a node last reported; it reports no more: " + ", ".join(old))
    faults = faults_text(st["nodes"])
    if faults:
        print("faults in force (roost chaos; roost chaos heal lifts them): " + faults)
    why: dict[str, int] = {}
    for v in st["nodes"].values():
        for k, c in (v.get("rejected") or {}).items():
            why[k] = why.get(k, 0) + c
    if why:  # dropped and counted, nothing applied; say what each count is
        print("rejected, all nodes since they started: " + "; ".join(
            "%s %d (%s)" % (k, why[k], REJECTED_WHY.get(k, "see docs/fleet.md"))
            for k in sorted(why, key=lambda k: -why[k])))
    for n in sorted(st["nodes"]):
        g = st["nodes"][n].get("group") or {}
        if g.get("unsure") and g.get("heard"):  # why it has not rebuilt yet
            print("%s rebuilding: %s" % (n, heard_text(g["heard"], len(g.get("members", [])) - 1)))
    for n in sorted(st["nodes"]):
        tw = st["nodes"][n].get("twin")
        if isinstance(tw, dict) and isinstance(tw.get("ago_s"), int) \
                and tw["ago_s"] < TWIN_RECENT_S:
            print("%s: another board also called itself %s (at %s, %ss before this report): %s"
                  % (n, n, tw.get("at"), tw["ago_s"],
                     "the one flashed earlier stops taking part; switch it off, or give each "
                     "board its own --node-id" if st["nodes"][n]["interp"] == "board" else
                     "switch the old one off, or give each its own node id"))
    for n in sorted(st["nodes"]):  # boards: the code they run, and their last update
        b = st["nodes"][n].get("board")
        if b:
            ota = {k[len("rx_rejected_"):] if k.startswith("rx_rejected_") else k: v
                   for k, v in sorted(_dict(b.get("ota")).items()) if v}
            # after a rollback the state keeps the refused update's serial (so it is not
            # taken again) and "rollback" in place of a version it no longer knows
            back = b.get("version") == "rollback"
            print("board %s: slot %s, version %s (%s %s)%s%s" % (
                n, b.get("slot"), "before the update it rolled back" if back
                else b.get("version") or "as flashed",
                "that update's serial" if back else "serial", b.get("serial"),
                ", on trial until it joins" if b.get("trial", -1) >= 0 else "",
                "; updates: " + ", ".join("%s %s" % kv for kv in ota.items()) if ota else ""))
    for g in st["groups"]:
        if g["lag_from"] == "leader":  # the rows' commits come from reports of other ages
            unheard = None in g["lag"].values()
            print("group %s: leader %s at commit %s, lag %s (slots behind, as the leader last "
                  "heard each replica%s)" % (g["name"], g["leader"], g["commit"][g["leader"]],
                                             _pairs(g["lag"]),
                                             "; ?: not heard since it leads" if unheard
                                             else ""))
        else:
            who = g["leader"] or "none"
            if len(g["leaders"]) > 1:  # one of them was paused or cut off, and not yet
                # marked so: the rows show the role each last reported
                who = "not clear (%s each report leading)" % " and ".join(g["leaders"])
            print("group %s: leader %s, commit %s, lag %s" % (
                g["name"], who, _pairs(g["commit"]) or "none reported",
                _pairs(g["lag"]) or "-"))
        out = []  # members that do not vote now: a leader without a majority commits nothing
        for m in g["members"]:
            no = not_voting(m, st["nodes"][m]["process"], st["nodes"][m].get("group"))
            if no:
                out.append(no)
        stop = no_majority_text(g["name"], g["members"], out)
        if stop:
            print(stop)
    down = [m for m in st["members"] if st["members"][m]["state"] != "alive"]
    if down:
        print("not alive in the views: " + ", ".join(
            "%s (%s)" % (m, st["members"][m]["state"]) for m in down))
    gw = st["gateway"]
    if gw is not None and gw["view"] is None:
        print("gateway: %s, no fresh view" % gw["process"])
    elif gw is not None:
        readings = sum(v["readings"] for v in gw["view"]["nodes"].values())
        ours = st["nodes"]  # an earlier fleet's nodes on the same broker are not this one's
        online = [n for n in gw["online"] if n in ours]
        print("gateway (through the broker%s): online %s; offline %s; %d readings" % (
            "" if gw["view"]["broker_connected"] else ", now disconnected",
            ", ".join(online) or "none",
            ", ".join(n for n in gw["offline"] if n in ours) or "none", readings))
        gone = [n for n in online if ours[n]["process"] == "down"]
        if gone:  # its retained "online" outlived it
            print("gateway: %s 'online' at the broker, yet down here: a node that dies while "
                  "the broker is away leaves no Last Will to say so" % ", ".join(gone))
    return 0


def faults_text(nodes: dict[str, Any]) -> str:
    """The fault switch's cuts and losses the running nodes report, in words ("" for none):
    'n01,n02 | n03,n04,n05' for a partition, 'n03 cut from n01' for a one-way cut, 'n02
    loses 50%' (a partition's majority side otherwise showed only as 'dead' in the views)."""
    sides: dict[tuple[str, ...], list[str]] = {}
    lossy = []
    for n in sorted(nodes):
        v = nodes[n]
        if v.get("process") != "running":
            continue
        blocked = v.get("blocked") or []
        if blocked:
            sides.setdefault(tuple(sorted(blocked)), []).append(n)
        if v.get("loss_ppm"):
            lossy.append("%s loses %d%% of its datagrams" % (n, round(v["loss_ppm"] / 1e4)))
    parts, done = [], set()
    for cut, side in sorted(sides.items(), key=lambda kv: kv[1]):
        if tuple(side) in done:
            continue
        if sides.get(tuple(side)) == list(cut):  # the other side is cut from this one
            parts.append("%s | %s" % (",".join(side), ",".join(cut)))
            done.add(cut)
        else:
            parts.append("%s cut from %s" % (",".join(side), ",".join(cut)))
    return "; ".join(parts + lossy)


# ---------------------------------------------------------------- parsers


def add_kv_parser(sub: Any) -> argparse.ArgumentParser:
    """``roost kv put|get|append|cas --dir DIR ...``."""
    p = sub.add_parser("kv", help="read and write the fleet's replicated key-value store")
    ks = p.add_subparsers(dest="kv_command", metavar="OP")
    ks.required = True

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dir", required=True, help=DIR_HELP)
        q.add_argument("--timeout", type=float, default=5.0, help="seconds before 'unknown'")
        q.add_argument("--json", action="store_true", help="print the history record")
        q.set_defaults(handler=_kv_cmd)

    g = ks.add_parser("get", help="read a key")
    g.add_argument("key")
    common(g)
    for name in ("put", "append"):
        q = ks.add_parser(name, help="%s a value" % ("write" if name == "put" else "append to"))
        q.add_argument("key")
        q.add_argument("value")
        common(q)
    c = ks.add_parser("cas", help="compare and swap: OLD NEW (or --absent NEW)")
    c.add_argument("key")
    c.add_argument("old", nargs="?")
    c.add_argument("new")
    c.add_argument("--absent", action="store_true", help="swap only if the key is absent")
    common(c)
    return p


def add_status_parser(sub: Any) -> argparse.ArgumentParser:
    """``roost status --dir DIR [--json]``."""
    p = sub.add_parser("status", help="members, groups, leaders, commit indexes, counters")
    p.add_argument("--dir", required=True, help=DIR_HELP)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_status_cmd)
    return p


def add_load_parser(sub: Any) -> argparse.ArgumentParser:
    """``roost load --dir DIR --clients C --duration S --history FILE``."""
    p = sub.add_parser("load", help="closed-loop (or paced) load on the key-value store, "
                       "with a history")
    p.add_argument("--dir", required=True, help=DIR_HELP)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--duration", type=float, default=10.0, help="seconds")
    p.add_argument("--history", help="write the history (JSON lines) here")
    p.add_argument("--keys", type=int, default=8, help="distinct keys")
    p.add_argument("--key-prefix", default="k", help="keys are PREFIX0, PREFIX1, ...")
    p.add_argument("--mix", default="put:3,get:3,append:2,cas:1", help="op weights")
    p.add_argument("--value-size", type=int, default=0, help="padding bytes per put value")
    p.add_argument("--seed", type=int, default=0, help="op choice seed (0: random)")
    p.add_argument("--rate", type=float, default=0,
                   help="operations/s in all (0: each client as fast as the fleet answers)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_load_cmd)
    return p
