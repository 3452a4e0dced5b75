"""SWIM gossip: membership, failure detection and sensor-summary dissemination.

One module owns every state transition (h11 style): the wire kinds, the body codecs, the
config with its presets, and ``GossipCore``, a sans-I/O object fed ``(now_ms, bytes)`` and
ticks that returns effects (see ``roost.node.effects``).

The protocol (details and the tuning story in docs/gossip.md):

* Probing: one member per ``probe_interval_ms``, round-robin over a member list shuffled
  with the injected Prng and reshuffled every round. ping -> ack; no ack within
  ``probe_timeout_ms`` -> a second direct ping plus ping-req through ``indirect_checks``
  members; no ack by the end of the period -> suspect.
* Suspicion (Lifeguard): a suspect is declared dead after
  ``max(min, max - (max-min)*log(C+1)/log(K+1))`` where ``min = alpha*log10(N)*period``,
  ``max = beta*min`` and C counts independent confirmations. A member that hears it is
  suspected (or declared dead) raises its incarnation and gossips itself alive.
* Dissemination: membership updates and sensor summaries ride on every ping/ack and on a
  ``gossip_interval_ms`` round to ``gossip_fanout`` members, least-sent and newest first,
  each retransmitted up to ``retransmit_mult*ceil(log10(N+1))`` times, packed until the
  datagram limit.
* Anti-entropy: every ``push_pull_interval_ms`` a push-pull with a random member (sometimes
  a dead one, so healed partitions find each other): full membership and a summary digest,
  split over as many datagrams as needed (bounded), each answered with what the peer lacks.
* Join through seeds (a join is a push-pull; the answer is a full state sync), graceful
  leave ("left", not "dead"), battery sleep ("sleeping": not probed, not suspected).
* Restart: the incarnation is read from storage, raised, and PERSISTed before any message
  carries it; summary versions are reserved in blocks so a reboot never reuses one.

Bodies are JSON lists. A member update is ``[id, state, incarnation, board, domain, extra]``
(extra: the suspecter's id for a suspect, the remaining sleep in ms for a sleeper, else 0);
a summary update is ``[origin, version, value]``; a gossip block is ``[members, summaries]``.

    PING      [seq, target, gossip]        answer ACK [seq, gossip] to the sender
    ACK       [seq, gossip]
    PING_REQ  [seq, target, gossip]        ping target for the sender; relay its ack
    GOSSIP    [gossip]                     no answer
    JOIN/SYNC [phase, last, members, digest, summaries]
              phase 0 push (the last chunk asks for a reply), 1 reply, 2 summaries only;
              digest is [lo, hi, [[origin, version], ...]]: complete for lo <= origin <= hi.
"""

import json
import math

from roost.common.config import apply_overrides
from roost.common.ids import is_valid_id
from roost.node.effects import EVENT, PERSIST, SEND

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


ALIVE = const(0)
SUSPECT = const(1)
DEAD = const(2)
LEFT = const(3)
SLEEPING = const(4)
STATE_NAMES = ("alive", "suspect", "dead", "left", "sleeping")

# Wire kinds (gossip owns 1..31; numbers only ever grow).
PING = const(1)
ACK = const(2)
PING_REQ = const(3)
GOSSIP = const(4)
JOIN = const(5)
SYNC = const(6)
KINDS = (PING, ACK, PING_REQ, GOSSIP, JOIN, SYNC)

_PH_PUSH = const(0)
_PH_REPLY = const(1)
_PH_SUMS = const(2)

_MAX_INC = const(0x3FFFFFFF)  # incarnations and versions stay small ints on a board
_MAX_SEQ = const(0x3FFFFFFF)
_MAX_SLEEP_MS = const(86400000)  # a board sleeps at most a day per announcement
_MAX_META = const(16)  # board kind / failure domain: short strings
_MAX_STR = const(32)  # a string inside a summary
_Q_MEMBER = const(0)
_Q_SUMMARY = const(1)

_K_INC = "gossip/inc"
_K_SVER = "gossip/sver"


try:  # CPython: build the compact encoder once (json.dumps(separators=) builds one per call)
    _dumps = json.JSONEncoder(separators=(",", ":")).encode
except AttributeError:  # MicroPython's json has no JSONEncoder

    def _dumps(x):
        return json.dumps(x, separators=(",", ":"))


_ids_ok = {}  # ids already checked (a bounded cache: member ids repeat in every message)


def _vid(s):
    """is_valid_id with a small cache; never raises."""
    if type(s) is not str:
        return False
    if s in _ids_ok:
        return True
    if not is_valid_id(s):
        return False
    if len(_ids_ok) >= 1024:
        _ids_ok.clear()
    _ids_ok[s] = True
    return True


def _is_int(x, lo, hi):
    return type(x) is int and lo <= x <= hi


def _is_meta(s):
    return s == "" or (type(s) is str and len(s) <= _MAX_META and _vid(s))


