"""A client c1 with hand-driven fake replicas (MicroPython-safe)."""

from roost.common.channel import Channel
from roost.common.prng import Prng
from roost.node.effects import SEND
from roost.node.kv import KV_REPLY, KV_REQUEST
from roost.node.kvclient import KvClient, KvClientConfig

KEY = "fleet-key"
MEMBERS = ["n1", "n2", "n3"]


class World:
    """A client c1 and fake replicas that decode what it sends and answer by hand."""

    def __init__(self, seed=1, **cfg):
        self.cc = Channel("c1", KEY)
        self.client = KvClient("c1", self.cc, MEMBERS, KvClientConfig(**cfg), Prng(seed))
        self.rch = {}
        for n in MEMBERS:
            self.rch[n] = Channel(n, KEY)

    def sent(self, effects):
        """[(dst, body)] of the requests in effects."""
        out = []
        for e in effects:
            if e[0] == SEND:
                env = self.rch[e[1]].open(e[2])
                assert env is not None and env.kind == KV_REQUEST and env.sender == "c1"
                out.append((e[1], env.body))
        return out

    def reply(self, now_ms, frm, body):
        raw = self.rch[frm].seal(KV_REPLY, "c1", body)
        return self.client.receive(now_ms, frm, raw)
