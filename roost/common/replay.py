"""Replay window per sender: (incarnation, sequence) pairs are accepted at most once."""

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


_WINDOW = const(256)  # how far behind the newest seq a reordered message may arrive


class ReplayWindow:
    """Tracks, per sender, the newest incarnation, the highest seq and a bitmap of the last
    ``window`` seqs. A new incarnation (the sender rebooted) starts a fresh window; an older
    incarnation is stale. Holds at most ``max_senders`` senders: when full it evicts the
    least recently heard eighth in one pass (amortised; a flood of forged senders cannot pass
    the HMAC, so this only bounds memory). An evicted sender's old messages would be accepted
    again, so size it to the fleet: a sender heard often is never evicted."""

    def __init__(self, window=_WINDOW, max_senders=256):
        if window < 1 or max_senders < 1:
            raise ValueError("window and max_senders must be positive")
        self.window = window
        self.max_senders = max_senders
        self._state = {}  # sender -> [incarnation, highest_seq, bitmap, last_use]
        self._clock = 0

    def check(self, sender, incarnation, seq):
        """'ok' (and record it), 'replay' (seen or too old) or 'stale' (old incarnation)."""
        self._clock += 1
        st = self._state.get(sender)
        if st is None or incarnation > st[0]:
            if st is None and len(self._state) >= self.max_senders:
                self._evict()
            self._state[sender] = [incarnation, seq, 1, self._clock]
            return "ok"
        st[3] = self._clock
        if incarnation < st[0]:
            return "stale"
        high = st[1]
        if seq > high:
            shift = seq - high
            st[2] = ((st[2] << shift) | 1) & ((1 << self.window) - 1) if shift < self.window else 1
            st[1] = seq
            return "ok"
        back = high - seq
        if back >= self.window:
            return "replay"
        bit = 1 << back
        if st[2] & bit:
            return "replay"
        st[2] |= bit
        return "ok"

    def forget(self, sender):
        self._state.pop(sender, None)

    def _evict(self):
        n = len(self._state)
        if not n:
            return
        ages = sorted([(st[3], name) for name, st in self._state.items()])
        for i in range(max(1, n // 8)):
            del self._state[ages[i][1]]

    def __len__(self):
        return len(self._state)
