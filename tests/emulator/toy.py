"""A tiny sans-I/O core for simulator tests: counts, echoes and persists."""

from roost.node.effects import EVENT, PERSIST, SEND

PING = 1
PONG = 2


class ToyHost:
    """Sends a ping to every peer every period; answers pings; persists a counter."""

    def __init__(self, node_id, channel, storage, rng, now_ms, peers, period_ms=100):
        self.node_id = node_id
        self.channel = channel
        self.rng = rng
        self.peers = [p for p in peers if p != node_id]
        self.period_ms = period_ms
        self.count = storage.get("count", 0)
        self.recovered = self.count
        self.next_ms = now_ms + rng.randbelow(period_ms)
        self.pongs = 0

    def receive(self, now_ms, src, payload):
        env = self.channel.open(payload)
        if env is None:
            return []
        if env.kind == PING:
            return [(SEND, env.sender, self.channel.seal(PONG, env.sender, env.body))]
        if env.kind == PONG:
            self.pongs += 1
            return [(EVENT, "pong", [env.sender, env.body])]
        return []

    def tick(self, now_ms):
        if now_ms < self.next_ms:
            return []
        self.next_ms = now_ms + self.period_ms
        self.count += 1
        out = [(PERSIST, "count", self.count)]
        for p in self.peers:
            out.append((SEND, p, self.channel.seal(PING, p, self.count)))
        return out

    def next_deadline_ms(self):
        return self.next_ms


def toy_factory(peers, period_ms=100):
    def make(node_id, channel, storage, rng, now_ms):
        return ToyHost(node_id, channel, storage, rng, now_ms, peers, period_ms)

    return make
