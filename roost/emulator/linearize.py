"""Linearizability checker for roost client histories (CPython only).

Reads the JSON Lines history described in ``shared/spec/history.md`` and decides
whether the key-value store behaved like a single, atomic copy of every key.

How it decides:

* **P-compositionality.** Linearizability is local: a history is linearizable iff
  the sub-history of every key is. Each key is checked as an independent register.
* **Per key, Wing & Gong / Lowe search** ("just-in-time linearization"): the call and
  return events of the key's operations form a doubly linked list in time order. A
  cursor walks it; at a call it tries to linearize that operation now (the model
  step must be legal), lifting its call and return out of the list; at a return whose
  operation is still unlinearized it backtracks to the last choice. Every
  configuration reached, (bitset of linearized operations, register value), is
  remembered, so no configuration is explored twice (Lowe 2017, as in porcupine).
  The loop is iterative: no Python recursion.

Outcome semantics:

* ``ok: true`` took effect between ``call`` and ``return``.
* ``ok: false`` definitely did not take effect: dropped.
* ``ok: null`` may take effect at any time after ``call``, or never: its return is
  +infinity and it is optional. A ``get`` of unknown outcome constrains nothing and is
  dropped. Once every operation with a finite return is linearized the search stops,
  so optional operations are never forced in at the end.
* Intervals are closed: A precedes B in real time only if ``A.return < B.call``;
  operations whose intervals touch count as concurrent, except one client's own: a
  client issues one operation at a time, so its operation that called at the time its
  last one returned comes after it (a stale read of its own write slipped through). That
  order is kept within each key, which is checked on its own: a cycle that only closes
  across keys (c1 put x then get y, c2 put y then get x, each pair touching) passes.

A time bound makes the verdict ``None`` ("unknown"), never ``True``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field

__all__ = [
    "HistoryError",
    "Op",
    "CheckResult",
    "load_history",
    "parse_op",
    "check",
    "format_op",
    "add_check_parser",
    "run_check",
]

OPS = ("get", "put", "append", "cas")

# model step kinds (inner loop codes)
_GET = 0          # legal iff value == a
_PUT = 1          # value := a
_APPEND = 2       # value := (value or "") + a
_CAS_OK = 3       # legal iff value == a; value := b
_CAS_FAIL = 4     # legal iff value != a
_CAS_MAYBE = 5    # unknown outcome: swaps if value == a, else no effect

EXACT_BITSET_MAX = 2048   # ops per key up to which configurations are exact bitsets
CLOCK_EVERY_STEPS = 1024   # search steps between two readings of the clock
COUNTEREXAMPLE_MAX = 10    # ops shown in a counterexample
_LOOKAHEAD = 64           # list entries scanned for the next read on an append-only key
_PREFIX_SHOWN = 5          # of which at most this many from the linearizable prefix

_INF = math.inf


class HistoryError(ValueError):
    """A history line that does not follow shared/spec/history.md."""

    def __init__(self, message: str, lineno: int | None = None):
        super().__init__(message)
        self.lineno = lineno


@dataclass(slots=True)
class Op:
    """One client operation as recorded in the history."""

    client: str
    op: str                   # get | put | append | cas
    key: str
    call: float
    ret: float | None         # None: the client never got an answer
    ok: bool | None           # True / False / None (unknown outcome)
    value: str | None = None  # put / append
    old: str | None = None    # cas: expected value (None = key absent)
    new: str | None = None    # cas
    output: object = None     # get: str | None;  cas: bool
    line: int = 0             # line number in the history file (1-based), 0 if unknown


@dataclass
class CheckResult:
    verdict: bool | None              # True linearizable, False not, None unknown
    ops: int = 0                      # operations in the history given
    keys: int = 0                     # distinct keys in the history
    keys_checked: int = 0             # keys whose verdict is settled
    failing_key: str | None = None    # the key that is not linearizable
    timeout_key: str | None = None    # the key on which the time bound was hit
    counterexample: list[str] = field(default_factory=list)
    prefix: list[Op] = field(default_factory=list)    # tail of longest linearizable prefix
    stuck: list[Op] = field(default_factory=list)     # ops that could not be placed next
    value_after_prefix: str | None = None
    elapsed_s: float = 0.0

    def to_json(self) -> dict:
        return {
            "linearizable": self.verdict,
            "ops": self.ops,
            "keys": self.keys,
            "keys_checked": self.keys_checked,
            "failing_key": self.failing_key,
            "timeout_key": self.timeout_key,
            "counterexample": list(self.counterexample),
            "elapsed_s": round(self.elapsed_s, 6),
        }

    def explain(self) -> list[str]:
        head = "%d ops on %d keys, %.3f s" % (self.ops, self.keys, self.elapsed_s)
        if self.verdict is True:
            return ["linearizable: " + head]
        if self.verdict is None:
            return [
                "unknown: the time bound was hit on key %s (%s, %d of %d keys settled)"
                % (_q(self.timeout_key), head, self.keys_checked, self.keys)
            ]
        lines = ["NOT linearizable: key %s (%s)" % (_q(self.failing_key), head)]
        if self.prefix:
            lines.append(
                "  longest linearizable order found ends with (value then %s):"
                % _q(self.value_after_prefix)
            )
            lines.extend("    " + format_op(o) for o in self.prefix)
        else:
            lines.append("  no operation on this key can be linearized first")
        lines.append("  cannot be placed next:")
        lines.extend("    " + format_op(o) for o in self.stuck)
        return lines


# ---------------------------------------------------------------------------
# reading histories


def _q(v) -> str:
    return json.dumps(v)


def _name(s: str) -> str:
    """A key or client id as is, or quoted with escapes when it would not print on one
    line (a newline, or a lone surrogate that stdout cannot encode)."""
    return s if s.isprintable() else json.dumps(s)


def _num(x) -> bool:
    """A finite number of seconds (an integer too large for a float is not)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def _opt_str(x) -> bool:
    return x is None or isinstance(x, str)


