"""The update queue, piggybacking, probing, join and push-pull of ``GossipCore`` (a mixin,
split out so each module compiles inside a 100 KB MicroPython heap).

Piggybacking: least sent and newest first, packed to the datagram limit. Push-pull: full
membership and a summary digest travel in as many datagrams as needed (at most
``sync_max_datagrams``); each digest chunk covers a contiguous range of origins (lo, hi]
("" = unbounded), so it is complete on its own and the peer answers it with exactly the
summaries we lack or hold older."""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


from heapq import heapify, heappop, heappush

from roost.node.effects import PERSIST, SEND
from roost.node.gossip_wire import (
    _K_INC,
    ACK,
    ALIVE,
    DEAD,
    GOSSIP,
    JOIN,
    LEFT,
    MAX_SLEEP_MS,
    PH_PUSH,
    PH_REPLY,
    PH_SUMS,
    Q_MEMBER,
    Q_SUMMARY,
    SLEEPING,
    SUSPECT,
    SYNC,
    _dumps,
    encode_member,
    retransmit_limit,
)

_GEN_MASK = const(0x3FFFFF)  # newness rank: 22 bits, so sends << 22 stays a small int
_ONE_SEND = const(0x400000)
_HEAP_MIN = const(96)  # queued updates above which _gossip keeps a heap instead of sorting