class GossipConfig:
    """Gossip options. Defaults are the LAN/emulation preset; ``GossipConfig.wifi()`` is the
    preset for boards on Wi-Fi. Every option: unit last, reason beside it."""

    probe_interval_ms = 1000  # one probe per second: detection in a few s, ~2 msgs/node/s
    probe_timeout_ms = 500  # direct ack deadline; > 2x a 100 ms one-way path plus jitter
    indirect_checks = 3  # ping-req helpers: 3 independent paths make loss-caused suspicion rare
    retransmit_mult = 6  # lambda: sends/update/node = lambda*ceil(log10(N+1)); 4 missed some
    suspicion_mult = 2  # alpha: min suspicion = alpha*log10(N)*period; 4 took ~8 periods
    suspicion_max_mult = 6  # beta: max suspicion = beta*min, shrinks with confirmations
    suspicion_confirmations = 2  # K: confirmations that bring the timeout down to min
    gossip_interval_ms = 200  # gossip rounds between probes: 5 hops/s keeps spread under 1 s
    gossip_fanout = 3  # members per gossip round: infection grows ~4x per round
    push_pull_interval_ms = 10000  # anti-entropy: repairs what gossip missed, heals partitions
    push_pull_dead_pct = 25  # share of push-pulls aimed at a dead member (partition healing)
    join_retry_ms = 1000  # ask the next seed when a join got no answer this long
    dead_reclaim_ms = 600000  # forget dead/left members after 10 min (memory; late refutes)
    max_members = 1024  # member records held (each a small fixed list)
    max_relays = 16  # ping-reqs served at once; more are dropped and counted
    max_summary_bytes = 160  # a summary's encoded JSON: a handful of readings
    max_summary_items = 16  # items in a summary list
    summary_version_block = 64  # versions reserved per flash write (a reboot skips the rest)
    sync_max_datagrams = 48  # datagrams per push-pull message (1024 members fit)
    leave_fanout = 4  # members told directly of a graceful leave
    seeds = ()  # node ids to join through (a node that is its own only seed starts alone)
    board = ""  # board kind carried in membership, e.g. "esp32", "pi4"
    domain = ""  # failure domain carried in membership, e.g. a room or power strip

    def __init__(self, **overrides):
        apply_overrides(self, GossipConfig, overrides, "gossip")
        self._check()

    @classmethod
    def lan(cls, **overrides):
        """LAN / emulation: the class defaults."""
        return cls(**overrides)

    @classmethod
    def wifi(cls, **overrides):
        """Wi-Fi boards: power-save adds up to ~300 ms of latency and bursts of loss, and
        airtime is precious, so probe and gossip less often and suspect for longer."""
        base = {
            "probe_interval_ms": 2000,  # half the airtime of the LAN preset
            "probe_timeout_ms": 900,  # covers power-save wake-ups (DTIM beacons ~300 ms)
            "suspicion_mult": 5,  # bursts of loss: give refutation more rounds
            "gossip_interval_ms": 400,  # fewer radio wake-ups per second
            "push_pull_interval_ms": 30000,  # anti-entropy is the biggest message
            "max_members": 256,  # an ESP32 without PSRAM holds a small fleet
        }
        base.update(overrides)
        return cls(**base)

    def _check(self):
        for name in (
            "probe_interval_ms",
            "probe_timeout_ms",
            "gossip_interval_ms",
            "push_pull_interval_ms",
            "join_retry_ms",
            "dead_reclaim_ms",
            "retransmit_mult",
            "suspicion_mult",
            "suspicion_max_mult",
            "gossip_fanout",
            "max_members",
            "max_relays",
            "max_summary_bytes",
            "max_summary_items",
            "summary_version_block",
            "sync_max_datagrams",
        ):
            if getattr(self, name) < 1:
                raise ValueError("gossip option %s must be at least 1" % name)
        if self.indirect_checks < 0 or self.leave_fanout < 0 or self.suspicion_confirmations < 0:
            raise ValueError(
                "indirect_checks, leave_fanout and suspicion_confirmations must be >= 0"
            )
        if self.probe_timeout_ms >= self.probe_interval_ms:
            raise ValueError("probe_timeout_ms must be below probe_interval_ms")
        if not 0 <= self.push_pull_dead_pct <= 100:
            raise ValueError("push_pull_dead_pct must be between 0 and 100")
        if not isinstance(self.seeds, (list, tuple)):
            raise ValueError("gossip option seeds must be a list of node ids")
        for s in self.seeds:
            if not is_valid_id(s):
                raise ValueError("gossip seed %r is not a valid node id" % (s,))
        if not _is_meta(self.board) or not _is_meta(self.domain):
            raise ValueError("board and domain must be up to 16 letters, digits, '-', '_', '.'")


def suspicion_timeout_ms(n, confirmations, cfg):
    """Lifeguard's timeout for a cluster of n members after ``confirmations`` independent
    confirmations: max(min, max - (max-min)*log(C+1)/log(K+1)). Pure; see the case table in
    tests/gossip/test_core.py."""
    scale = math.log10(n) if n > 10 else 1.0
    lo = int(cfg.suspicion_mult * scale * cfg.probe_interval_ms)
    hi = cfg.suspicion_max_mult * lo
    k = expected_confirmations(n, cfg)
    if k < 1 or confirmations <= 0:
        return hi if k >= 1 else lo
    if confirmations >= k:
        return lo
    t = hi - (hi - lo) * math.log(confirmations + 1) / math.log(k + 1)
    t = int(t)
    return lo if t < lo else t


def expected_confirmations(n, cfg):
    """K: how many independent suspicions to expect (none in a cluster too small for them)."""
    k = cfg.suspicion_confirmations
    if n - 2 < k:
        k = n - 2
    return k if k > 0 else 0