def parse_op(obj, lineno: int = 0, where: str = "history") -> Op:
    """One decoded JSON value -> Op, or HistoryError naming the line."""
    at = "%s line %d" % (where, lineno)

    def bad(msg: str) -> HistoryError:
        return HistoryError("%s %s." % (at, msg), lineno)

    if not isinstance(obj, dict):
        raise bad("is not a JSON object")
    for name in ("client", "op", "key", "call", "ok"):
        if name not in obj:
            raise bad("has no %r field" % name)
    client, kind, key, call = obj["client"], obj["op"], obj["key"], obj["call"]
    ok = obj["ok"]
    ret = obj.get("return")
    if not isinstance(client, str):
        raise bad("has a 'client' that is not a string")
    if kind not in OPS:
        raise bad("has unknown op %s (expected get, put, append or cas)" % _q(kind))
    if not isinstance(key, str):
        raise bad("has a 'key' that is not a string")
    if not _num(call):
        raise bad("has a 'call' time that is not a finite number")
    if not (ok is None or isinstance(ok, bool)):
        raise bad("has an 'ok' that is not true, false or null")
    if ret is not None:
        if not _num(ret):
            raise bad("has a 'return' time that is not a finite number or null")
        if ret < call:
            raise bad("has a 'return' time before its 'call' time")
    elif ok is True:
        raise bad("has ok true but no 'return' time")
    op = Op(client=client, op=kind, key=key, call=float(call),
            ret=None if ret is None else float(ret), ok=ok, line=lineno)
    if kind in ("put", "append"):
        if not isinstance(obj.get("value"), str):
            raise bad("is a %s without a string 'value'" % kind)
        op.value = obj["value"]
    elif kind == "cas":
        if "old" not in obj or not _opt_str(obj["old"]):
            raise bad("is a cas without an 'old' that is a string or null")
        if not isinstance(obj.get("new"), str):
            raise bad("is a cas without a string 'new'")
        op.old, op.new = obj["old"], obj["new"]
        if ok is True:
            if not isinstance(obj.get("output"), bool):
                raise bad("is a cas with ok true but no boolean 'output'")
            op.output = obj["output"]
    elif ok is True:  # get
        if "output" not in obj or not _opt_str(obj["output"]):
            raise bad("is a get with ok true but no 'output' that is a string or null")
        op.output = obj["output"]
    return op


