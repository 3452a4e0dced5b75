"""A Paxos replica's log window, packed into a few bytearrays (``SlotLog``).

slot -> (ballot, value, chosen) without objects per slot. Each slot's record lives in one
of a few buffers of up to ``CHUNK`` bytes:
  flags   1 byte   bit 0 chosen, bits 1-2 the value's tag (0 "b", 1 "n", 2 "c")
  node    1 byte   the ballot's node id, as an index into ``_nodes``
  round   varint   the ballot's round
  slot    varint   the record's slot (compaction walks the buffers, not the index)
  length  varint   bytes of the body
  body             JSON of value[1] ("b": the command list, "c": the members; "n": none)
so a value is held as its encoded JSON and decoded only when applied or sent. A buffer's
records run from its start to its fill; a buffer left with room ends with one 0xFF byte.

``_idx`` is an array over slots from base (at most limit of them, grown as needed): 0 for
no record, else 1 + (buffer number << 12 | offset). A replaced record (a higher ballot, the
chosen value) is written anew and its old bytes counted dead. ``drop_upto`` (after a
snapshot), or more dead than live bytes, slides the live records down over the dead ones
in the buffers the log already holds (a compaction asks the heap for nothing), and
rebuilds the node table (at most 255 ids; a put past it is refused until then). A slot
costs its command's JSON plus about 10 bytes on any interpreter.

With a reserve (a board), that many bytes of full-size buffers are allocated at once,
while the heap is young, and every freed buffer goes back to them. The reserve is then
also the log's budget: a record that would need a buffer beyond three quarters of it is
refused (the caller does not vote for the slot, or learns it later) unless forced -- the
slot the replica must hold to make progress, its own proposals, recovery -- and those take
the last quarter. So however far a fast leader runs ahead of a slow board, the board's log
seldom asks a fragmented heap for a fresh buffer.
"""

from array import array

from roost.common.jsoncodec import dumps, loads

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


CHUNK = const(2048)  # bytes per log buffer; a record never spans two (a larger one gets
# a buffer of its own). Fixed-size buffers, not one growing one: a board's heap fragments
_GROW = const(32)  # slots the log's index grows by
_POOL_BYTES = const(16384)  # freed log buffers kept for reuse (see SlotLog._write)
_TAGS = ("b", "n", "c")  # value tag <-> the record's 2-bit tag field
_END = const(0xFF)  # flags byte no record has: the end of a buffer's records
_MAX_OFF = const(0xFFF)  # a record starts at most this far into its buffer (12 bits)
_PIECE = const(256)  # bytes moved at a time when compacting (a small temporary copy)


def _varint(buf, x):
    for _ in range(8):
        if x < 0x80:
            break
        buf.append((x & 0x7F) | 0x80)
        x >>= 7
    buf.append(x)


def _parse_at(ch, p):
    """[round, slot, body_start, body_end] of the record starting at ch[p]."""
    out = [0, 0, 0, 0]
    p += 2
    for k in (0, 1, 3):
        x = 0
        for sh in range(0, 56, 7):
            c = ch[p]
            p += 1
            x |= (c & 0x7F) << sh
            if c < 0x80:
                break
        out[k] = x
    out[2] = p
    out[3] += p
    return out


def _move(dst, d, src, s, n):
    """Copy src[s:s+n] to dst[d:d+n] front to back in small pieces (d <= s when dst is
    src: the region may overlap, each piece is copied out before it is written)."""
    end = s + n
    while s < end:
        m = min(_PIECE, end - s)
        dst[d:d + m] = src[s:s + m]
        d += m
        s += m


