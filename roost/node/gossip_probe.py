"""Probing of ``GossipCore``: one member per period, round-robin over a list shuffled with
the injected Prng; ping -> ack; on timeout a second direct ping plus ping-req through
``indirect_checks`` helpers; no ack by the end of the period -> suspect (a mixin, split out so
each module compiles inside a 100 KB MicroPython heap)."""

from roost.node.gossip_wire import ALIVE, MAX_SEQ, PING, PING_REQ, SUSPECT


class ProbeMixin:
    # ---- probing ------------------------------------------------------------------------

    def _next_seq(self):
        self._pseq = self._pseq + 1 if self._pseq < MAX_SEQ else 1
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
        self._bump("probes")
        self._bump("pings")
        self._send_with_gossip(now_ms, PING, target, [seq, target], eff)

    def _indirect(self, now_ms, eff):
        p = self._probe
        p[3] = True
        target, seq = p[0], p[1]
        # a second direct ping (a lost datagram is the common case) plus k helpers
        self._bump("pings")
        self._send_with_gossip(now_ms, PING, target, [seq, target], eff)
        for h in self._pick(self.cfg.indirect_checks, target):
            self._bump("ping_reqs")
            self._send_with_gossip(now_ms, PING_REQ, h, [seq, target], eff)

    def _on_ack(self, now_ms, src, seq, eff):
        p = self._probe
        if p is not None and seq == p[1]:
            self._probe = None
            return
        rel = self._relays.pop(seq, None)
        if rel is not None:
            self._bump("relayed_acks")
            self._send_ack(now_ms, rel[0], rel[1], eff)
            return
        self._bump("late_acks")

    def _on_ping_req(self, now_ms, src, seq, target, eff):
        if target == self.id:
            self._send_ack(now_ms, src, seq, eff)
            return
        if len(self._relays) >= self.cfg.max_relays:
            self._bump("relays_dropped")
            return
        mine = self._next_seq()
        self._relays[mine] = [src, seq, now_ms + self.cfg.probe_interval_ms]
        self._bump("indirect_pings")
        self._send_with_gossip(now_ms, PING, target, [mine, target], eff)

    def _probe_failed(self, now_ms, target, eff):
        self._bump("probe_failures")
        r = self._m.get(target)
        if r is None:
            return
        if r[0] == ALIVE:
            self._set(now_ms, target, SUSPECT, r[1], eff)
        elif r[0] == SUSPECT:
            self._confirm(now_ms, target, self.id)