def load_history(path_or_lines, where: str | None = None) -> list[Op]:
    """Read a history: a file path (str or PathLike) or an iterable of lines.

    Blank lines are skipped. Raises HistoryError (a ValueError) whose message is one
    sentence naming the line number (or the two lines of one client's operations that
    overlap: the format has a client issue one at a time); OSError if the file cannot be
    read.
    """
    if isinstance(path_or_lines, (str, os.PathLike)):
        name = where or os.fspath(path_or_lines)
        with open(path_or_lines, "rb") as f:  # decoded line by line: errors name the line
            return _load_lines(f, name)
    return _load_lines(path_or_lines, where or "history")


def _load_lines(lines, where: str) -> list[Op]:
    ops = []
    for lineno, raw in enumerate(lines, 1):
        if isinstance(raw, (bytes, bytearray)):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise HistoryError(
                    "%s line %d is not valid UTF-8." % (where, lineno), lineno
                ) from None
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw, parse_constant=_reject_constant)
        except RecursionError:
            raise HistoryError("%s line %d is nested too deeply to be an operation."
                               % (where, lineno), lineno) from None
        except ValueError as e:
            reason = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
            raise HistoryError(
                "%s line %d is not valid JSON (%s)." % (where, lineno, reason), lineno
            ) from None
        ops.append(parse_op(obj, lineno, where))
    _one_at_a_time(ops, where)
    return ops


def _one_at_a_time(ops: list[Op], where: str) -> None:
    """A client issues one operation at a time (shared/spec/history.md), and the checker
    orders a client's operations by it: two that overlap are a recording error, which
    would otherwise pass as a verdict on the store. One whose answer never came (return
    null) lets its client go on; touching intervals are one after the other."""
    busy: dict[str, Op] = {}  # each client's answered operation that returned last
    # (an operation of no length first among those called at one instant: the lines may
    # come in any order)
    for o in sorted(ops, key=lambda o: (o.call, _INF if o.ret is None else o.ret, o.line)):
        prev = busy.get(o.client)
        if prev is not None and prev.ret > o.call:
            first, second = sorted((prev, o), key=lambda x: x.line)
            raise HistoryError(
                "%s lines %d and %d are two operations of client %s at once (%s called at "
                "%s, before %s returned at %s): a client issues one at a time."
                % (where, first.line, second.line, _name(o.client), o.op, _t(o.call),
                   prev.op, _t(prev.ret)), second.line)
        if o.ret is not None:
            busy[o.client] = o


def _reject_constant(name):
    raise ValueError("%s is not allowed" % name)


# ---------------------------------------------------------------------------
# rendering


def _t(x: float | None) -> str:
    if x is None or x == _INF:
        return "?"
    s = "%.3f" % x
    return s if float(s) == x else repr(x)


def format_op(o: Op) -> str:
    """One readable line, e.g. ``c1 get t/room1 -> "21.5"  [12.040, 12.052]``."""
    key = _name(o.key)
    if o.op == "get":
        body = "get %s -> %s" % (key, _q(o.output) if o.ok else "?")
    elif o.op in ("put", "append"):
        body = "%s %s %s" % (o.op, key, _q(o.value))
    else:
        res = ("swapped" if o.output else "not swapped") if o.ok else "?"
        body = "cas %s %s -> %s : %s" % (key, _q(o.old), _q(o.new), res)
    if o.ok is None:
        body += " (outcome unknown)"
    elif o.ok is False:
        body += " (failed)"
    return "%s %s  [%s, %s]" % (_name(o.client), body, _t(o.call), _t(o.ret))


# ---------------------------------------------------------------------------
# checking


class _Timeout(Exception):
    pass


