"""The deterministic simulator: virtual time, a network model, crashes and partitions.

It runs any sans-I/O core. The simulator owns the clock, the links, the disks (a durable
dict per node) and the only random source (a ``Prng`` from the seed), so a run is a pure
function of its seed and options: the same seed gives the same trace, byte for byte, and
``trace_digest()`` proves it.

A node's host is built by a factory ``factory(node_id, channel, storage, rng, now_ms)``
at start and at every restart; ``storage`` is a copy of what its PERSIST effects wrote
before the crash. Effects run in order; a crash in the middle of a step
(``crash(node, after_effects=k)``) runs only the first k of them.
"""

from __future__ import annotations

import hashlib
import heapq
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from roost.common.channel import Channel
from roost.common.config import apply_overrides
from roost.common.prng import Prng
from roost.node.effects import APPLY, EVENT, PERSIST, SEND

_DELIVER = 0
_TICK = 1
_AT = 2

Effect = tuple
Factory = Callable[[str, Channel, dict, Prng, int], Any]



# senders a simulated node's replay window remembers: as many as gossip's default member
# view (1,024), so a 1,000-node run neither evicts nor weakens replay protection
REPLAY_SENDERS = 1024

class NetConfig:
    """The network model of every link (one-way, per message)."""

    latency_ms = 2  # one-way base latency: a switched LAN or loopback between processes
    jitter_ms = 0  # uniform extra delay in [0, jitter_ms]
    loss = 0.0  # probability a message is lost
    dup = 0.0  # probability a message is delivered twice (the copy a little later)
    reorder = 0.0  # probability a message is held back by up to reorder_ms (overtaken)
    reorder_ms = 20  # how far a reordered message may be held back
    capacity = 1000  # messages in flight per link; more are dropped (a full queue)

    def __init__(self, **overrides: Any) -> None:
        apply_overrides(self, NetConfig, overrides, "network")
        for name in ("loss", "dup", "reorder"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError("network option %s must be between 0 and 1" % name)
        for name in ("latency_ms", "jitter_ms", "reorder_ms"):
            if getattr(self, name) < 0:
                raise ValueError("network option %s must not be negative" % name)
        if self.capacity < 1:
            raise ValueError("network option capacity must be at least 1")

    def copy(self, **overrides: Any) -> NetConfig:
        fields = {
            n: getattr(self, n)
            for n in ("latency_ms", "jitter_ms", "loss", "dup", "reorder", "reorder_ms", "capacity")
        }
        fields.update(overrides)
        return NetConfig(**fields)


class _Node:
    __slots__ = (
        "node_id",
        "factory",
        "host",
        "alive",
        "paused",
        "boot",
        "storage",
        "tick_gen",
        "tick_at",
        "held",
        "crash_after",
        "skew_ms",
        "drift_ppm",
    )

    def __init__(self, node_id: str, factory: Factory, skew_ms: int, drift_ppm: int) -> None:
        self.node_id = node_id
        self.factory = factory
        self.host: Any = None
        self.alive = False
        self.paused = False
        self.boot = 0
        self.storage: dict = {}
        self.tick_gen = 0
        self.tick_at: int | None = None
        self.held: deque = deque()
        self.crash_after: int | None = None
        self.skew_ms = skew_ms
        self.drift_ppm = drift_ppm


class Simulator:
    """Virtual time and a virtual network around sans-I/O hosts."""

    max_held = 10000  # messages a paused node's socket buffer holds before dropping

    def __init__(
        self,
        seed: int,
        net: NetConfig | None = None,
        key: str | bytes = "roost-sim-key",
        keep_trace: bool = False,
    ) -> None:
        self.seed = seed
        self.net = net or NetConfig()
        self.key = key
        self.now_ms = 0
        self.rng = Prng(seed)
        self._net_rng = self.rng.fork("network")
        self._node_rng = self.rng.fork("nodes")
        self._heap: list = []
        self._seq = 0
        self._nodes: dict[str, _Node] = {}
        self._order: list[str] = []
        self._group: dict[str, int] = {}
        self._isolated: set[str] = set()
        self._links: dict[tuple[str, str], NetConfig] = {}
        self._inflight: dict[tuple[str, str], int] = {}
        self._observers: list[Callable[[int, str, Effect], None]] = []
        self._digest = hashlib.sha256()
        self.trace: list[str] | None = [] if keep_trace else None
        self.stats = {
            "sent": 0,
            "delivered": 0,
            "duplicated": 0,
            "dropped_loss": 0,
            "dropped_partition": 0,
            "dropped_dead": 0,
            "dropped_capacity": 0,
            "dropped_paused": 0,
            "delivered_together": 0,  # delivered in a host's hold() after the first
            "ticks": 0,
            "crashes": 0,
            "restarts": 0,
        }
        self.events: list[tuple[int, str, str]] = []  # (t, what, detail): faults for reports

    # ---- set-up -------------------------------------------------------------------------

    def add_node(
        self, node_id: str, factory: Factory, skew_ms: int = 0, drift_ppm: int = 0, start=True
    ) -> None:
        """Add a node; it boots now unless start=False (then ``restart`` boots it)."""
        if node_id in self._nodes:
            raise ValueError("node %s already exists" % node_id)
        node = _Node(node_id, factory, skew_ms, drift_ppm)
        self._nodes[node_id] = node
        self._order.append(node_id)
        self._order.sort()
        if start:
            self._boot(node)

    def nodes(self) -> list[str]:
        return list(self._order)

    def alive(self, node_id: str) -> bool:
        return self._nodes[node_id].alive

    def host(self, node_id: str) -> Any:
        node = self._nodes[node_id]
        return node.host if node.alive else None

    @property
    def storage(self) -> dict[str, dict]:
        return {n: self._nodes[n].storage for n in self._order}

    def observe(self, fn: Callable[[int, str, Effect], None]) -> None:
        """fn(now_ms, node_id, effect) for every PERSIST, APPLY and EVENT effect."""
        self._observers.append(fn)

    def local_time(self, node_id: str, t: int | None = None) -> int:
        node = self._nodes[node_id]
        t = self.now_ms if t is None else t
        return t + node.skew_ms + (t * node.drift_ppm) // 1_000_000

    def _global_time(self, node: _Node, local: int) -> int:
        base = local - node.skew_ms
        if node.drift_ppm:
            base = -((-base * 1_000_000) // (1_000_000 + node.drift_ppm))
        return base

    # ---- the event loop ---------------------------------------------------------------

    def _push(self, t: int, kind: int, node_id: str, a: Any = None, b: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, node_id, a, b))

    def at(self, t_ms: int, fn: Callable[[Simulator], Any]) -> None:
        """Run fn(sim) at virtual time t_ms (now, if t_ms is in the past)."""
        self._push(max(t_ms, self.now_ms), _AT, "", fn)

    def run_until(self, t_end: int) -> None:
        heap = self._heap
        while heap and heap[0][0] <= t_end:
            t, _seq, kind, node_id, a, b = heapq.heappop(heap)
            self.now_ms = t
            if kind == _DELIVER:
                self._deliver_together(node_id, a, b)
            elif kind == _TICK:
                self._tick(node_id, a)
            else:
                a(self)
        if t_end > self.now_ms:
            self.now_ms = t_end

    def run_for(self, ms: int) -> None:
        self.run_until(self.now_ms + ms)

    def _record(self, line: str) -> None:
        data = ("%d %s\n" % (self.now_ms, line)).encode()
        self._digest.update(data)
        if self.trace is not None:
            self.trace.append(data.decode().rstrip("\n"))

    def trace_digest(self) -> str:
        """SHA-256 over every event so far: equal digests, equal runs."""
        return self._digest.copy().hexdigest()

    # ---- node steps -------------------------------------------------------------------

    def _boot(self, node: _Node) -> None:
        node.boot += 1
        channel = Channel(node.node_id, self.key, incarnation=node.boot,
                          max_senders=REPLAY_SENDERS)
        rng = self._node_rng.fork("%s/%d" % (node.node_id, node.boot))
        node.alive = True
        node.paused = False
        node.held.clear()
        node.crash_after = None
        node.host = node.factory(
            node.node_id, channel, dict(node.storage), rng, self.local_time(node.node_id)
        )
        self._record("boot %s %d" % (node.node_id, node.boot))
        self._after_step(node)

    def _deliver_together(self, dst: str, src: str, payload: bytes) -> None:
        """Deliver a message and every other one due at dst at this instant, as a node's
        runtime hands over the datagrams it finds waiting together: between the host's
        hold() and release() when it has them (see PaxosCore.hold)."""
        node = self._nodes[dst]
        host = node.host if node.alive and not node.paused else None
        if host is None or not hasattr(host, "hold") or not self._due_now(dst):
            self._deliver(dst, src, payload)
            return
        host.hold()
        self._deliver(dst, src, payload)
        while self._due_now(dst) and node.host is host and node.alive:
            _t, _seq, _kind, _dst, src, payload = heapq.heappop(self._heap)
            self.stats["delivered_together"] += 1
            self._deliver(dst, src, payload)
        if node.host is host and node.alive and not node.paused:
            self._run(node, host.release(self.local_time(dst)))

    def _due_now(self, dst: str) -> bool:
        """The next event is a message to dst at this instant."""
        heap = self._heap
        return bool(heap) and heap[0][0] == self.now_ms and heap[0][2] == _DELIVER \
            and heap[0][3] == dst

    def _deliver(self, dst: str, src: str, payload: bytes) -> None:
        self._inflight[(src, dst)] -= 1
        node = self._nodes[dst]
        if not node.alive:
            self.stats["dropped_dead"] += 1
            return
        if self._blocked(src, dst):
            self.stats["dropped_partition"] += 1
            return
        if node.paused:
            if len(node.held) >= self.max_held:
                self.stats["dropped_paused"] += 1
            else:
                node.held.append((src, payload))
            return
        self.stats["delivered"] += 1
        self._record("rx %s<-%s %08x" % (dst, src, zlib.crc32(payload)))
        effects = node.host.receive(self.local_time(dst), src, payload)
        self._run(node, effects)

    def _tick(self, node_id: str, gen: int) -> None:
        node = self._nodes[node_id]
        if not node.alive or node.paused or gen != node.tick_gen:
            return
        node.tick_at = None
        self.stats["ticks"] += 1
        effects = node.host.tick(self.local_time(node_id))
        self._run(node, effects)

    def call(self, node_id: str, fn: Callable[[Any, int], list]) -> list | None:
        """Run a local command fn(host, now_ms) -> effects on a live node; None if it is down."""
        node = self._nodes[node_id]
        if not node.alive or node.paused:
            return None
        effects = fn(node.host, self.local_time(node_id))
        self._run(node, effects or [])
        return effects

    def _run(self, node: _Node, effects: Iterable[Effect]) -> None:
        limit = node.crash_after
        for i, eff in enumerate(effects):
            if limit is not None and i >= limit:
                self._record("crash-mid-step %s after %d" % (node.node_id, i))
                self.crash(node.node_id)
                return
            kind = eff[0]
            if kind == SEND:
                self._send(node.node_id, eff[1], eff[2])
            elif kind == PERSIST:
                if eff[2] is None:
                    node.storage.pop(eff[1], None)
                else:
                    node.storage[eff[1]] = eff[2]
                self._notify(node.node_id, eff)
            elif kind == APPLY or kind == EVENT:
                self._notify(node.node_id, eff)
        if limit is not None:
            node.crash_after = None
            self._record("crash-mid-step %s at end" % node.node_id)
            self.crash(node.node_id)
            return
        self._after_step(node)

    def _notify(self, node_id: str, eff: Effect) -> None:
        for fn in self._observers:
            fn(self.now_ms, node_id, eff)

    def _after_step(self, node: _Node) -> None:
        if not node.alive or node.paused:
            return
        deadline = node.host.next_deadline_ms()
        if deadline is None:
            node.tick_gen += 1
            node.tick_at = None
            return
        t = max(self._global_time(node, deadline), self.now_ms)
        if node.tick_at == t:
            return
        node.tick_gen += 1
        node.tick_at = t
        self._push(t, _TICK, node.node_id, node.tick_gen)

    # ---- the network ------------------------------------------------------------------

    def _blocked(self, a: str, b: str) -> bool:
        if a in self._isolated or b in self._isolated:
            return a != b
        if self._group:
            return self._group.get(a, -1) != self._group.get(b, -1)
        return False

    def _send(self, src: str, dst: str, payload: bytes) -> None:
        if dst == "*":
            for other in self._order:
                if other != src:
                    self._send_one(src, other, payload)
        elif dst in self._nodes:
            self._send_one(src, dst, payload)
        else:
            self.stats["dropped_dead"] += 1

    def _send_one(self, src: str, dst: str, payload: bytes) -> None:
        self.stats["sent"] += 1
        cfg = self._links.get((src, dst), self.net)
        rng = self._net_rng
        if cfg.loss and rng.random() < cfg.loss:
            self.stats["dropped_loss"] += 1
            return
        copies = 1
        if cfg.dup and rng.random() < cfg.dup:
            copies = 2
            self.stats["duplicated"] += 1
        link = (src, dst)
        for _ in range(copies):
            inflight = self._inflight.get(link, 0)
            if inflight >= cfg.capacity:
                self.stats["dropped_capacity"] += 1
                continue
            delay = cfg.latency_ms
            if cfg.jitter_ms:
                delay += rng.randbelow(cfg.jitter_ms + 1)
            if cfg.reorder and rng.random() < cfg.reorder:
                delay += 1 + rng.randbelow(max(1, cfg.reorder_ms))
            self._inflight[link] = inflight + 1
            self._push(self.now_ms + delay, _DELIVER, dst, src, payload)

    # ---- faults -----------------------------------------------------------------------

    def crash(self, node_id: str, after_effects: int | None = None) -> None:
        """Pull the plug now, or (after_effects=k) in the middle of the node's next step."""
        node = self._nodes[node_id]
        if not node.alive:
            return
        if after_effects is not None:
            node.crash_after = after_effects
            self._record("arm-crash %s %d" % (node_id, after_effects))
            return
        node.alive = False
        node.host = None
        node.paused = False
        node.held.clear()
        node.tick_gen += 1
        node.tick_at = None
        node.crash_after = None
        self.stats["crashes"] += 1
        self.events.append((self.now_ms, "crash", node_id))
        self._record("crash %s" % node_id)

    def wipe(self, node_id: str) -> None:
        """Pull the plug and erase the node's durable storage: a board flashed again, a
        deleted data directory. ``restart`` then boots it with nothing."""
        self.crash(node_id)
        self._nodes[node_id].storage = {}
        self.stats["wipes"] = self.stats.get("wipes", 0) + 1
        self.events.append((self.now_ms, "wipe", node_id))
        self._record("wipe %s" % node_id)

    def disarm(self, node_id: str) -> None:
        """Cancel a crash armed with ``crash(node, after_effects=k)`` that has not fired."""
        node = self._nodes[node_id]
        if node.crash_after is not None:
            node.crash_after = None
            self._record("disarm %s" % node_id)

    def restart(self, node_id: str) -> None:
        """Boot a crashed node from its durable storage (a no-op on a live node)."""
        node = self._nodes[node_id]
        if node.alive:
            return
        self.stats["restarts"] += 1
        self.events.append((self.now_ms, "restart", node_id))
        self._boot(node)

    def pause(self, node_id: str) -> None:
        """Freeze a node (a stopped process): no ticks, messages wait in its buffer."""
        node = self._nodes[node_id]
        if node.alive and not node.paused:
            node.paused = True
            node.tick_gen += 1
            node.tick_at = None
            self.events.append((self.now_ms, "pause", node_id))
            self._record("pause %s" % node_id)

    def resume(self, node_id: str) -> None:
        node = self._nodes[node_id]
        if not node.alive or not node.paused:
            return
        node.paused = False
        self.events.append((self.now_ms, "resume", node_id))
        self._record("resume %s" % node_id)
        held = list(node.held)
        node.held.clear()
        for src, payload in held:
            self._inflight[(src, node_id)] = self._inflight.get((src, node_id), 0) + 1
            self._push(self.now_ms, _DELIVER, node_id, src, payload)
        self._after_step(node)

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Split the network: nodes talk only within their group; unlisted nodes form one
        more group of their own."""
        self._group = {}
        for gid, group in enumerate(groups):
            for n in group:
                if n not in self._nodes:
                    raise ValueError("unknown node in partition: %s" % n)
                self._group[n] = gid
        desc = "/".join(",".join(sorted(g)) for g in map(list, groups))
        self.events.append((self.now_ms, "partition", desc))
        self._record("partition " + desc)

    def isolate(self, node_id: str) -> None:
        self._isolated.add(node_id)
        self.events.append((self.now_ms, "isolate", node_id))
        self._record("isolate %s" % node_id)

    def heal(self) -> None:
        """Remove every partition and isolation (link settings stay)."""
        self._group = {}
        self._isolated.clear()
        self.events.append((self.now_ms, "heal", ""))
        self._record("heal")

    def set_net(self, **overrides: Any) -> None:
        """Change the network model of every link from now on."""
        self.net = self.net.copy(**overrides)
        self._links = {}
        detail = ",".join("%s=%s" % (k, overrides[k]) for k in sorted(overrides))
        self.events.append((self.now_ms, "net", detail))
        self._record("net " + detail)

    def set_link(self, src: str, dst: str, **overrides: Any) -> None:
        """Change one direction of one link."""
        self._links[(src, dst)] = self.net.copy(**overrides)
        self._record("link %s->%s" % (src, dst))
