"""An in-process pump between PaxosCore replicas (MicroPython-safe): zero-latency FIFO
delivery, cut links, crashes with durable storage, and an agreement check on every APPLY."""

import json
import os
import sys
from array import array
from binascii import crc32, hexlify

from roost.common.auth import Hmac
from roost.common.channel import Channel
from roost.common.prng import Prng
from roost.node.effects import APPLY, PERSIST, SEND
from roost.node.paxos import PaxosCore

KEY = "paxos-test-key"
NEW = {"unsure": 0}  # a new group's replica: it votes from its first message (paxos.py)


class CountSM:
    """A small state machine: counts commands and folds them into a checksum."""

    def __init__(self):
        self.count = 0
        self.sum = 0
        self.last = None

    def apply(self, index, command):
        self.count += 1
        self.sum = (self.sum * 31 + index + crc32(repr(command).encode())) & 0xFFFFFF
        self.last = command
        return self.count

    def snapshot(self):
        return [self.count, self.sum, self.last]

    def restore(self, snap):
        self.count, self.sum, self.last = snap[0], snap[1], snap[2]


class MemDisk:
    """A replica's durable storage as JSON text in a dict (CPython runs)."""

    def __init__(self):
        self.d = {}

    def __setitem__(self, key, value):
        self.d[key] = json.dumps(value)

    def pop(self, key, default=None):
        return self.d.pop(key, default)

    def __len__(self):
        return len(self.d)

    def load(self):
        return {k: json.loads(v) for k, v in self.d.items()}

    def clear(self):
        self.d = {}


class FlashDisk:
    """A replica's durable storage as files, the way a board keeps it in flash: under
    MicroPython the replicas' disks stay out of the one small heap they share. One file per
    key, ``<root>/<node>=<key>`` ("/" in a key written "-"), written new and then renamed over
    the old one. A few lines of file calls rather than ``roost.node.storage``: its code would
    take a tenth of a board-sized heap that the cores under test need."""

    def __init__(self, node):
        self.prefix = node + "="  # "=" is not allowed in ids: n1's files are not n1x's

    def _path(self, key):
        return _ROOT + "/" + self.prefix + key.replace("/", "-")

    def __setitem__(self, key, value):
        path = self._path(key)
        with open(path + "~", "w") as f:
            f.write(json.dumps(value))
        os.rename(path + "~", path)

    def pop(self, key, default=None):
        try:
            os.remove(self._path(key))
        except OSError:
            pass

    def _names(self):
        n = self.prefix
        return [f for f in os.listdir(_ROOT) if f.startswith(n) and not f.endswith("~")]

    def __len__(self):
        return len(self._names())

    def clear(self):
        for name in self._names():
            os.remove(_ROOT + "/" + name)

    def load(self):
        out = {}
        for name in self._names():
            with open(_ROOT + "/" + name) as f:
                out[name[len(self.prefix):].replace("-", "/")] = json.loads(f.read())
        return out


def _clear_disks():
    """An empty folder for the next cluster's disks (one cluster at a time)."""
    try:
        names = os.listdir(_ROOT)
    except OSError:
        os.mkdir(_ROOT)
        return
    for name in names:
        os.remove(_ROOT + "/" + name)


_ON_BOARD = sys.implementation.name == "micropython"
_ROOT = ((os.getenv("ROOST_PUMP_DIR") if hasattr(os, "getenv") else None) or "/tmp") + \
    "/roost-pump-" + hexlify(os.urandom(4)).decode()