def _relevant(ops: list[Op]) -> list[Op]:
    """Drop what constrains nothing; keep the rest of one key's operations."""
    kept = [o for o in ops if o.ok is not False and not (o.op == "get" and o.ok is None)]
    # An unknown-outcome put or cas whose written value nobody can observe may be
    # dropped: take any linearization that contains it and move it to the very end
    # (where it is always legal, since unknown ops have no return bound). The only
    # ops that could tell the difference read the written value (get output, cas old),
    # depend on it (append) or need the value to differ from something (a cas that
    # failed). Without those on the key, the moved history stays legal.
    if not any(o.op == "cas" for o in kept):
        # Same argument for an unknown append on a key without cas: every value after
        # it, up to the next put, contains its text; if no get ever read that text,
        # no get sits in that stretch and it can move to the stretch's end.
        reads = _maximal({o.output for o in kept if o.op == "get" and o.output is not None})
        kept = [
            o for o in kept
            if not (o.op == "append" and o.ok is None and not any(o.value in s for s in reads))
        ]
    if any(o.op == "append" or (o.op == "cas" and o.ok and not o.output) for o in kept):
        return kept
    seen = set()
    for o in kept:
        if o.op == "get":
            seen.add(o.output)
        elif o.op == "cas":
            seen.add(o.old)
    return [
        o for o in kept
        if o.ok or (o.value if o.op == "put" else o.new) in seen
    ]


def _maximal(strings: set) -> list[str]:
    """Drop every string that is a prefix of another (substring tests on the rest
    cover it). In sorted order a string's extensions follow it directly."""
    ordered = sorted(strings)
    return [s for s, t in zip(ordered, ordered[1:] + [None]) if t is None or not t.startswith(s)]


def _masks(n: int) -> list[int]:
    """Per-op bit patterns; a configuration's ops are the XOR of their patterns.

    Up to EXACT_BITSET_MAX ops per key these are single bits: the set is exact.
    Beyond that, an n-bit set would make every step cost O(n), so each op gets a
    random 128-bit pattern (Zobrist hashing, seeded, so runs are reproducible). Two
    distinct configurations then collide with probability 2**-128 per pair: for
    the ~10**7 configurations a long run visits, below 10**-24.
    """
    if n <= EXACT_BITSET_MAX:
        return [1 << i for i in range(n)]
    import random

    rng = random.Random(0x5EED ^ n)
    return [rng.getrandbits(128) | (1 << 128) for _ in range(n)]


