"""Hybrid logical clock (Kulkarni et al.): timestamps that follow physical time closely and
never go backwards, even when node clocks disagree. A timestamp is a (wall_ms, counter) pair,
packed into one int for the wire as wall_ms * 65536 + counter."""

_COUNTER_LIMIT = 0xFFFF


class Hlc:
    __slots__ = ("wall_ms", "counter", "max_drift_ms")

    def __init__(self, max_drift_ms=60000):
        self.wall_ms = 0
        self.counter = 0
        self.max_drift_ms = max_drift_ms  # remote clocks further ahead than this are refused

    def now(self, physical_ms):
        """Timestamp for a local event or a send."""
        if physical_ms > self.wall_ms:
            self.wall_ms = physical_ms
            self.counter = 0
        else:
            self._bump()
        return self.pack()

    def update(self, physical_ms, remote):
        """Merge a received packed timestamp. Returns the new packed timestamp, or None when
        the remote clock is too far ahead (the message should be dropped and counted)."""
        r_wall, r_counter = unpack(remote)
        if r_wall - physical_ms > self.max_drift_ms:
            return None
        old = self.wall_ms
        new = max(old, r_wall, physical_ms)
        if new == old and new == r_wall:
            self.counter = max(self.counter, r_counter)
            self._bump()
        elif new == old:
            self._bump()
        elif new == r_wall:
            self.wall_ms = new
            self.counter = r_counter
            self._bump()
        else:
            self.wall_ms = new
            self.counter = 0
        return self.pack()

    def _bump(self):
        if self.counter >= _COUNTER_LIMIT:
            self.wall_ms += 1
            self.counter = 0
        else:
            self.counter += 1

    def pack(self):
        return self.wall_ms * 65536 + self.counter


def pack(wall_ms, counter):
    return wall_ms * 65536 + counter


def unpack(ts):
    return ts // 65536, ts % 65536