class SyncMixin:
    # ---- the update queue ---------------------------------------------------------------

    def _entry(self, kind, key, now_ms):
        """The wire form of a queued update, from the current record: a summary's list, or
        a member's string (see encode_member). A member string that cannot change until the
        record does (alive, dead, left) is kept in _wire until _enqueue drops it, both for
        the next send and to spot repeats on receive."""
        if kind == Q_SUMMARY:
            s = self._sums[key]
            return [key, s[0], s[1]]
        w = self._wire.get(key)
        if w is not None:
            return w
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
            elif extra > MAX_SLEEP_MS:
                extra = MAX_SLEEP_MS
        else:
            extra = 0
        w = encode_member((key, st, r[1], r[2], r[3], extra))
        if st == r[0] and st != SUSPECT and st != SLEEPING:
            self._wire_put(key, w)
        return w

    def _wire_put(self, nid, w):
        self._wire[nid] = w
        self._wids[w] = nid

    def _wire_drop(self, nid):
        w = self._wire.pop(nid, None)
        if w is not None:
            del self._wids[w]

    def _enqueue(self, kind, key):
        """Queue (or re-queue, as new) the update about key. The queue is a dict key -> one
        small int: sends << 22 | a newness rank, so sorting puts least sent, newest first.
        A long queue (a join storm) also keeps a heap of prios that _gossip pops from, with
        _qi: newness rank -> (kind, key, size); an item whose prio the dicts no longer hold
        is stale and skipped when it surfaces (ints, not tuples, so the heap compares fast).
        Every change of a record or summary re-queues it, so the size taken here stays
        right (an upper bound: a sleeper's remaining sleep only shrinks)."""
        self._gen = (self._gen + 1) & _GEN_MASK
        prio = _GEN_MASK - self._gen
        if kind == Q_MEMBER:
            self._wire_drop(key)  # the record changed: its wire string did too
            self._qm[key] = prio
        else:
            self._qs[key] = prio
        heap = self._qh
        if heap is not None:
            if self._gen == 0 or len(heap) > 2 * (len(self._qm) + len(self._qs)) + 32:
                self._qh = None  # rebuilt on the next send: drops stale items, and no
                # stale item outlives a wrap of the rank (so a prio is never ambiguous)
            else:
                heappush(heap, prio)
                self._qi[prio & _GEN_MASK] = (kind, key, self._size(kind, key))

    def _heard_again(self, ids, q=None, own=0):
        """Piggybacked repeats of updates still queued here (member ids, or with q=_qs
        summary origins): each counts as one of our sends of it, as others are spreading it
        already; only once we have sent it ``own`` times ourselves. Summaries take
        OWN_SENDS: counted from the first send, the 25-node dissemination max went from
        1.26 s to 2.58 s (the last few nodes then wait for anti-entropy); after 4 own sends
        it is 1.59 s, and a 1,000-node fleet sends a reading in ~8,000 datagrams, not ~16,000."""
        if q is None:
            q = self._qm
        limit = retransmit_limit(self._n(), self.cfg.retransmit_mult)
        for k in ids:
            p = q.get(k)
            if p is None or (p >> 22) < own:
                continue
            p += _ONE_SEND
            if (p >> 22) >= limit:
                del q[k]
            else:
                q[k] = p  # a kept heap's item for it is re-pushed when it surfaces

    def _has_fresh(self):
        return len(self._qm) > 0 or len(self._qs) > 0

    def _size(self, kind, key):
        """A bound of the entry's JSON size plus a comma: a summary's without encoding; a
        member's string, quoted (exact for alive, dead and left)."""
        if kind == Q_SUMMARY:
            s = self._sums[key]
            return len(key) + len(str(s[0])) + s[2] + 7
        w = self._wire.get(key)
        if w is not None:
            return len(w) + 3
        r = self._m[key]
        n = len(key) + len(r[2]) + len(r[3]) + len(str(r[1])) + 9  # quotes, colons, comma
        if r[0] == SUSPECT:
            sp = self._susp.get(key)
            return n + (len(sp[4]) if sp is not None else 32)
        return n + 8 if r[0] == SLEEPING else n + 1

    def _gossip(self, now_ms, budget, dst):
        """Pick updates that fit in budget bytes: [[members], [summaries]], least sent and
        newest first: popped off a heap of the queue. A short queue's heap is built per
        message; a long one's (over _HEAP_MIN, e.g. a thousand members joining at once) is
        kept, with the items still queued pushed back: O(k log n) for k picked per message
        instead of sorting the whole queue."""
        ms = []
        ss = []
        if dst is not None:
            r = self._m.get(dst)
            if r is not None and (r[0] == SUSPECT or r[0] == DEAD or r[0] == LEFT):
                # tell a member directly that we doubt it: its fastest way to refute
                budget -= self._size(Q_MEMBER, dst)
                ms.append(self._entry(Q_MEMBER, dst, now_ms))
        qm = self._qm
        qs = self._qs
        if not (qm or qs) or budget <= 0:
            return [ms, ss]
        limit = retransmit_limit(self._n(), self.cfg.retransmit_mult)
        if limit > 255:
            limit = 255
        heap = self._qh
        qi = self._qi
        if heap is None:
            heap = [0] * (len(qm) + len(qs))  # one allocation: a board's heap is fragmented
            qi.clear()
            i = 0
            for k in qm:
                p = qm[k]
                heap[i] = p
                qi[p & _GEN_MASK] = (Q_MEMBER, k, self._size(Q_MEMBER, k))
                i += 1
            for k in qs:
                p = qs[k]
                heap[i] = p
                qi[p & _GEN_MASK] = (Q_SUMMARY, k, self._size(Q_SUMMARY, k))
                i += 1
            heapify(heap)
        wire = self._wire
        back = []  # prios that stay queued, pushed back after the scan
        used = 0
        misses = 0
        while heap:
            prio = heappop(heap)
            gen = prio & _GEN_MASK
            it = qi.get(gen)
            if it is None:
                continue
            kind, key, size = it
            q = qm if kind == Q_MEMBER else qs
            cur = q.get(key)
            if cur != prio:
                if cur is not None and cur > prio and cur & _GEN_MASK == gen:
                    back.append(cur)  # counted as heard since (_heard_again): requeue
                else:
                    del qi[gen]  # stale: re-queued or dropped since
                continue
            if kind == Q_MEMBER and key == dst:  # it knows itself (and got our doubt above)
                back.append(prio)
                continue
            if size > budget:
                back.append(prio)
                misses += 1
                if misses >= 8 or budget < 40:  # full: do not scan the whole queue
                    break
                continue
            budget -= size
            used += 1
            prio += _ONE_SEND
            if (prio >> 22) >= limit:
                del q[key]
                del qi[gen]
            else:
                q[key] = prio
                back.append(prio)
            if kind == Q_MEMBER:
                w = wire.get(key)  # _entry's own first step, without the call
                ms.append(w if w is not None else self._entry(kind, key, now_ms))
            else:
                ss.append(self._entry(kind, key, now_ms))
        self._bump("updates_sent", used)
        if len(qm) + len(qs) > _HEAP_MIN:  # keep the heap for the next message
            for p in back:
                heappush(heap, p)
            self._qh = heap
        else:
            self._qh = None
            qi.clear()
        return [ms, ss]

    def _seal(self, now_ms, kind, dst, body, eff):
        """Persist a raised incarnation before any message can carry it, then send."""
        if self.inc > self._inc_saved:
            self._inc_saved = self.inc
            eff.append((PERSIST, _K_INC, self.inc))
        try:
            data = self.ch.seal(kind, dst, body)
        except ValueError:  # a sizing bug; never let it escape
            self._bump("tx_oversized")
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
        self._bump("gossip_msgs")
        self._send_with_gossip(now_ms, GOSSIP, dst, [], eff)

    def _send_ack(self, now_ms, dst, seq, eff):
        self._send_with_gossip(now_ms, ACK, dst, [seq], eff)

    # ---- join and push-pull -------------------------------------------------------------

    def _try_join(self, now_ms, eff):
        if self._joined or not self._seeds:
            self._join_at = None
            return
        seed = self._seeds[self._seed_idx % len(self._seeds)]
        self._seed_idx += 1
        self._join_at = now_ms + self.cfg.join_retry_ms
        self._bump("joins")
        self._send_state(now_ms, JOIN, seed, PH_PUSH, eff)

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
        self._bump("push_pulls")
        self._send_state(now_ms, SYNC, peer, PH_PUSH, eff)

    def _send_state(self, now_ms, kind, dst, phase, eff):
        """Full membership, then the summary digest, over as many datagrams as needed (at
        most sync_max_datagrams). Digest chunks cover contiguous ranges of origins (lo, hi]
        ("" = unbounded), so each chunk is complete for its range on its own. Each chunk is
        sealed as soon as it is full (a board never holds the whole state as lists)."""
        cap = self.ch.max_bytes - self.ch.overhead(kind, dst) - 96
        sent = [0]
        cur = []
        used = 0
        wire = self._wire
        for nid in sorted(self._m):
            w = wire.get(nid)  # most records have their string: no calls for them
            if w is None:
                n = self._size(Q_MEMBER, nid)  # a bound of the entry's JSON size
                w = self._entry(Q_MEMBER, nid, now_ms)
            else:
                n = len(w) + 3
            if used + n > cap and cur:
                if self._state_chunk(now_ms, kind, dst, phase, cur, 0, sent, eff):
                    return
                cur = []
                used = 0
            cur.append(w)
            used += n
        lo = ""
        items = []
        for o in sorted(self._sums):
            n = len(o) + 14
            if used + n > cap and (cur or items):
                hi = items[-1][0] if items else lo
                dg = [lo, hi, items] if items else 0
                if self._state_chunk(now_ms, kind, dst, phase, cur, dg, sent, eff):
                    return
                if items:
                    lo = hi
                cur = []
                items = []
                used = 0
            items.append([o, self._sums[o][0]])
            used += n
        sent[0] = -1  # the final chunk: always the last
        self._state_chunk(now_ms, kind, dst, phase, cur, [lo, "", items], sent, eff)

    def _state_chunk(self, now_ms, kind, dst, phase, ms, dg, sent, eff):
        """Seal one chunk of _send_state; True when it was the last one allowed. sent[0]:
        chunks sealed so far, -1 for the final chunk."""
        n = sent[0]
        last = 1 if n < 0 or n >= self.cfg.sync_max_datagrams - 1 else 0
        self._bump("sync_msgs")
        self._seal(now_ms, kind, dst, [phase, last, ms, dg, []], eff)
        sent[0] = n + 1
        return last == 1

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
                self._seal(now_ms, SYNC, dst, [PH_SUMS, 1, [], 0, batch], eff)
                sent += 1
                batch = []
                used = 0
                if sent >= self.cfg.sync_max_datagrams:
                    return
            batch.append(u)
            used += n
        if batch:
            self._seal(now_ms, SYNC, dst, [PH_SUMS, 1, [], 0, batch], eff)

    def _on_sync(self, now_ms, src, kind, msg, eff):
        phase, last, ms, digest, ss = msg
        self._merge_all(now_ms, ms, ss, eff, src)
        if phase == PH_SUMS:
            return
        if digest is not None:
            self._send_missing(now_ms, src, digest, eff)
        if phase == PH_PUSH and last:
            self._send_state(now_ms, SYNC, src, PH_REPLY, eff)
        elif phase == PH_REPLY and not self._joined:
            self._joined = True
            self._join_at = None
            # the join was a full exchange: the next one comes an interval (scaled to the
            # view just learned) later, at a random phase, so that a fleet booted together
            # does not push-pull all at once (memberlist staggers its first one the same way)
            i = self._pp_interval()
            self._next_pp = now_ms + i // 2 + self.rng.randbelow(i)