def _search(kops: list[Op], deadline: float):
    """Lowe's JIT linearization of one register. Returns (True, None) or
    (False, (prefix_ops, value, stuck_ops)). Raises _Timeout past the deadline."""
    n = len(kops)
    if n == 0:
        return True, None
    kind = [0] * n
    arg_a: list = [None] * n
    arg_b: list = [None] * n
    for i, o in enumerate(kops):
        if o.op == "get":
            kind[i], arg_a[i] = _GET, o.output
        elif o.op == "put":
            kind[i], arg_a[i] = _PUT, o.value
        elif o.op == "append":
            kind[i], arg_a[i] = _APPEND, o.value
        else:
            arg_a[i], arg_b[i] = o.old, o.new
            if o.ok is None:
                kind[i] = _CAS_MAYBE
            else:
                kind[i] = _CAS_OK if o.output else _CAS_FAIL
    # events: calls sort before returns at equal times (touching = concurrent)
    events = []
    for i, o in enumerate(kops):
        events.append((o.call, 0, i))
        events.append((o.ret if o.ok else _INF, 1, i))
    events.sort()
    m = 2 * n
    # node 0 is the head sentinel of a circular doubly linked list over nodes 1..m
    nxt = [1] + [k + 1 for k in range(1, m)] + [0]
    prv = [m] + list(range(0, m))
    e_op = [-1] * (m + 1)
    e_call = [False] * (m + 1)
    e_inf = [False] * (m + 1)        # return at +infinity: every required op placed
    match = [0] * (m + 1)
    ret_node = [0] * n
    call_node = [0] * n
    for k, (t, is_ret, i) in enumerate(events, 1):
        e_op[k] = i
        if is_ret:
            ret_node[i] = k
            e_inf[k] = t == _INF
        else:
            e_call[k] = True
            call_node[i] = k
    # a client's operation that called when its previous one returned waits for it
    # (other clients' touching operations stay concurrent: their clocks are coarse)
    # (not for operations of no length: two of one client at one instant have no order)
    returned_at = {(o.client, o.ret): i for i, o in enumerate(kops) if o.ok and o.call < o.ret}
    before = [returned_at.get((o.client, o.call), -1) for o in kops]
    for k in range(1, m + 1):
        if e_call[k]:
            match[k] = ret_node[e_op[k]]
    mask = _masks(n)
    append_only = all(k == _GET or k == _APPEND for k in kind)

    cache: set = set()
    stack_node: list[int] = []
    stack_value: list = []
    bits = 0
    value = None
    best_depth = -1
    best = None
    steps = 0
    # Two passes over the pending calls of each configuration. Pass 1 takes only
    # reads (get, failed cas): a read that is legal now can always be linearized
    # now, so it is committed, never a choice point (moving it to the front of any
    # completion keeps that completion legal). Pass 2 tries the writes, one choice
    # point each; all reads are illegal there, or pass 1 would have taken one.
    reads_pass = True
    node = nxt[0]
    while True:
        steps += 1
        if steps >= CLOCK_EVERY_STEPS:
            steps = 0
            if time.monotonic() > deadline:
                raise _Timeout()
        if e_call[node]:
            i = e_op[node]
            k = kind[i]
            b = before[i]
            if b >= 0 and nxt[prv[call_node[b]]] == call_node[b]:
                node = nxt[node]  # its client's previous operation is not placed yet
                continue
            if reads_pass:
                if k == _GET:
                    if value != arg_a[i]:
                        node = nxt[node]
                        continue
                elif k == _CAS_FAIL:
                    if value == arg_a[i]:
                        node = nxt[node]
                        continue
                else:
                    node = nxt[node]
                    continue
                nv = value
                nb = bits ^ mask[i]
                if (nb, nv) in cache:
                    # explored and failed, so this configuration fails as well
                    node = -1
                else:
                    cache.add((nb, nv))
            else:
                a = arg_a[i]
                if k == _PUT:
                    nv = a
                elif k == _APPEND:
                    nv = a if value is None else value + a
                    if append_only:
                        # On a key written only by appends every later read extends
                        # the value: prune if a nearby unlinearized read does not.
                        g = nxt[0]
                        for _ in range(_LOOKAHEAD):
                            if g == 0 or e_inf[g]:
                                break
                            if not e_call[g] and kind[e_op[g]] == _GET:
                                out = arg_a[e_op[g]]
                                if out is None or not out.startswith(nv):
                                    nv = None
                                break
                            g = nxt[g]
                        if nv is None:
                            node = nxt[node]
                            continue
                elif k == _CAS_OK:
                    if value != a:
                        node = nxt[node]
                        continue
                    nv = arg_b[i]
                elif k == _CAS_MAYBE:
                    nv = arg_b[i] if value == a else value
                else:  # a read: illegal here
                    node = nxt[node]
                    continue
                nb = bits ^ mask[i]
                ck = (nb, nv)
                if ck in cache:
                    node = nxt[node]
                    continue
                cache.add(ck)
            if node >= 0:
                stack_node.append(node)
                stack_value.append(value)
                bits = nb
                value = nv
                # lift the call and its return out of the list
                r = match[node]
                p, q = prv[node], nxt[node]
                nxt[p] = q
                prv[q] = p
                p, q = prv[r], nxt[r]
                nxt[p] = q
                prv[q] = p
                node = nxt[0]
                reads_pass = True
                continue
        elif node == 0 or e_inf[node]:
            if reads_pass:
                reads_pass = False
                node = nxt[0]
                continue
            return True, None
        elif reads_pass:
            # the first return ends the pending calls: now the writes
            reads_pass = False
            node = nxt[0]
            continue
        # a return whose op is not linearized yet (or a known-dead configuration)
        depth = len(stack_node)
        if depth > best_depth and node > 0:
            best_depth = depth
            pending = []
            k2 = nxt[0]
            while k2 != node:
                if e_call[k2]:
                    pending.append(e_op[k2])
                k2 = nxt[k2]
            # keep the tail of the prefix and its last write (it set the value)
            tail = [e_op[x] for x in stack_node[-_PREFIX_SHOWN:]]
            for x in reversed(stack_node):
                if kind[e_op[x]] not in (_GET, _CAS_FAIL):
                    if e_op[x] not in tail:
                        tail = [e_op[x]] + tail[1:]
                    break
            best = (tail, value, e_op[node], pending)
        while True:
            if not stack_node:
                order, value, stuck_op, pending = best
                return False, (order, value, stuck_op, pending, kops, kind)
            top = stack_node.pop()
            value = stack_value.pop()
            i = e_op[top]
            bits ^= mask[i]
            # unlift: reinsert the return, then the call (reverse order of removal)
            r = match[top]
            nxt[prv[r]] = r
            prv[nxt[r]] = r
            nxt[prv[top]] = top
            prv[nxt[top]] = top
            k = kind[i]
            if k != _GET and k != _CAS_FAIL:
                break
            # a committed read failed: its parent configuration fails too
        node = nxt[top]
        reads_pass = False


