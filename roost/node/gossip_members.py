"""Membership records of ``GossipCore``: the SWIM merge rules (alive needs a newer
incarnation; suspect beats alive at the same one; dead and left beat both), Lifeguard
confirmations, refutation, member caps and tombstones (a mixin, split out so each module
compiles inside a 100 KB MicroPython heap)."""

try:  # CPython: the C binary search; MicroPython has no bisect module
    from bisect import bisect_left as _bisect
except ImportError:
    _bisect = None

from roost.node.effects import EVENT
from roost.node.gossip_wire import (
    ALIVE,
    DEAD,
    LEFT,
    MAX_INC,
    OWN_SENDS,
    Q_MEMBER,
    Q_SUMMARY,
    SLEEPING,
    STATE_NAMES,
    SUSPECT,
    _dumps,
    encode_member,
    expected_confirmations,
    suspicion_timeout_ms,
)


class MembersMixin:
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

    def _relive(self, nid, old, new):
        """Keep the live list and count in step with one member's state change (old/new are
        states, -1 for no record): a binary-search insert or delete instead of rebuilding
        and sorting the whole list after every change (a 1,000-node join storm changes a
        member per message)."""
        live = self._live
        if live is None:
            return  # built on the next _live_ids()
        a = old == ALIVE or old == SUSPECT or old == SLEEPING
        b = new == ALIVE or new == SUSPECT or new == SLEEPING
        if a != b:
            self._n_live += 1 if b else -1
        if nid == self.id:
            return
        a = a and old != SLEEPING
        b = b and new != SLEEPING
        if a == b:
            return
        if _bisect is not None:
            lo = _bisect(live, nid)
        else:
            lo = 0
            hi = len(live)
            while lo < hi:
                mid = (lo + hi) >> 1
                if live[mid] < nid:
                    lo = mid + 1
                else:
                    hi = mid
        if b:
            live.insert(lo, nid)
        elif lo < len(live) and live[lo] == nid:
            del live[lo]

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
        self.inc = self.inc + 1 if self.inc < MAX_INC else self.inc
        self.state = state
        r = self._m[self.id]
        changed = r[0] != state
        if changed:
            self._relive(self.id, r[0], state)
        r[0] = state
        r[1] = self.inc
        r[4] = self._wake_ms if state == SLEEPING else 0
        r[5] = now_ms
        self._enqueue(Q_MEMBER, self.id)
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
            self._relive(nid, old, state)
            eff.append((EVENT, "member", [nid, STATE_NAMES[state], inc]))
            if state == DEAD:
                if len(self._dead) < 64:
                    self._dead[nid] = now_ms
            elif nid in self._dead:
                del self._dead[nid]
        if state == SUSPECT:
            if old != SUSPECT or nid not in self._susp:
                n = self._n()
                first = suspecter if suspecter is not None else self.id
                d = now_ms + suspicion_timeout_ms(n, 0, self.cfg)
                self._susp[nid] = [now_ms, d, n, [first], first]
                self._bump("suspicions")
        elif nid in self._susp:
            del self._susp[nid]
        if state == SLEEPING:
            self._sleepers[nid] = until
        elif nid in self._sleepers:
            del self._sleepers[nid]
        self._enqueue(Q_MEMBER, nid)

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
        self._bump("confirmations")
        s[1] = s[0] + suspicion_timeout_ms(s[2], len(s[3]) - 1, self.cfg)
        self._enqueue(Q_MEMBER, nid)

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

    def _gossip_to_dead(self, now_ms, eff):
        """Now and then gossip to a member that died recently: if it is alive behind a healed
        partition, it learns it was declared dead and refutes (memberlist's gossip-to-the-dead)."""
        dead = self._dead
        if not dead or self.rng.randbelow(100) >= self.cfg.gossip_to_dead_pct:
            return
        old = now_ms - self.cfg.gossip_to_dead_ms
        ids = sorted(dead)
        for nid in ids:
            if dead[nid] < old:
                del dead[nid]
        ids = sorted(dead)
        if ids:
            self._send_gossip(now_ms, ids[self.rng.randbelow(len(ids))], eff)

    def _forget(self, nid):
        self._dead.pop(nid, None)
        self._wire_drop(nid)
        self._relive(nid, self._m[nid][0], -1)
        del self._m[nid]
        self._qm.pop(nid, None)

    def _reclaim(self, now_ms):
        old = now_ms - self.cfg.dead_reclaim_ms
        for nid in sorted(self._m):
            r = self._m[nid]
            if (r[0] == DEAD or r[0] == LEFT) and r[5] <= old:
                self._forget(nid)

    def _merge_all(self, now_ms, ms, ss, eff, sync_from=None):
        """Merge updates. From a full-state sync (sync_from = its sender), members new to us
        are not re-gossiped (a joiner would otherwise re-broadcast the whole fleet); changes
        to members we knew, and the sender itself, are."""
        for u in ms:
            self._merge(now_ms, u, eff)
            if sync_from is not None and u[0] != sync_from and self._new:
                self._qm.pop(u[0], None)
        for s in ss:
            self._merge_summary(s, eff)

    def _merge(self, now_ms, u, eff):
        nid, st, inc, board, dom, extra = u
        self._new = False
        if nid == self.id:
            self._about_me(st, inc)
            return
        r = self._m.get(nid)
        if r is None:
            if not self._room():
                self._bump("members_dropped")
                return
            if st == SLEEPING and extra <= 0:
                st = ALIVE
            meta = self._meta
            if len(meta) > 64:
                meta.clear()
            board = meta.setdefault(board, board)
            dom = meta.setdefault(dom, dom)
            self._m[nid] = [st, inc, board, dom, 0, now_ms]
            self._new = True
            self._relive(nid, -1, st)
            eff.append((EVENT, "member", [nid, STATE_NAMES[st], inc]))
            self._set(now_ms, nid, st, inc, [], now_ms + extra if st == SLEEPING else 0, extra)
            return
        lst, linc = r[0], r[1]
        if (lst == ALIVE or lst == DEAD or lst == LEFT) and nid not in self._wire:
            # the next repeat of this record is then dropped unparsed (decode_gossip)
            self._wire_put(nid, encode_member((nid, lst, linc, r[2], r[3], 0)))
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
        self._bump("refutations")
        self.inc = inc if inc < MAX_INC else MAX_INC - 1
        self._set_self(0, self.state, [])

    def _merge_summary(self, s, eff):
        origin, ver, value = s
        if origin == self.id:
            return
        cur = self._sums.get(origin)
        if cur is not None and cur[0] >= ver:
            if cur[0] == ver:
                self._heard_again((origin,), self._qs, OWN_SENDS)
            return
        if cur is None and origin not in self._m and len(self._sums) >= self.cfg.max_members:
            self._bump("members_dropped")
            return
        self._sums[origin] = [ver, value, len(_dumps(value))]
        self._enqueue(Q_SUMMARY, origin)
        eff.append((EVENT, "summary", [origin, ver]))