class SlotLog:
    """The log window of one replica (see the module docstring)."""

    __slots__ = ("base", "limit", "_idx", "_chunks", "_fill", "_count", "_live", "_dead",
                 "_nodes", "_spare", "_reserve", "_held", "peak", "fresh")

    def __init__(self, limit, reserve=0):
        self.base = 1  # the first slot the index covers (snapshot slot + 1)
        self.limit = limit
        # slot -> record; with a reserve it is sized for limit slots at once and kept
        n = (limit + _GROW - 1) // _GROW * _GROW if reserve else 0
        self._idx = array("I", bytes(4 * n))
        self._chunks = []
        self._fill = 0  # bytes used in the last buffer
        self._count = 0
        self._live = 0
        self._dead = 0
        self._nodes = []  # ballot node ids (a handful: the members that led)
        self._spare = []  # freed buffers kept for reuse (at most _POOL_BYTES, or the reserve)
        self._reserve = reserve
        self._held = 0  # bytes of the buffers in use (the reserve's spares not counted)
        self.peak = 0  # the most _held has been: what a reserve must cover
        self.fresh = 0  # buffers allocated after the reserve (a board's risky moments)
        try:
            for _ in range((reserve + CHUNK - 1) // CHUNK):
                self._spare.append(bytearray(CHUNK))
        except MemoryError:  # a rebuild on a crowded heap: the log starts with what fitted
            pass

    def __len__(self):
        return self._count

    def live_bytes(self):
        """Bytes of the records held (what the log costs beyond its index)."""
        return self._live

    def size(self, slot):
        """Bytes of the slot's record (0 for none): what dropping it frees."""
        ref = self._ref(slot)
        if not ref:
            return 0
        ref -= 1
        p = ref & 0xFFF
        return _parse_at(self._chunks[ref >> 12], p)[3] - p

    def bytes_upto(self, slot):
        """Bytes of the records of the slots <= slot (what a snapshot there would free),
        by a walk over them; a replica keeps this as a running count (Paxos._applied_bytes)."""
        idx = self._idx
        chunks = self._chunks
        total = 0
        for i in range(min(slot - self.base + 1, len(idx))):
            ref = idx[i]
            if ref:
                ref -= 1
                p = ref & 0xFFF
                total += _parse_at(chunks[ref >> 12], p)[3] - p
        return total

    def __contains__(self, slot):
        return self.state(slot) >= 0

    def __iter__(self):
        return iter(self.slots(self.base))

    def slots(self, first):
        """Held slots >= first, ascending."""
        idx = self._idx
        out = []
        for i in range(max(0, first - self.base), len(idx)):
            if idx[i]:
                out.append(self.base + i)
        return out

    def _ref(self, slot):
        i = slot - self.base
        if not isinstance(i, int) or i < 0 or i >= len(self._idx):
            return 0
        return self._idx[i]

    def state(self, slot):
        """-1 no record, 0 accepted, 1 chosen."""
        ref = self._ref(slot)
        if not ref:
            return -1
        ref -= 1
        return self._chunks[ref >> 12][ref & 0xFFF] & 1

    def get(self, slot):
        """(round, node, value, chosen, bytes of the value's JSON) or None."""
        ref = self._ref(slot)
        if not ref:
            return None
        ref -= 1
        ch = self._chunks[ref >> 12]
        p = ref & 0xFFF
        rnd, _s, a, b = _parse_at(ch, p)
        f = ch[p]
        tag = _TAGS[f >> 1]
        if tag == "n":
            return (rnd, self._nodes[ch[p + 1]], ["n"], f & 1, 5)
        return (rnd, self._nodes[ch[p + 1]], [tag, loads(ch[a:b])], f & 1, b - a + 6)

    def set_chosen(self, slot):
        ref = self._ref(slot)
        if ref:
            ref -= 1
            self._chunks[ref >> 12][ref & 0xFFF] |= 1

    def put(self, slot, rnd, node, value, chosen, force=False):
        """Hold (ballot, value, chosen) for a slot >= base. False, holding nothing, when the
        slot lies limit or more past base, or (with a reserve) when its record needs a
        buffer beyond the reserve -- unless force."""
        i = slot - self.base
        if i < 0 or (i >= self.limit and not force):
            return False
        nodes = self._nodes
        if node not in nodes:
            if len(nodes) > 254:  # rebuilt by the next snapshot
                return False
            nodes.append(node)
        t = _TAGS.index(value[0])
        head = bytearray((t << 1 | (1 if chosen else 0), nodes.index(node)))
        body = b"" if t == 1 else dumps(value[1]).encode()
        _varint(head, rnd)
        _varint(head, slot)
        _varint(head, len(body))
        if self._reserve and not force and not self._room(len(head) + len(body)):
            return False
        idx = self._idx
        if i >= len(idx):  # grown in steps of _GROW slots
            idx.extend(array("I", bytes(4 * ((i // _GROW + 1) * _GROW - len(idx)))))
        old = idx[i]
        if old:
            old -= 1
            ch = self._chunks[old >> 12]
            p = old & 0xFFF
            n = _parse_at(ch, p)[3] - p
            self._dead += n
            self._live -= n
        else:
            self._count += 1
        self._write(i, head, body)
        if self._dead > 4096 and self._dead > self._live:
            self._compact(self.base)
        return True

    def _room(self, need):
        """True when a record of need bytes that the log may refuse fits in the buffer
        being filled, or in a spare one while the buffers in use stay within three
        quarters of the reserve: the last quarter is kept for the records it must hold
        (the next slot to be chosen, until a snapshot drops the applied ones)."""
        chunks = self._chunks
        if chunks and self._fill <= _MAX_OFF and self._fill + need <= len(chunks[-1]):
            return True
        if 4 * (self._held + CHUNK) > 3 * self._reserve:
            return False
        for b in self._spare:
            if len(b) >= need:
                return True
        return False

    def _write(self, i, head, body):
        need = len(head) + len(body)
        chunks = self._chunks
        if not chunks or self._fill > _MAX_OFF or self._fill + need > len(chunks[-1]):
            if chunks and self._fill < len(chunks[-1]):
                chunks[-1][self._fill] = _END
            pool = self._spare
            for j in range(len(pool)):
                if len(pool[j]) >= need:  # reused: a board's heap is not churned (a hole
                    chunks.append(pool.pop(j))  # left by a freed buffer soon holds small
                    break  # objects, and the next 2 KB buffer no longer fits anywhere)
            else:  # small logs get small buffers (full ones with a reserve); never below need
                size = CHUNK if self._reserve else min(max(self._live, 128, need), CHUNK)
                chunks.append(bytearray(max(size, need)))
                self.fresh += 1
            self._fill = 0
            self._held += len(chunks[-1])
            if self._held > self.peak:
                self.peak = self._held
        ch = chunks[-1]
        p = self._fill
        ch[p:p + len(head)] = head
        ch[p + len(head):p + need] = body
        self._idx[i] = ((len(chunks) - 1) << 12 | p) + 1
        self._fill = p + need
        self._live += need

    def drop_upto(self, slot):
        """Forget every slot <= slot; base becomes slot + 1. Returns the dropped slots."""
        gone = self.slots(self.base)
        while gone and gone[-1] > slot:
            gone.pop()
        if slot >= self.base:
            self._compact(slot + 1)
        return gone

    def _compact(self, new_base):
        """Slide the live records at or above new_base down over the dead ones, buffer by
        buffer in the order they were written, then let the emptied buffers go.

        A record is only ever moved to an earlier place (an earlier buffer, or lower in its
        own), every byte before it having been visited, so nothing unread is overwritten
        and no buffer beyond those held is needed."""
        chunks = self._chunks
        idx = self._idx
        old_base = self.base
        shift = new_base - old_base
        old_nodes = self._nodes
        nodes = []
        last = len(chunks) - 1
        db = doff = live = count = hi = 0
        for k in range(last + 1):
            ch = chunks[k]
            end = self._fill if k == last else len(ch)
            off = 0
            while off < end and ch[off] != _END:
                r = _parse_at(ch, off)
                stop = r[3]
                i = r[1] - old_base
                if i < shift or i >= len(idx) or idx[i] != (k << 12 | off) + 1:
                    off = stop  # dead, or below the new base
                    continue
                n = stop - off
                dst = chunks[db]
                while doff > _MAX_OFF or doff + n > len(dst):  # ends at k, where it fits
                    if doff < len(dst):
                        dst[doff] = _END
                    db += 1
                    doff = 0
                    dst = chunks[db]
                if dst is not ch or doff != off:
                    _move(dst, doff, ch, off, n)
                node = old_nodes[dst[doff + 1]]
                if node not in nodes:
                    nodes.append(node)
                dst[doff + 1] = nodes.index(node)
                idx[i] = (db << 12 | doff) + 1
                doff += n
                live += n
                count += 1
                if i - shift + 1 > hi:
                    hi = i - shift + 1
                off = stop
        n = len(idx)
        if shift:
            for j in range(n):  # re-based: slot new_base is index 0
                idx[j] = idx[j + shift] if j + shift < n else 0
        keep_n = db + 1 if count else 0
        if count and doff < len(chunks[db]):
            chunks[db][doff] = _END
        pool = self._spare  # the emptied buffers are the next ones needed
        keep = max(_POOL_BYTES, self._reserve)
        kept = 0
        for b in pool:
            kept += len(b)
        for b in chunks[keep_n:]:
            self._held -= len(b)
            if kept + len(b) <= keep:
                pool.append(b)
                kept += len(b)
        del chunks[keep_n:]
        self._fill = doff if count else 0
        self._nodes = nodes
        self._live = live
        self._dead = 0
        self._count = count
        self.base = new_base
        hi = (hi + _GROW - 1) // _GROW * _GROW  # give back the index past the last slot
        if hi < n and not self._reserve:
            self._idx = idx[:hi]
