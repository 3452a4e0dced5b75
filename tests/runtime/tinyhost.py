"""A tiny host for runtime tests (CPython and MicroPython): pings every peer each period,
answers pings, persists a counter, and reports everything as EVENT effects."""

from roost.node.effects import EVENT, PERSIST, SEND

PING = 1
PONG = 2


class TinyHost:
    def __init__(self, node_id, channel, storage, rng, now_ms, period_ms=50):
        self.node_id = node_id
        self.channel = channel
        self.period_ms = period_ms
        self.count = storage.get("count", 0)
        self.recovered = self.count
        self.note = storage.get("note")
        self.next_ms = now_ms + rng.randbelow(period_ms)
        self.pongs = 0

    def receive(self, now_ms, src, payload):
        env = self.channel.open(payload)
        if env is None:
            return []
        if env.kind == PING:
            reply = self.channel.seal(PONG, env.sender, env.body)
            return [(EVENT, "ping", [env.sender, env.incarnation]), (SEND, env.sender, reply)]
        if env.kind == PONG:
            self.pongs += 1
            return [(EVENT, "pong", [env.sender, env.incarnation])]
        self.channel.reject("unknown_kind")
        return []

    def tick(self, now_ms):
        if now_ms < self.next_ms:
            return []
        self.next_ms = now_ms + self.period_ms
        self.count += 1
        return [(PERSIST, "count", self.count), (EVENT, "count", self.count),
                (SEND, "*", self.channel.seal(PING, "*", self.count))]

    def next_deadline_ms(self):
        return self.next_ms

    def set_note(self, now_ms, value):
        self.note = value
        return [(PERSIST, "note", value), (EVENT, "note", value)]

    def status(self):
        return {"count": self.count, "recovered": self.recovered, "pongs": self.pongs}


def tiny_factory(period_ms=50):
    def make(node_id, channel, storage, rng, now_ms):
        return TinyHost(node_id, channel, storage, rng, now_ms, period_ms)

    return make
