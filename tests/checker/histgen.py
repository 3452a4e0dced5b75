"""History generators and a brute-force reference checker for the checker's tests.

Independent of roost.emulator.linearize on purpose: the brute force enumerates every
order, so it shares no search code with the checker it judges.
"""

import heapq
from itertools import permutations

from roost.emulator.linearize import Op

INF = float("inf")


def apply(value, o, took_effect=True):
    """Model step of the reference register: (legal, new value)."""
    if o.op == "get":
        return value == o.output, value
    if o.op == "put":
        return True, o.value
    if o.op == "append":
        return True, ("" if value is None else value) + o.value
    # cas
    if o.ok is None:  # unknown outcome, included: it did take effect
        return True, (o.new if value == o.old else value)
    if o.output:
        return value == o.old, o.new
    return value != o.old, value


def brute_key(ops):
    """True iff some subset/order of one key's ops is a legal linearization."""
    ops = [o for o in ops if o.ok is not False and not (o.op == "get" and o.ok is None)]
    required = [o for o in ops if o.ok]
    optional = [o for o in ops if o.ok is None]
    for mask in range(1 << len(optional)):
        chosen = required + [o for j, o in enumerate(optional) if mask >> j & 1]
        for perm in permutations(chosen):
            if not _real_time_ok(perm):
                continue
            value, legal = None, True
            for o in perm:
                legal, value = apply(value, o)
                if not legal:
                    break
            if legal:
                return True
    return False


def _real_time_ok(perm):
    for i in range(len(perm)):
        for j in range(i + 1, len(perm)):
            later = perm[j]
            ret = later.ret if later.ok else INF
            if ret < perm[i].call:  # perm[j] finished before perm[i] began
                return False
            # one client's operation that called when its previous one returned (one at a
            # time: it came after it)
            if (later.client == perm[i].client and ret == perm[i].call
                    and later.call < ret and later.call < perm[i].call):
                return False
    return True


def brute(ops):
    keys = {}
    for o in ops:
        keys.setdefault(o.key, []).append(o)
    bad = sorted(k for k, kops in keys.items() if not brute_key(kops))
    return (not bad), bad


def random_small(rng, n_max=7):
    """A small history, often not linearizable: integer times make ties common."""
    n = rng.randint(1, n_max)
    keys = ["x"] if rng.random() < 0.7 else ["x", "y"]
    vals = ["a", "b", "c"]
    outs = [None, "a", "b", "c", "ab", "ba", "a" * 2]
    ops = []
    for i in range(n):
        call = rng.randint(0, 10)
        ret = call + rng.randint(0, 5)
        r = rng.random()
        ok = True if r < 0.7 else (None if r < 0.87 else False)
        kind = rng.choice(["get", "get", "put", "put", "append", "cas"])
        o = Op(client="c%d" % i, op=kind, key=rng.choice(keys), call=float(call),
               ret=None if ok is None and rng.random() < 0.7 else float(ret), ok=ok,
               line=i + 1)
        if kind in ("put", "append"):
            o.value = rng.choice(vals)
        elif kind == "cas":
            o.old = rng.choice([None, "a", "b"])
            o.new = rng.choice(vals)
            if ok:
                o.output = rng.random() < 0.5
        elif ok:
            o.output = rng.choice(outs)
        ops.append(o)
    return ops


def simulate(rng, clients=16, n_ops=5000, keys=20, unknown=0.02, failed=0.01,
             appends=True, cas=True, dur_max=0.02, gap_max=0.01, integer_times=False):
    """History of a real linearizable register: each op takes effect at a random
    instant inside its interval; unknown-outcome ops take effect or not."""
    key_names = ["k%02d" % k for k in range(keys)]
    log_keys = set(key_names[: keys // 4]) if appends else set()
    heap = [(rng.random() * gap_max, "c%d" % c) for c in range(clients)]
    heapq.heapify(heap)
    ops, points = [], []
    written = {k: [None] for k in key_names}
    for n in range(n_ops):
        t, client = heapq.heappop(heap)
        key = rng.choice(key_names)
        call = t
        dur = rng.random() * dur_max
        if integer_times:
            call, dur = float(int(call)), float(rng.randint(0, 4))
        ret = call + dur
        point = call + rng.random() * dur
        r = rng.random()
        ok = None if r < unknown else (False if r < unknown + failed else True)
        if key in log_keys:
            kind = rng.choice(["get", "append", "append"])
        else:
            kind = rng.choice(["get", "get", "put", "put"] + (["cas"] if cas else []))
        o = Op(client=client, op=kind, key=key, call=call, ret=ret, ok=ok, line=n + 1)
        if kind in ("put", "append"):
            o.value = "%s.%d;" % (client, n)
        elif kind == "cas":
            o.old = rng.choice(written[key][-2:])
            o.new = "%s.%d" % (client, n)
        if o.value is not None and kind == "put":
            written[key].append(o.value)
        if kind == "cas":
            written[key].append(o.new)
        applies = ok is True or (ok is None and rng.random() < 0.5)
        if ok is None:
            if rng.random() < 0.7:
                o.ret = None
                ret = call + dur_max * 3  # the client gives up, then goes on
            if kind == "get":
                applies = False
        if applies:
            points.append((point, n, o))
        ops.append(o)
        heapq.heappush(heap, (ret + rng.random() * gap_max, client))
    state = {}
    for _, _, o in sorted(points, key=lambda p: (p[0], p[1])):
        cur = state.get(o.key)
        if o.op == "get":
            o.output = cur
        elif o.op == "put":
            state[o.key] = o.value
        elif o.op == "append":
            state[o.key] = ("" if cur is None else cur) + o.value
        else:
            swapped = cur == o.old
            if swapped:
                state[o.key] = o.new
            if o.ok:
                o.output = swapped
    return ops


def to_lines(ops):
    """Ops -> JSON Lines text, in the shared history format."""
    import json

    out = []
    for o in ops:
        d = {"client": o.client, "op": o.op, "key": o.key}
        if o.op in ("put", "append"):
            d["value"] = o.value
        if o.op == "cas":
            d["old"], d["new"] = o.old, o.new
        d.update({"call": o.call, "return": o.ret, "ok": o.ok})
        if o.ok:
            d["output"] = o.output
        out.append(json.dumps(d))
    return out
