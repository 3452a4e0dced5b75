"""A tiny in-process network between GossipCores (runs on MicroPython too).

Messages are delivered after ``latency_ms`` in (time, order) order; ``cut(a, b)`` blocks a
link both ways, ``isolate(n)`` every link of n, ``drop`` is a predicate
``drop(src, dst, payload) -> bool`` for targeted loss, ``loss_pct`` random loss from the
pump's own Prng. Crashes lose everything but the node's storage (what PERSIST wrote).
"""

import heapq

from roost.common.channel import Channel
from roost.common.ids import node_name
from roost.common.prng import Prng
from roost.node.effects import EVENT, PERSIST, SEND
from roost.node.gossip import GossipConfig, GossipCore

KEY = "pump-key"


class Pump:
    def __init__(self, n, seed=1, latency_ms=5, seeds=None, **overrides):
        self.ids = [node_name(i + 1) for i in range(n)]
        self.seed = seed
        self.rng = Prng(seed)
        self.latency_ms = latency_ms
        self.seeds = seeds if seeds is not None else self.ids[:1]
        self.overrides = overrides
        self.now = 0
        self.q = []
        self.qseq = 0
        self.cores = {}
        self.storage = {}
        self.boots = {}
        self.cuts = set()
        self.isolated = set()
        self.drop = None
        self.loss_pct = 0
        self.events = []  # (t, node, name, data)
        self.sent = 0
        for nid in self.ids:
            self.storage[nid] = {}
            self.boots[nid] = 0
            self.start(nid)

    def config(self):
        kw = {"seeds": self.seeds}
        kw.update(self.overrides)
        return GossipConfig(**kw)

    def start(self, nid):
        self.boots[nid] += 1
        ch = Channel(nid, KEY, incarnation=self.boots[nid])
        rng = self.rng.fork(nid + "/" + str(self.boots[nid]))
        store = dict(self.storage[nid])
        self.cores[nid] = GossipCore(nid, ch, self.config(), rng, store, self.now)

    def crash(self, nid):
        self.cores.pop(nid, None)

    def restart(self, nid):
        if nid not in self.cores:
            self.start(nid)

    def cut(self, a, b):
        self.cuts.add((a, b))
        self.cuts.add((b, a))

    def isolate(self, nid):
        self.isolated.add(nid)

    def heal(self):
        self.cuts = set()
        self.isolated = set()

    def call(self, nid, fn):
        eff = fn(self.cores[nid], self.now)
        self.run(nid, eff)
        return eff

    def run(self, src, effects):
        for e in effects:
            if e[0] == SEND:
                dsts = self.ids if e[1] == "*" else [e[1]]
                for d in dsts:
                    if d != src:
                        self.send(src, d, e[2])
            elif e[0] == PERSIST:
                self.storage[src][e[1]] = e[2]
            elif e[0] == EVENT:
                self.events.append((self.now, src, e[1], e[2]))

    def send(self, src, dst, payload):
        self.sent += 1
        if (src, dst) in self.cuts or src in self.isolated or dst in self.isolated:
            return
        if self.drop is not None and self.drop(src, dst, payload):
            return
        if self.loss_pct and self.rng.randbelow(100) < self.loss_pct:
            return
        self.qseq += 1
        heapq.heappush(self.q, (self.now + self.latency_ms, self.qseq, src, dst, payload))

    def run_until(self, t_end, max_steps=2000000):
        for _ in range(max_steps):
            t = None
            who = None
            for nid in self.ids:
                c = self.cores.get(nid)
                if c is None:
                    continue
                d = c.next_deadline_ms()
                if d is not None and (t is None or d < t):
                    t, who = d, nid
            if self.q and (t is None or self.q[0][0] <= t):
                t = self.q[0][0]
                who = None
            if t is None or t > t_end:
                self.now = t_end
                return
            if t > self.now:
                self.now = t
            if who is None:
                _, _, src, dst, payload = heapq.heappop(self.q)
                c = self.cores.get(dst)
                if c is not None:
                    self.run(dst, c.receive(self.now, src, payload))
            else:
                self.run(who, self.cores[who].tick(self.now))
        raise AssertionError("pump did not reach t=%d" % t_end)

    def view(self, nid):
        """{member: state_name} as nid sees it."""
        out = {}
        for m in self.cores[nid].members():
            out[m[0]] = m[1]
        return out

    def live(self):
        return [n for n in self.ids if n in self.cores]