def retransmit_limit(n, mult):
    """Sends per update per node: mult * ceil(log10(n + 1))."""
    scale = 1
    x = 10
    while x < n + 1:
        x *= 10
        scale += 1
    return mult * scale


# ---- body codecs (never raise on remote input) ---------------------------------------


def check_member(u):
    """A member update list -> True when every field has the right type and range."""
    if type(u) is not list or len(u) != 6:
        return False
    nid, st, inc, board, dom, extra = u
    if type(st) is not int or not 0 <= st <= 4 or type(inc) is not int or not 0 <= inc <= _MAX_INC:
        return False
    if not _vid(nid) or not _is_meta(board) or not _is_meta(dom):
        return False
    if st == SUSPECT:
        return _vid(extra)
    if st == SLEEPING:
        return _is_int(extra, 0, _MAX_SLEEP_MS)
    return type(extra) is int and extra == 0


def check_summary_value(v, max_items):
    """A summary is a flat list of up to max_items numbers, booleans, nulls or short strings."""
    if type(v) is not list or len(v) > max_items:
        return False
    for x in v:
        t = type(x)
        if t is int or t is bool or x is None:
            continue
        if t is float:
            if x - x != 0:  # inf or nan: not JSON
                return False
            continue
        if t is str and len(x) <= _MAX_STR:
            continue
        return False
    return True


def check_summary(s, max_items):
    if type(s) is not list or len(s) != 3:
        return False
    return _vid(s[0]) and _is_int(s[1], 1, _MAX_INC) and check_summary_value(s[2], max_items)


def decode_gossip(g, max_items=16):
    """A gossip block -> (member updates, summary updates), or None when malformed."""
    if type(g) is not list or len(g) != 2:
        return None
    ms, ss = g
    if type(ms) is not list or type(ss) is not list:
        return None
    for u in ms:
        if not check_member(u):
            return None
    for s in ss:
        if not check_summary(s, max_items):
            return None
    return ms, ss


def decode_body(kind, body, max_items=16):
    """(kind, body) -> a tuple of checked fields, or None when malformed. Never raises.

    PING/PING_REQ -> (seq, target, members, sums); ACK -> (seq, members, sums);
    GOSSIP -> (members, sums); JOIN/SYNC -> (phase, last, members, digest, sums)
    where digest is None or (lo, hi, [[origin, version], ...])."""
    if not isinstance(body, list):
        return None
    if kind == PING or kind == PING_REQ:
        if len(body) != 3 or not _is_int(body[0], 0, _MAX_SEQ) or not is_valid_id(body[1]):
            return None
        g = decode_gossip(body[2], max_items)
        return None if g is None else (body[0], body[1], g[0], g[1])
    if kind == ACK:
        if len(body) != 2 or not _is_int(body[0], 0, _MAX_SEQ):
            return None
        g = decode_gossip(body[1], max_items)
        return None if g is None else (body[0], g[0], g[1])
    if kind == GOSSIP:
        if len(body) != 1:
            return None
        return decode_gossip(body[0], max_items)
    if kind == JOIN or kind == SYNC:
        if len(body) != 5:
            return None
        phase, last, ms, dg, ss = body
        if not _is_int(phase, 0, 2) or not _is_int(last, 0, 1):
            return None
        g = decode_gossip([ms, ss], max_items)
        if g is None:
            return None
        if dg == 0:
            return (phase, last, ms, None, ss)
        if not isinstance(dg, list) or len(dg) != 3:
            return None
        lo, hi, items = dg
        if not (lo == "" or is_valid_id(lo)) or not (hi == "" or is_valid_id(hi)):
            return None
        if not isinstance(items, list):
            return None
        for it in items:
            if (
                not isinstance(it, list)
                or len(it) != 2
                or not is_valid_id(it[0])
                or not _is_int(it[1], 1, _MAX_INC)
            ):
                return None
        return (phase, last, ms, (lo, hi, items), ss)
    return None