def _counterexample(res: CheckResult, info) -> None:
    tail, value, stuck_op, pending, kops, kind = info
    stuck = [stuck_op] + sorted(
        (i for i in pending if i != stuck_op), key=lambda i: (kops[i].call, i)
    )
    stuck = stuck[: max(1, COUNTEREXAMPLE_MAX - len(tail))]
    res.prefix = [kops[i] for i in tail]
    res.stuck = [kops[i] for i in stuck]
    res.value_after_prefix = value
    res.counterexample = [format_op(o) for o in res.prefix] + [
        format_op(o) + ("  <- cannot be placed next" if j == 0 else "  <- nor this")
        for j, o in enumerate(res.stuck)
    ]


def check(ops: list[Op], timeout_s: float | None = None) -> CheckResult:
    """Decide whether a history is linearizable (see the module docstring).

    Keys are checked smallest first so a cheap failure is found even if a big key
    would exhaust the time bound. verdict: True, False, or None (time bound hit).
    """
    t0 = time.monotonic()
    deadline = _INF if timeout_s is None else t0 + timeout_s
    by_key: dict[str, list[Op]] = {}
    for o in ops:
        by_key.setdefault(o.key, []).append(o)
    res = CheckResult(verdict=True, ops=len(ops), keys=len(by_key))
    plan = []
    for key in sorted(by_key):
        kops = _relevant(by_key[key])
        kops.sort(key=lambda o: (o.call, o.line))
        plan.append((len(kops), key, kops))
    plan.sort(key=lambda p: (p[0], p[1]))
    for _, key, kops in plan:
        try:
            if time.monotonic() > deadline:  # small keys never reach a clock check
                raise _Timeout()
            ok, info = _search(kops, deadline)
        except _Timeout:
            res.verdict = None
            res.timeout_key = key
            break
        if not ok:
            res.verdict = False
            res.failing_key = key
            _counterexample(res, info)
            res.keys_checked += 1
            break
        res.keys_checked += 1
    res.elapsed_s = time.monotonic() - t0
    return res


# ---------------------------------------------------------------------------
# command line: roost check FILE [--timeout S] [--json]


def _positive_seconds(text: str) -> float:
    import argparse

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number of seconds" % text) from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError("the time bound must be a positive number")
    return v


def add_check_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "check",
        help="check a client history (JSON Lines) for linearizability",
        description="Check a key-value client history (shared/spec/history.md) for "
        "linearizability. Exit 0 linearizable, 1 not linearizable, 2 bad input, "
        "3 unknown (time bound hit).",
    )
    p.add_argument("file", help="history file, one JSON operation per line ('-' for stdin)")
    p.add_argument("--timeout", type=_positive_seconds, default=60.0, metavar="S",
                   help="give up after S seconds with verdict unknown (default 60)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_check)


def run_check(args) -> int:
    try:
        if args.file == "-":
            # bytes, as from a file (the text stream let non-UTF-8 through as surrogates)
            ops = load_history(sys.stdin.buffer, where="stdin")
        else:
            ops = load_history(args.file)
    except HistoryError as e:
        print("roost check: %s" % e, file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        print("roost check: cannot read %s: %s." % (args.file, reason), file=sys.stderr)
        return 2
    if not ops:  # vacuously linearizable; a pipeline should hear that nothing was checked
        print("roost check: %s holds no operation: nothing was checked"
              % ("stdin" if args.file == "-" else args.file), file=sys.stderr)
    res = check(ops, timeout_s=args.timeout)
    if args.json:
        print(json.dumps(res.to_json()))
    else:
        print("\n".join(res.explain()))
    if res.verdict is True:
        return 0
    if res.verdict is False:
        return 1
    return 3