class Cluster:
    def __init__(self, ids, config=None, seed=1, members=None, check=True):
        self.ids = sorted(ids)
        self.members = sorted(members) if members else list(self.ids)
        self.config = config
        self.rng = Prng(seed)
        self.mac = Hmac(KEY)  # the fleet key, prepared once for every replica's channel
        self.now = 0
        self.storage = {}
        self.boots = {}
        self.cores = {}
        self.queue = []
        self.cut = set()
        self.down = set()
        self.drop_every = 0
        self._n = 0
        if _ON_BOARD:  # one cluster at a time: the previous one's disks go
            _clear_disks()
        self.check = check  # keep every applied command for the agreement check
        # the agreement check: crc32 of command index i at position i - 1 (every replica
        # applies in order, so the first to reach i has filled 1..i-1); 4 bytes a command
        self.by_index = array("I")
        self.applied = {}  # node -> number of APPLY effects seen
        self.violations = 0
        self.delivered = 0
        for n in self.ids:
            self.storage[n] = self._new_disk(n)
            self.boots[n] = 0
            self.applied[n] = 0
            self.start(n)

    def add(self, n, members=None):
        self.ids.append(n)
        self.ids.sort()
        self.storage[n] = self._new_disk(n)
        self.boots[n] = 0
        self.applied[n] = 0
        self.start(n, members)

    def start(self, n, members=None):
        self.boots[n] += 1
        ch = Channel(n, self.mac, incarnation=self.boots[n])
        core = PaxosCore(n, ch, members or self.members, CountSM(), config=self.config,
                         rng=self.rng.fork(n), storage=self._disk(n), now_ms=self.now)
        self.cores[n] = core
        self.down.discard(n)
        return core

    def _new_disk(self, n):
        return FlashDisk(n) if _ON_BOARD else MemDisk()

    def _disk(self, n):
        """What a restarting replica reads back from its storage."""
        return self.storage[n].load()

    def crash(self, n):
        self.cores[n] = None
        self.down.add(n)

    def wipe(self, n):
        """Crash n and empty its flash (a spare board in its place); start(n) boots it."""
        self.crash(n)
        self.storage[n].clear()

    def core(self, n):
        return self.cores[n]

    def run_effects(self, n, effects):
        for eff in effects:
            kind = eff[0]
            if kind == SEND:
                dsts = [d for d in self.ids if d != n] if eff[1] == "*" else [eff[1]]
                for d in dsts:
                    self.queue.append((n, d, eff[2]))
            elif kind == PERSIST:
                if eff[2] is None:
                    self.storage[n].pop(eff[1], None)
                else:
                    self.storage[n][eff[1]] = eff[2]
            elif kind == APPLY:
                self.applied[n] += 1
                if not self.check:
                    continue
                digest = crc32(repr(eff[2]).encode()) & 0xFFFFFFFF
                i = eff[1] - 1
                if i == len(self.by_index):
                    self.by_index.append(digest)
                elif i > len(self.by_index) or self.by_index[i] != digest:
                    self.violations += 1  # a gap cannot happen: each replica applies in order
        return effects

    def call(self, n, fn):
        res = fn(self.cores[n], self.now)
        if isinstance(res, tuple):
            self.run_effects(n, res[1])
            return res[0]
        self.run_effects(n, res)
        return res

    def propose(self, n, cmd):
        return self.call(n, lambda c, now: c.propose(now, cmd))

    def deliver(self, limit=200000):
        """Deliver queued messages (and the ones they cause) in FIFO order."""
        i = 0
        while i < len(self.queue) and limit > 0:
            limit -= 1
            src, dst, payload = self.queue[i]
            i += 1
            if i > 256:  # drop delivered messages early: a small heap holds the rest
                self.queue = self.queue[i:]
                i = 0
            if dst in self.down or (src, dst) in self.cut or src in self.down:
                continue
            self._n += 1
            if self.drop_every and self._n % self.drop_every == 0:
                continue
            core = self.cores.get(dst)
            if core is None:
                continue
            self.delivered += 1
            self.run_effects(dst, core.receive(self.now, src, payload))
        self.queue = self.queue[i:]

    def advance(self, ms, step_limit=100000):
        """Move time forward by ms, ticking every core at its deadline."""
        end = self.now + ms
        self.deliver()
        while step_limit > 0:
            step_limit -= 1
            nxt = None
            for n in self.ids:
                c = self.cores.get(n)
                if c is None:
                    continue
                d = c.next_deadline_ms()
                if d is not None and (nxt is None or d < nxt):
                    nxt = d
            if nxt is None or nxt > end:
                break
            if nxt > self.now:
                self.now = nxt
            for n in self.ids:
                c = self.cores.get(n)
                if c is not None:
                    d = c.next_deadline_ms()
                    if d is not None and d <= self.now:
                        self.run_effects(n, c.tick(self.now))
            self.deliver()
        self.now = end

    def isolate(self, n):
        for m in self.ids:
            if m != n:
                self.cut.add((n, m))
                self.cut.add((m, n))

    def heal(self):
        self.cut = set()

    def leaders(self):
        return [n for n in self.ids if self.cores.get(n) is not None and self.cores[n].is_leader()]

    def leader(self):
        ls = self.leaders()
        return ls[0] if len(ls) == 1 else None

    def wait_leader(self, ms=3000):
        t = 0
        while t < ms:
            self.advance(50)
            t += 50
            if self.leader() is not None:
                return self.leader()
        return None