class GossipCore:
    """SWIM member of one node. Sans-I/O: every method takes ``now_ms`` and returns effects."""

    def __init__(self, node_id, channel, config=None, rng=None, storage=None, now_ms=0):
        if rng is None:
            raise ValueError("GossipCore needs an injected Prng (rng=...)")
        self.id = node_id
        self.ch = channel
        self.cfg = config if config is not None else GossipConfig()
        self.rng = rng
        storage = storage if storage is not None else {}
        saved = storage.get(_K_INC, 0)
        if not _is_int(saved, 0, _MAX_INC - 1):
            saved = 0
        self._inc_saved = saved
        self.inc = saved + 1  # above anything a past life announced (it was persisted first)
        sres = storage.get(_K_SVER, 0)
        if not _is_int(sres, 0, _MAX_INC):
            sres = 0
        self._sver = sres  # next publish uses sres + 1: never a version from a past life
        self._sver_reserved = sres
        self.state = ALIVE
        self._wake_ms = 0
        cfg = self.cfg
        # member id -> [state, incarnation, board, domain, until_ms (sleep), changed_ms]
        self._m = {node_id: [ALIVE, self.inc, cfg.board, cfg.domain, 0, now_ms]}
        self._susp = {}  # id -> [start_ms, deadline_ms, n_at_start, [suspecters], relay_from]
        self._sleepers = {}  # id -> until_ms
        self._sums = {}  # origin -> [version, value]
        self._q = []  # [count, -gen, kind, key, size]: least sent, newest first
        self._qk = {}  # (kind, key) -> the entry in _q
        self._gen = 0
        self._live = None  # cached sorted ids of probe-able members (alive/suspect)
        self._n_live = 1
        self._plist = []
        self._pidx = 0
        self._probe = None  # [target, seq, start_ms, indirect_sent]
        self._pseq = 0
        self._relays = {}  # our ping seq -> [requester, their seq, expire_ms]
        # random phases: a fleet that boots together does not probe in lock-step
        self._next_probe = now_ms + rng.randbelow(cfg.probe_interval_ms)
        self._next_gossip = now_ms + rng.randbelow(cfg.gossip_interval_ms)
        self._next_pp = now_ms + cfg.push_pull_interval_ms
        self._next_reclaim = now_ms + cfg.dead_reclaim_ms
        self._joined = False
        self._seeds = sorted(s for s in cfg.seeds if s != node_id)
        self._seed_idx = 0
        self._join_at = now_ms if self._seeds else None
        self._left = False
        self._stats = {}
        for name in (
            "pings",
            "acks",
            "ping_reqs",
            "indirect_pings",
            "relayed_acks",
            "late_acks",
            "probes",
            "probe_failures",
            "suspicions",
            "confirmations",
            "refutations",
            "deaths",
            "gossip_msgs",
            "push_pulls",
            "sync_msgs",
            "joins",
            "updates_sent",
            "members_dropped",
            "relays_dropped",
            "stalled_probes",
        ):
            self._stats[name] = 0
        self._enqueue(_Q_MEMBER, node_id)

    # ---- local API ------------------------------------------------------------------

    @property
    def stats(self):
        out = dict(self.ch.stats)
        for k in self._stats:
            out[k] = self._stats[k]
        return out

    def members(self):
        """Sorted [(id, state_name, incarnation, (board, domain))]."""
        out = []
        for nid in sorted(self._m):
            r = self._m[nid]
            out.append((nid, STATE_NAMES[r[0]], r[1], (r[2], r[3])))
        return out

    def state_of(self, nid):
        r = self._m.get(nid)
        return None if r is None else STATE_NAMES[r[0]]

    def summaries(self):
        """{origin: (version, value)}"""
        out = {}
        for o in self._sums:
            s = self._sums[o]
            out[o] = (s[0], s[1])
        return out

    def join(self, now_ms, seeds=None):
        """Join through seeds (config seeds by default); an already-running member re-sends."""
        if seeds is not None:
            for s in seeds:
                if not is_valid_id(s):
                    raise ValueError("seed %r is not a valid node id" % (s,))
            self._seeds = sorted(s for s in seeds if s != self.id)
        eff = []
        if self._left:
            self._left = False
            self._set_self(now_ms, ALIVE, eff)
        self._joined = False
        if not self._seeds:
            self._joined = True
            self._join_at = None
            return eff
        self._join_at = now_ms
        self._try_join(now_ms, eff)
        return eff

    def leave(self, now_ms):
        """Announce a graceful leave, then go quiet (members mark us left, not dead)."""
        if self._left:
            return []
        eff = []
        self._set_self(now_ms, LEFT, eff)
        targets = self._pick(self.cfg.leave_fanout, None)
        for t in targets:
            self._send_gossip(now_ms, t, eff)
        self._left = True
        self._probe = None
        return eff

    def publish(self, now_ms, summary):
        """Publish this node's latest summary (a flat list of readings); bumps its version."""
        if not check_summary_value(summary, self.cfg.max_summary_items):
            raise ValueError(
                "a summary is a list of up to %d numbers or short strings"
                % self.cfg.max_summary_items
            )
        size = len(_dumps(summary))
        if size > self.cfg.max_summary_bytes:
            raise ValueError(
                "summary of %d bytes exceeds the %d-byte limit" % (size, self.cfg.max_summary_bytes)
            )
        eff = []
        self._sver += 1
        if self._sver > self._sver_reserved:
            self._sver_reserved = self._sver + self.cfg.summary_version_block - 1
            eff.append((PERSIST, _K_SVER, self._sver_reserved))
        self._sums[self.id] = [self._sver, list(summary)]
        self._enqueue(_Q_SUMMARY, self.id)
        eff.append((EVENT, "summary", [self.id, self._sver]))
        return eff

    def sleep_until(self, now_ms, until_ms):
        """A battery board announces it sleeps until until_ms (its own clock)."""
        if not _is_int(until_ms, now_ms + 1, now_ms + _MAX_SLEEP_MS):
            raise ValueError("sleep_until needs a time after now and at most a day ahead")
        eff = []
        self._wake_ms = until_ms
        self._set_self(now_ms, SLEEPING, eff)
        for t in self._pick(self.cfg.gossip_fanout, None):
            self._send_gossip(now_ms, t, eff)
        self._probe = None
        return eff

    # ---- inputs -----------------------------------------------------------------------

    def receive(self, now_ms, src, payload):
        env = self.ch.open(payload)
        if env is None:
            return []
        return self.handle(now_ms, env)

    def handle(self, now_ms, env):
        """An opened Envelope -> effects. Malformed bodies are counted, never raised."""
        kind = env.kind
        if kind not in KINDS:
            self.ch.reject("unknown_kind")
            return []
        msg = decode_body(kind, env.body, self.cfg.max_summary_items)
        if msg is None:
            self.ch.reject("malformed")
            return []
        if self._left:
            self._stats["rx_after_leave"] = self._stats.get("rx_after_leave", 0) + 1
            return []
        eff = []
        src = env.sender
        if src == self.id:
            self.ch.reject("malformed")
            return []
        if kind == PING:
            seq, target, ms, ss = msg
            self._merge_all(now_ms, ms, ss, eff)
            if target != self.id:
                self.ch.reject("misdirected")
                return eff
            self._stats["acks"] += 1
            self._send_ack(now_ms, src, seq, eff)
        elif kind == ACK:
            seq, ms, ss = msg
            self._merge_all(now_ms, ms, ss, eff)
            self._on_ack(now_ms, src, seq, eff)
        elif kind == PING_REQ:
            seq, target, ms, ss = msg
            self._merge_all(now_ms, ms, ss, eff)
            self._on_ping_req(now_ms, src, seq, target, eff)
        elif kind == GOSSIP:
            self._merge_all(now_ms, msg[0], msg[1], eff)
        else:
            self._on_sync(now_ms, src, kind, msg, eff)
        return eff

    def tick(self, now_ms):
        eff = []
        if self._left:
            return eff
        if self.state == SLEEPING:
            if now_ms < self._wake_ms:
                return eff
            self._set_self(now_ms, ALIVE, eff)
            self._next_probe = now_ms
        if self._join_at is not None and now_ms >= self._join_at:
            self._try_join(now_ms, eff)
        if self._sleepers:
            for nid in sorted(self._sleepers):
                if self._sleepers[nid] <= now_ms:
                    del self._sleepers[nid]
                    self._set(now_ms, nid, ALIVE, self._m[nid][1], eff)
        if self._susp:
            for nid in sorted(self._susp):
                s = self._susp.get(nid)
                if s is not None and s[1] <= now_ms:
                    self._stats["deaths"] += 1
                    self._set(now_ms, nid, DEAD, self._m[nid][1], eff)
        p = self._probe
        if p is not None:
            if now_ms - p[2] > 2 * self.cfg.probe_interval_ms:
                # we were stalled (paused): no verdict on a probe we could not run
                self._stats["stalled_probes"] += 1
                self._probe = None
                self._next_probe = now_ms
            elif now_ms >= p[2] + self.cfg.probe_interval_ms:
                self._probe_failed(now_ms, p[0], eff)
                self._probe = None
            elif not p[3] and now_ms >= p[2] + self.cfg.probe_timeout_ms:
                self._indirect(now_ms, eff)
        if self._probe is None and now_ms >= self._next_probe:
            self._next_probe = now_ms + self.cfg.probe_interval_ms
            self._start_probe(now_ms, eff)
        if now_ms >= self._next_gossip:
            self._next_gossip = now_ms + self.cfg.gossip_interval_ms
            if self._has_fresh():
                for t in self._pick(self.cfg.gossip_fanout, None):
                    self._send_gossip(now_ms, t, eff)
        if now_ms >= self._next_pp:
            self._next_pp = now_ms + self._pp_interval()
            self._push_pull(now_ms, eff)
        if self._relays:
            for k in sorted(self._relays):
                if self._relays[k][2] <= now_ms:
                    del self._relays[k]
        if now_ms >= self._next_reclaim:
            self._next_reclaim = now_ms + self.cfg.dead_reclaim_ms // 4
            self._reclaim(now_ms)
        return eff

    def next_deadline_ms(self):
        if self._left:
            return None
        if self.state == SLEEPING:
            return self._wake_ms
        t = self._next_probe
        p = self._probe
        if p is not None:
            t = p[2] + (self.cfg.probe_interval_ms if p[3] else self.cfg.probe_timeout_ms)
        if self._join_at is not None and self._join_at < t:
            t = self._join_at
        if self._next_pp < t:
            t = self._next_pp
        if self._next_gossip < t and self._q:
            t = self._next_gossip
        for nid in self._susp:
            d = self._susp[nid][1]
            if d < t:
                t = d
        for nid in self._sleepers:
            d = self._sleepers[nid]
            if d < t:
                t = d
        return t

    # ---- membership state ---------------------------------------------------------------

    def _n(self):
        self._live_ids()
        return self._n_live

    def _live_ids(self):
        """Sorted ids of other members we probe and gossip to (alive or suspect)."""
        if self._live is None:
            live = []
            n = 0
            for nid in self._m:
                st = self._m[nid][0]
                if st == ALIVE or st == SUSPECT or st == SLEEPING:
                    n += 1
                    if nid != self.id and st != SLEEPING:
                        live.append(nid)
            live.sort()
            self._live = live
            self._n_live = n
        return self._live

    def _pick(self, k, exclude):
        live = self._live_ids()
        if exclude is not None and exclude in live:
            pool = [x for x in live if x != exclude]
        else:
            pool = live
        if k >= len(pool):
            return list(pool)
        if k == 1:
            return [pool[self.rng.randbelow(len(pool))]]
        return self.rng.sample(pool, k)

    def _set_self(self, now_ms, state, eff):
        self.inc = self.inc + 1 if self.inc < _MAX_INC else self.inc
        self.state = state
        r = self._m[self.id]
        changed = r[0] != state
        r[0] = state
        r[1] = self.inc
        r[4] = self._wake_ms if state == SLEEPING else 0
        r[5] = now_ms
        self._live = None
        self._enqueue(_Q_MEMBER, self.id)
        if changed:
            eff.append((EVENT, "member", [self.id, STATE_NAMES[state], self.inc]))

    def _set(self, now_ms, nid, state, inc, eff, until=0, suspecter=None):
        """Change a member's record; events on a state change; queues the update."""
        r = self._m[nid]
        old = r[0]
        r[0] = state
        r[1] = inc
        r[4] = until
        if old != state:
            r[5] = now_ms
            self._live = None
            eff.append((EVENT, "member", [nid, STATE_NAMES[state], inc]))
        if state == SUSPECT:
            if old != SUSPECT or nid not in self._susp:
                n = self._n()
                first = suspecter if suspecter is not None else self.id
                d = now_ms + suspicion_timeout_ms(n, 0, self.cfg)
                self._susp[nid] = [now_ms, d, n, [first], first]
                self._stats["suspicions"] += 1
        elif nid in self._susp:
            del self._susp[nid]
        if state == SLEEPING:
            self._sleepers[nid] = until
        elif nid in self._sleepers:
            del self._sleepers[nid]
        self._enqueue(_Q_MEMBER, nid)

    def _confirm(self, now_ms, nid, who):
        """An independent suspicion of nid by who: shorten the timer and pass the news on
        (gossiped with who as the suspecter, so others count it too)."""
        s = self._susp.get(nid)
        if s is None or who in s[3]:
            return
        k = expected_confirmations(s[2], self.cfg)
        if len(s[3]) > k:
            return
        s[3].append(who)
        s[4] = who
        self._stats["confirmations"] += 1
        s[1] = s[0] + suspicion_timeout_ms(s[2], len(s[3]) - 1, self.cfg)
        self._enqueue(_Q_MEMBER, nid)

    def _room(self):
        if len(self._m) < self.cfg.max_members:
            return True
        # evict the oldest tombstone, if any
        victim = None
        for nid in sorted(self._m):
            r = self._m[nid]
            if (r[0] == DEAD or r[0] == LEFT) and (victim is None or r[5] < self._m[victim][5]):
                victim = nid
        if victim is None:
            return False
        self._forget(victim)
        return True

    def _forget(self, nid):
        del self._m[nid]
        self._live = None
        e = self._qk.pop((_Q_MEMBER, nid), None)
        if e is not None:
            self._q.remove(e)

    def _reclaim(self, now_ms):
        old = now_ms - self.cfg.dead_reclaim_ms
        for nid in sorted(self._m):
            r = self._m[nid]
            if (r[0] == DEAD or r[0] == LEFT) and r[5] <= old:
                self._forget(nid)

    def _merge_all(self, now_ms, ms, ss, eff):
        for u in ms:
            self._merge(now_ms, u, eff)
        for s in ss:
            self._merge_summary(s, eff)

    def _merge(self, now_ms, u, eff):
        nid, st, inc, board, dom, extra = u
        if nid == self.id:
            self._about_me(st, inc)
            return
        r = self._m.get(nid)
        if r is None:
            if not self._room():
                self._stats["members_dropped"] += 1
                return
            if st == SLEEPING and extra <= 0:
                st = ALIVE
            self._m[nid] = [st, inc, board, dom, 0, now_ms]
            self._live = None
            eff.append((EVENT, "member", [nid, STATE_NAMES[st], inc]))
            self._set(now_ms, nid, st, inc, [], now_ms + extra if st == SLEEPING else 0, extra)
            return
        lst, linc = r[0], r[1]
        if st == ALIVE:
            if inc <= linc:
                return
        elif st == SLEEPING:
            if inc <= linc:
                return
            if extra <= 0:
                st = ALIVE
        elif st == SUSPECT:
            if inc < linc:
                return
            if inc == linc:
                if lst == SUSPECT:
                    self._confirm(now_ms, nid, extra)
                    return
                if lst == DEAD or lst == LEFT:
                    return
        elif st == DEAD:
            if inc < linc or lst == LEFT or (lst == DEAD and inc == linc):
                return
        else:  # LEFT
            if inc < linc or lst == LEFT:
                return
        r[2] = board
        r[3] = dom
        self._set(now_ms, nid, st, inc, eff, now_ms + extra if st == SLEEPING else 0, extra)

    def _about_me(self, st, inc):
        """Someone's view of us: refute suspicion, death, a stale leave or a newer life."""
        if self._left:
            return
        if st == SUSPECT or st == DEAD or st == LEFT:
            if inc < self.inc:
                return
        elif inc <= self.inc:
            return
        self._stats["refutations"] += 1
        self.inc = inc if inc < _MAX_INC else _MAX_INC - 1
        self._set_self(0, self.state, [])

    def _merge_summary(self, s, eff):
        origin, ver, value = s
        if origin == self.id:
            return
        cur = self._sums.get(origin)
        if cur is not None and cur[0] >= ver:
            return
        if cur is None and origin not in self._m and len(self._sums) >= self.cfg.max_members:
            self._stats["members_dropped"] += 1
            return
        self._sums[origin] = [ver, value]
        self._enqueue(_Q_SUMMARY, origin)
        eff.append((EVENT, "summary", [origin, ver]))

    # ---- the update queue ---------------------------------------------------------------

    def _entry(self, kind, key, now_ms):
        """The wire form of a queued update (built from the current record)."""
        if kind == _Q_SUMMARY:
            s = self._sums[key]
            return [key, s[0], s[1]]
        r = self._m[key]
        st = r[0]
        if st == SUSPECT:
            s = self._susp.get(key)
            extra = s[4] if s is not None else self.id
        elif st == SLEEPING:
            extra = r[4] - now_ms
            if extra <= 0:
                st = ALIVE
                extra = 0
            elif extra > _MAX_SLEEP_MS:
                extra = _MAX_SLEEP_MS
        else:
            extra = 0
        return [key, st, r[1], r[2], r[3], extra]

    def _enqueue(self, kind, key):
        self._gen += 1
        # exact size now; an upper bound later (a sleeper's remaining time only shrinks)
        size = len(_dumps(self._entry(kind, key, 0))) + 1
        e = self._qk.get((kind, key))
        if e is not None:
            e[0] = 0
            e[1] = -self._gen
            e[4] = size
            return
        e = [0, -self._gen, kind, key, size]
        self._q.append(e)
        self._qk[(kind, key)] = e

    def _has_fresh(self):
        return len(self._q) > 0

    def _gossip(self, now_ms, budget, dst):
        """Pick updates that fit in budget bytes: [[members], [summaries]]."""
        ms = []
        ss = []
        q = self._q
        if dst is not None:
            r = self._m.get(dst)
            if r is not None and (r[0] == SUSPECT or r[0] == DEAD or r[0] == LEFT):
                # tell a member directly that we doubt it: its fastest way to refute
                u = self._entry(_Q_MEMBER, dst, now_ms)
                budget -= len(_dumps(u)) + 1
                ms.append(u)
        if not q or budget <= 0:
            return [ms, ss]
        q.sort()
        limit = retransmit_limit(self._n(), self.cfg.retransmit_mult)
        used = 0
        drop = False
        for e in q:
            if e[4] > budget:
                if budget < 40:
                    break
                continue
            kind, key = e[2], e[3]
            if kind == _Q_MEMBER:
                if key == dst:  # it knows itself (and got our doubt above)
                    continue
                ms.append(self._entry(kind, key, now_ms))
            else:
                ss.append(self._entry(kind, key, now_ms))
            budget -= e[4]
            e[0] += 1
            used += 1
            if e[0] >= limit:
                drop = True
        if drop:
            keep = []
            for e in q:
                if e[0] >= limit:
                    del self._qk[(e[2], e[3])]
                else:
                    keep.append(e)
            self._q = keep
        self._stats["updates_sent"] += used
        return [ms, ss]

    def _seal(self, now_ms, kind, dst, body, eff):
        """Persist a raised incarnation before any message can carry it, then send."""
        if self.inc > self._inc_saved:
            self._inc_saved = self.inc
            eff.append((PERSIST, _K_INC, self.inc))
        try:
            data = self.ch.seal(kind, dst, body)
        except ValueError:  # a sizing bug; never let it escape
            self._stats["tx_oversized"] = self._stats.get("tx_oversized", 0) + 1
            return
        eff.append((SEND, dst, data))

    def _budget(self, kind, dst, fixed):
        return self.ch.max_bytes - self.ch.overhead(kind, dst) - len(_dumps(fixed)) - 4

    def _send_with_gossip(self, now_ms, kind, dst, head, eff):
        """Send [*head, gossip] packed to the datagram limit."""
        body = head + [[[], []]]
        g = self._gossip(now_ms, self._budget(kind, dst, body), dst)
        body[-1] = g
        self._seal(now_ms, kind, dst, body, eff)

    def _send_gossip(self, now_ms, dst, eff):
        self._stats["gossip_msgs"] += 1
        self._send_with_gossip(now_ms, GOSSIP, dst, [], eff)

    def _send_ack(self, now_ms, dst, seq, eff):
        self._send_with_gossip(now_ms, ACK, dst, [seq], eff)

    # ---- probing ------------------------------------------------------------------------

    def _next_seq(self):
        self._pseq = self._pseq + 1 if self._pseq < _MAX_SEQ else 1
        return self._pseq

    def _start_probe(self, now_ms, eff):
        target = None
        for _ in range(2):
            while self._pidx < len(self._plist):
                cand = self._plist[self._pidx]
                self._pidx += 1
                r = self._m.get(cand)
                if r is not None and (r[0] == ALIVE or r[0] == SUSPECT):
                    target = cand
                    break
            if target is not None:
                break
            self._plist = list(self._live_ids())
            self.rng.shuffle(self._plist)
            self._pidx = 0
        if target is None:
            return
        seq = self._next_seq()
        self._probe = [target, seq, now_ms, False]
        self._stats["probes"] += 1
        self._stats["pings"] += 1
        self._send_with_gossip(now_ms, PING, target, [seq, target], eff)

    def _indirect(self, now_ms, eff):
        p = self._probe
        p[3] = True
        target, seq = p[0], p[1]
        # a second direct ping (a lost datagram is the common case) plus k helpers
        self._stats["pings"] += 1
        self._send_with_gossip(now_ms, PING, target, [seq, target], eff)
        for h in self._pick(self.cfg.indirect_checks, target):
            self._stats["ping_reqs"] += 1
            self._send_with_gossip(now_ms, PING_REQ, h, [seq, target], eff)

    def _on_ack(self, now_ms, src, seq, eff):
        p = self._probe
        if p is not None and seq == p[1]:
            self._probe = None
            return
        rel = self._relays.pop(seq, None)
        if rel is not None:
            self._stats["relayed_acks"] += 1
            self._send_ack(now_ms, rel[0], rel[1], eff)
            return
        self._stats["late_acks"] += 1

    def _on_ping_req(self, now_ms, src, seq, target, eff):
        if target == self.id:
            self._send_ack(now_ms, src, seq, eff)
            return
        if len(self._relays) >= self.cfg.max_relays:
            self._stats["relays_dropped"] += 1
            return
        mine = self._next_seq()
        self._relays[mine] = [src, seq, now_ms + self.cfg.probe_interval_ms]
        self._stats["indirect_pings"] += 1
        self._send_with_gossip(now_ms, PING, target, [mine, target], eff)

    def _probe_failed(self, now_ms, target, eff):
        self._stats["probe_failures"] += 1
        r = self._m.get(target)
        if r is None:
            return
        if r[0] == ALIVE:
            self._set(now_ms, target, SUSPECT, r[1], eff)
        elif r[0] == SUSPECT:
            self._confirm(now_ms, target, self.id)

    # ---- join and push-pull -------------------------------------------------------------

    def _try_join(self, now_ms, eff):
        if self._joined or not self._seeds:
            self._join_at = None
            return
        seed = self._seeds[self._seed_idx % len(self._seeds)]
        self._seed_idx += 1
        self._join_at = now_ms + self.cfg.join_retry_ms
        self._stats["joins"] += 1
        self._send_state(now_ms, JOIN, seed, _PH_PUSH, eff)

    def _pp_interval(self):
        """Scale anti-entropy down in big clusters (its messages grow with N)."""
        n = self._n()
        mult = 1
        while n > 32 * mult * 2:
            mult *= 2
        return self.cfg.push_pull_interval_ms * mult

    def _push_pull(self, now_ms, eff):
        dead = []
        if self.rng.randbelow(100) < self.cfg.push_pull_dead_pct:
            for nid in sorted(self._m):
                if self._m[nid][0] == DEAD:
                    dead.append(nid)
        if dead:
            peer = self.rng.choice(dead)
        else:
            peers = self._pick(1, None)
            if not peers:
                return
            peer = peers[0]
        self._stats["push_pulls"] += 1
        self._send_state(now_ms, SYNC, peer, _PH_PUSH, eff)

    def _send_state(self, now_ms, kind, dst, phase, eff):
        """Full membership, then the summary digest, over as many datagrams as needed (at
        most sync_max_datagrams). Digest chunks cover contiguous ranges of origins (lo, hi]
        ("" = unbounded), so each chunk is complete for its range on its own."""
        cap = self.ch.max_bytes - self.ch.overhead(kind, dst) - 96
        chunks = []
        cur = []
        used = 0
        for nid in sorted(self._m):
            u = self._entry(_Q_MEMBER, nid, now_ms)
            n = len(_dumps(u)) + 1
            if used + n > cap and cur:
                chunks.append([cur, 0])
                cur = []
                used = 0
            cur.append(u)
            used += n
        lo = ""
        items = []
        for o in sorted(self._sums):
            n = len(o) + 14
            if used + n > cap and (cur or items):
                hi = items[-1][0] if items else lo
                chunks.append([cur, [lo, hi, items] if items else 0])
                if items:
                    lo = hi
                cur = []
                items = []
                used = 0
            items.append([o, self._sums[o][0]])
            used += n
        chunks.append([cur, [lo, "", items]])
        if len(chunks) > self.cfg.sync_max_datagrams:
            chunks = chunks[: self.cfg.sync_max_datagrams]
        self._stats["sync_msgs"] += len(chunks)
        for i in range(len(chunks)):
            last = 1 if i == len(chunks) - 1 else 0
            self._seal(now_ms, kind, dst, [phase, last, chunks[i][0], chunks[i][1], []], eff)

    def _send_missing(self, now_ms, dst, digest, eff):
        """Summaries we hold that the peer's digest chunk shows it lacks or holds older."""
        lo, hi, items = digest
        theirs = {}
        for it in items:
            theirs[it[0]] = it[1]
        cap = self.ch.max_bytes - self.ch.overhead(SYNC, dst) - 40
        batch = []
        used = 0
        sent = 0
        for o in sorted(self._sums):
            if (lo and o <= lo) or (hi and o > hi):
                continue
            s = self._sums[o]
            if theirs.get(o, 0) >= s[0]:
                continue
            u = [o, s[0], s[1]]
            n = len(_dumps(u)) + 1
            if used + n > cap and batch:
                self._seal(now_ms, SYNC, dst, [_PH_SUMS, 1, [], 0, batch], eff)
                sent += 1
                batch = []
                used = 0
                if sent >= self.cfg.sync_max_datagrams:
                    return
            batch.append(u)
            used += n
        if batch:
            self._seal(now_ms, SYNC, dst, [_PH_SUMS, 1, [], 0, batch], eff)

    def _on_sync(self, now_ms, src, kind, msg, eff):
        phase, last, ms, digest, ss = msg
        self._merge_all(now_ms, ms, ss, eff)
        if phase == _PH_SUMS:
            return
        if digest is not None:
            self._send_missing(now_ms, src, digest, eff)
        if phase == _PH_PUSH and last:
            self._send_state(now_ms, SYNC, src, _PH_REPLY, eff)
        elif phase == _PH_REPLY and not self._joined:
            self._joined = True
            self._join_at = None
