"""Gossip wire and config: states, message kinds, body codecs (never raise), the config
with its presets and the suspicion maths. Split from ``roost.node.gossip`` (which re-exports
all of it) so each module compiles inside a 100 KB MicroPython heap."""

import math

from roost.common.config import apply_overrides
from roost.common.ids import is_valid_id
from roost.common.jsoncodec import dumps as _dumps  # noqa: F401 (the gossip modules take it from here)

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

PH_PUSH = const(0)
PH_REPLY = const(1)
PH_SUMS = const(2)

MAX_INC = const(0x3FFFFFFF)  # incarnations and versions stay small ints on a board
MAX_SEQ = const(0x3FFFFFFF)
MAX_SLEEP_MS = const(86400000)  # a board sleeps at most a day per announcement
_MAX_META = const(16)  # board kind / failure domain: short strings
_MAX_STR = const(32)  # a string inside a summary
_MAX_MEMBER = const(112)  # a member update's wire string: 32+1+10+16+16+32 and 5 colons
Q_MEMBER = const(0)
Q_SUMMARY = const(1)
OWN_SENDS = const(4)  # own sends of a summary before its heard repeats count

_K_INC = "gossip/inc"
_K_SVER = "gossip/sver"


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
    suspicion_mult = 1.5  # alpha: min suspicion = alpha*log10(N)*period; 4 took ~8 periods
    suspicion_max_mult = 6  # beta: max suspicion = beta*min, shrinks with confirmations
    suspicion_confirmations = 2  # K: confirmations that bring the timeout down to min
    gossip_interval_ms = 200  # gossip rounds between probes: 5 hops/s keeps spread under 1 s
    gossip_fanout = 3  # members per gossip round: infection grows ~4x per round
    push_pull_interval_ms = 10000  # anti-entropy: repairs what gossip missed, heals partitions
    push_pull_dead_pct = 25  # share of push-pulls aimed at a dead member (partition healing)
    gossip_to_dead_pct = 10  # share of gossip rounds that also reach a recently dead member
    gossip_to_dead_ms = 30000  # how long "recently dead" lasts (a partition that heals sooner)
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
        if not 0 <= self.push_pull_dead_pct <= 100 or not 0 <= self.gossip_to_dead_pct <= 100:
            raise ValueError("push_pull_dead_pct and gossip_to_dead_pct must be 0..100")
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
    """Sends per update per node: mult * ceil(log10(n + 1)), at least 2*mult (in a fleet of
    under ten, one lost datagram in a few would otherwise leave a node to anti-entropy)."""
    scale = 2
    x = 100
    while x < n + 1:
        x *= 10
        scale += 1
    return mult * scale


# ---- body codecs (never raise on remote input) ---------------------------------------


def encode_member(u):
    """A member update [id, state, incarnation, board, domain, extra] -> its wire string
    "id:state:incarnation:board:domain:extra". No field can hold ':' (ids and metas are
    letters, digits, '-', '_', '.'), and a string is cheaper than a JSON list to pack, to
    parse and, for the repeats that fill a big fleet's gossip, to compare whole."""
    return "%s:%d:%d:%s:%s:%s" % (u[0], u[1], u[2], u[3], u[4], u[5])


def _uint(s, hi):
    """A canonical decimal (ASCII digits, no sign, space or leading zero) up to hi -> int,
    else -1: int() parses, and only the canonical form prints back the same."""
    if not 0 < len(s) <= 10:
        return -1
    try:
        v = int(s)
    except ValueError:
        return -1
    return v if 0 <= v <= hi and str(v) == s else -1


def parse_member(s):
    """A member update's wire string -> [id, state, incarnation, board, domain, extra] with
    every field checked (extra: the suspecter's id for a suspect, the remaining sleep in ms
    for a sleeper, else 0), or None."""
    if type(s) is not str or len(s) > _MAX_MEMBER:
        return None
    f = s.split(":")
    if len(f) != 6:
        return None
    nid, st, inc, board, dom, extra = f
    st = _uint(st, SLEEPING)
    inc = _uint(inc, MAX_INC)
    if st < 0 or inc < 0 or not _vid(nid) or not _is_meta(board) or not _is_meta(dom):
        return None
    if st == SUSPECT:
        if not _vid(extra):
            return None
    elif st == SLEEPING:
        extra = _uint(extra, MAX_SLEEP_MS)
        if extra < 0:
            return None
    elif extra == "0":
        extra = 0
    else:
        return None
    f[1] = st  # the split list becomes the update: one allocation less per member
    f[2] = inc
    f[5] = extra
    return f


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
    return _vid(s[0]) and _is_int(s[1], 1, MAX_INC) and check_summary_value(s[2], max_items)


def decode_gossip(g, max_items=16, known=None, repeats=None):
    """A gossip block -> (member updates as checked lists, summary updates), or None when
    malformed.

    ``known`` (optional): wire string -> member id, for the core's records that a repeat
    cannot change (alive, dead, left). An update found there is left out of the result
    without parsing (in a big fleet most piggybacked updates are such repeats), and its id
    is appended to ``repeats`` when that is a list."""
    if type(g) is not list or len(g) != 2:
        return None
    ms, ss = g
    if type(ms) is not list or type(ss) is not list:
        return None
    keep = []
    for u in ms:
        if known and type(u) is str:
            k = known.get(u)
            if k is not None:
                if repeats is not None:
                    repeats.append(k)
                continue
        m = parse_member(u)
        if m is None:
            return None
        keep.append(m)
    for s in ss:
        if not check_summary(s, max_items):
            return None
    return keep, ss


def decode_body(kind, body, max_items=16, known=None, repeats=None):
    """(kind, body) -> a tuple of checked fields, or None when malformed. Never raises.
    ``known``, ``repeats``: see ``decode_gossip`` (repeats of known member records are left
    out). Member updates come out as checked lists (see ``parse_member``).

    PING/PING_REQ -> (seq, target, members, sums); ACK -> (seq, members, sums);
    GOSSIP -> (members, sums); JOIN/SYNC -> (phase, last, members, digest, sums)
    where digest is None or (lo, hi, [[origin, version], ...])."""
    if not isinstance(body, list):
        return None
    if kind == PING or kind == PING_REQ:
        if len(body) != 3 or not _is_int(body[0], 0, MAX_SEQ) or not is_valid_id(body[1]):
            return None
        g = decode_gossip(body[2], max_items, known, repeats)
        return None if g is None else (body[0], body[1], g[0], g[1])
    if kind == ACK:
        if len(body) != 2 or not _is_int(body[0], 0, MAX_SEQ):
            return None
        g = decode_gossip(body[1], max_items, known, repeats)
        return None if g is None else (body[0], g[0], g[1])
    if kind == GOSSIP:
        if len(body) != 1:
            return None
        return decode_gossip(body[0], max_items, known, repeats)
    if kind == JOIN or kind == SYNC:
        if len(body) != 5:
            return None
        phase, last, ms, dg, ss = body
        if not _is_int(phase, 0, 2) or not _is_int(last, 0, 1):
            return None
        g = decode_gossip([ms, ss], max_items, known)
        if g is None:
            return None
        if dg == 0:
            return (phase, last, g[0], None, ss)
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
                or not _is_int(it[1], 1, MAX_INC)
            ):
                return None
        return (phase, last, g[0], (lo, hi, items), ss)
    return None
